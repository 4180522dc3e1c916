//! The zero-shot classifier: class embeddings built once from labels and prompt templates,
//! reused for any number of images, and saved to / loaded from a safetensors file.

use std::path::Path;

use burn::prelude::*;
use burn::tensor::activation::softmax;

use super::labels::validate_labels;
use super::templates::Templates;
use crate::error::{FlorenceError, Result};
use crate::matrix_file;
use crate::model::Florence;
use crate::ops::to_vec_f32 as host;
use crate::progress::Progress;
use crate::text::tokenizer::Tokenizer;

/// Marks a safetensors file as a florence classifier (`__metadata__.format`).
const FORMAT: &str = "florence-zeroshot-classifier";
const TENSOR: &str = "class_embeddings";

/// One ranked label for one image.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Prediction {
    /// Index of the label in the classifier's list.
    pub index: usize,
    /// The label.
    pub label: String,
    /// Softmax of the scaled logits over all labels.
    pub probability: f32,
    /// `exp(logit_scale) * cos(image, class)`.
    pub logit: f32,
}

/// Class embeddings `[C, D]` (one L2-normalised row per label) and the labels they stand for.
#[derive(Debug, Clone)]
pub struct ZeroShotClassifier {
    labels: Vec<String>,
    templates: Vec<String>,
    embeddings: Tensor<2>,
}

impl ZeroShotClassifier {
    /// Builds the class embeddings as UniCL's `get_imnet_embeddings` does: for each label, the
    /// prompts `template.format(label)` are tokenized (context length of the model), encoded and
    /// L2-normalised; their mean is normalised again.
    ///
    /// `batch_size` bounds the prompts per forward pass; a batch always holds whole labels, so a
    /// batch has at least as many prompts as there are templates. Progress counts labels.
    pub fn build(
        model: &Florence,
        tokenizer: &Tokenizer,
        labels: &[String],
        templates: &Templates,
        batch_size: usize,
        progress: &mut dyn Progress,
    ) -> Result<Self> {
        validate_labels(labels)?;
        templates.validate()?;
        let ctx = model.text_encoder.context_length;
        if tokenizer.context_length() != ctx {
            return Err(FlorenceError::Input(format!(
                "the tokenizer pads to {} tokens but the text tower takes {ctx}; build the tokenizer with `.with_context_length({ctx})`",
                tokenizer.context_length()
            )));
        }
        let device = model.logit_scale.val().device();
        let t = templates.strings().len();
        let per_batch = (batch_size.max(1) / t).max(1);
        progress.start("class embeddings", labels.len());
        let mut rows = Vec::with_capacity(labels.len().div_ceil(per_batch));
        for chunk in labels.chunks(per_batch) {
            let prompts: Vec<String> = chunk.iter().flat_map(|l| templates.apply(l)).collect();
            let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
            let ids = tokenizer.tokenize(&refs, &device)?;
            let e = model.encode_text(ids)?; // [k*T, D], each row normalised
            let d = e.dims()[1];
            let mean = e.reshape([chunk.len(), t, d]).mean_dim(1).reshape([chunk.len(), d]);
            rows.push(normalize_rows(mean));
            progress.advance(chunk.len());
        }
        progress.finish();
        Ok(Self { labels: labels.to_vec(), templates: templates.strings(), embeddings: Tensor::cat(rows, 0) })
    }

    /// A classifier from precomputed class embeddings `[C, D]` (rows are re-normalised).
    pub fn from_embeddings(labels: Vec<String>, templates: Vec<String>, embeddings: Tensor<2>) -> Result<Self> {
        validate_labels(&labels)?;
        let [c, _] = embeddings.dims();
        if c != labels.len() {
            return Err(FlorenceError::Input(format!("{} labels but {c} class embeddings", labels.len())));
        }
        Ok(Self { labels, templates, embeddings: normalize_rows(embeddings) })
    }

    /// The labels, in class-index order.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The templates the embeddings were built with.
    pub fn templates(&self) -> &[String] {
        &self.templates
    }

    /// `[C, D]` L2-normalised class embeddings.
    pub fn embeddings(&self) -> &Tensor<2> {
        &self.embeddings
    }

    /// `u: [B, D]` normalised image embeddings -> `[B, C]` logits `exp(logit_scale) * u E^T`.
    pub fn logits(&self, model: &Florence, u: Tensor<2>) -> Result<Tensor<2>> {
        Ok(model.logits_from_embeddings(u, self.embeddings.clone())?.per_image)
    }

    /// `images: [B, 3, S, S]` (preprocessed) -> for each image, the `top_k` labels by
    /// probability (softmax of the scaled logits over all labels), best first.
    pub fn classify(&self, model: &Florence, images: Tensor<4>, top_k: usize) -> Result<Vec<Vec<Prediction>>> {
        let d = model.text_projection.val().dims()[1];
        if d != self.embeddings.dims()[1] {
            return Err(FlorenceError::Input(format!(
                "the classifier's class embeddings are {}-wide but this model projects to {d}; rebuild the classifier with this model",
                self.embeddings.dims()[1]
            )));
        }
        let logits = self.logits(model, model.encode_image(images)?)?;
        self.rank(logits, top_k)
    }

    /// Top-k of `[B, C]` logits, with softmax probabilities over all C.
    pub fn rank(&self, logits: Tensor<2>, top_k: usize) -> Result<Vec<Vec<Prediction>>> {
        let [b, c] = logits.dims();
        if c != self.labels.len() || c == 0 {
            return Err(FlorenceError::Input(format!(
                "logits have {c} columns but the classifier has {} labels",
                self.labels.len()
            )));
        }
        let probs = softmax(logits.clone(), 1);
        let lv = host(logits)?;
        let pv = host(probs)?;
        let k = top_k.clamp(1, c);
        Ok((0..b)
            .map(|i| {
                let row = &pv[i * c..(i + 1) * c];
                let mut order: Vec<usize> = (0..c).collect();
                // Stable sort: ties keep label order, as torch.topk does on CPU in practice.
                order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
                order
                    .into_iter()
                    .take(k)
                    .map(|j| Prediction {
                        index: j,
                        label: self.labels[j].clone(),
                        probability: row[j],
                        logit: lv[i * c + j],
                    })
                    .collect()
            })
            .collect())
    }

    /// Saves the class embeddings (f32) with the labels and templates in the file's metadata.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let values = host(self.embeddings.clone())?;
        let meta = [
            ("labels", serde_json::to_string(&self.labels).unwrap_or_default()),
            ("templates", serde_json::to_string(&self.templates).unwrap_or_default()),
        ];
        let shape = self.embeddings.dims().into();
        matrix_file::save(path.as_ref(), FORMAT, TENSOR, shape, &values, meta, "class embeddings")
    }

    /// Loads a classifier written by [`save`](Self::save).
    pub fn load(path: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let path = path.as_ref();
        let bad = |why: String| {
            FlorenceError::Input(format!(
                "{} is not a florence classifier file ({why}); build one with `ZeroShotClassifier::build` and `save`",
                path.display()
            ))
        };
        let m = matrix_file::load(path, FORMAT, TENSOR, bad)?;
        let labels = matrix_file::meta_list(&m, "labels", "", bad)?;
        let templates = matrix_file::meta_list(&m, "templates", "[]", bad)?;
        validate_labels(&labels)?;
        if m.rows != labels.len() {
            return Err(bad(format!("{} labels but {} class embeddings", labels.len(), m.rows)));
        }
        // Stored rows are already normalised: load them bit for bit.
        let embeddings = Tensor::<2>::from_data(TensorData::new(m.values, [m.rows, m.cols]), device);
        Ok(Self { labels, templates, embeddings })
    }
}

/// Rows divided by their L2 norm (UniCL: `x / x.norm(dim=-1, keepdim=True)`).
fn normalize_rows(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt();
    x / norm
}
