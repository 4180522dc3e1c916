//! Image-text retrieval: embed a folder of images once, save the index, and query it with text
//! (top-k images) or rank a list of texts for an image.
//!
//! Scores are cosine similarities of L2-normalised embeddings (UniCL's logits without the
//! `exp(logit_scale)` factor, which does not change a ranking).

use std::path::{Path, PathBuf};

use burn::prelude::*;

use crate::error::{FlorenceError, Result};
use crate::matrix_file;
use crate::model::Florence;
use crate::ops::{par_map, to_vec_f32 as host};
use crate::preprocess::{DecodeOptions, Preprocessor, decode_image_file};
use crate::progress::Progress;
use crate::text::tokenizer::Tokenizer;

const FORMAT: &str = "florence-image-index";
const TENSOR: &str = "embeddings";

pub use crate::files::{IMAGE_EXTENSIONS, Skipped, list_images};

/// One search result: the row (image or text) and its cosine similarity to the query.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Hit {
    /// Index into the searched list.
    pub index: usize,
    /// Cosine similarity.
    pub score: f32,
}

/// L2-normalised image embeddings `[N, D]` and the files they came from.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageIndex {
    paths: Vec<PathBuf>,
    dim: usize,
    embeddings: Vec<f32>,
}

impl ImageIndex {
    /// Embeds `paths` in batches of `batch_size`. A file that cannot be decoded is skipped: it
    /// is reported to `progress.warn` and returned in the list of skipped files, and the index
    /// goes on without it. Progress counts files.
    pub fn build(
        model: &Florence,
        preprocessor: &Preprocessor,
        decode: &DecodeOptions,
        paths: &[PathBuf],
        batch_size: usize,
        progress: &mut dyn Progress,
    ) -> Result<(Self, Vec<Skipped>)> {
        let device = model.logit_scale.val().device();
        let dim = model.image_projection.val().dims()[1];
        let mut index = Self { paths: Vec::new(), dim, embeddings: Vec::new() };
        let mut skipped = Vec::new();
        progress.start("embed images", paths.len());
        for chunk in paths.chunks(batch_size.max(1)) {
            let mut images = Vec::with_capacity(chunk.len());
            let mut kept = Vec::with_capacity(chunk.len());
            // Decoded and preprocessed in parallel (all cores), one batch at a time.
            let per_file =
                par_map(chunk, 0, |p| decode_image_file(p, decode).and_then(|img| preprocessor.try_preprocess(&img)));
            for (p, r) in chunk.iter().zip(per_file) {
                match r {
                    Ok(img) => {
                        images.push(img);
                        kept.push(p.clone());
                    }
                    Err(e) => {
                        progress.warn(&format!("skipping {}: {e}", p.display()));
                        skipped.push(Skipped { path: p.clone(), reason: e.to_string() });
                    }
                }
            }
            if !images.is_empty() {
                let batch = preprocessor.stack(images, &device)?;
                index.embeddings.extend(host(model.encode_image(batch)?)?);
                index.paths.extend(kept);
            }
            progress.advance(chunk.len());
        }
        progress.finish();
        Ok((index, skipped))
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    /// True when no image made it into the index.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// The files, in row order.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// Embedding width.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Row `i` of the embeddings.
    pub fn embedding(&self, i: usize) -> &[f32] {
        &self.embeddings[i * self.dim..(i + 1) * self.dim]
    }

    /// The `k` images most similar to a normalised query embedding, best first.
    pub fn search(&self, query: &[f32], k: usize) -> Result<Vec<Hit>> {
        if query.len() != self.dim {
            return Err(FlorenceError::Input(format!(
                "query embedding has {} values but the index holds {}-wide embeddings; query with the model that built the index",
                query.len(),
                self.dim
            )));
        }
        Ok(top_k(&self.embeddings, self.dim, query, k))
    }

    /// The `k` images that best match `text`.
    pub fn search_text(&self, model: &Florence, tokenizer: &Tokenizer, text: &str, k: usize) -> Result<Vec<Hit>> {
        let device = model.logit_scale.val().device();
        let q = host(model.encode_text(tokenizer.tokenize(&[text], &device)?)?)?;
        self.search(&q, k)
    }

    /// Saves the embeddings (f32) with the paths in the file's metadata.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let paths: Vec<String> = self.paths.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        let meta = [("paths", serde_json::to_string(&paths).unwrap_or_default())];
        matrix_file::save(path.as_ref(), FORMAT, TENSOR, (self.len(), self.dim), &self.embeddings, meta, "the index")
    }

    /// Loads an index written by [`save`](Self::save).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bad = |why: String| {
            FlorenceError::Input(format!(
                "{} is not a florence image index ({why}); build one with `florence index`",
                path.display()
            ))
        };
        let m = matrix_file::load(path, FORMAT, TENSOR, bad)?;
        let paths = matrix_file::meta_list(&m, "paths", "", bad)?;
        if m.rows != paths.len() {
            return Err(bad(format!("`{TENSOR}` has {} rows for {} paths", m.rows, paths.len())));
        }
        Ok(Self { paths: paths.into_iter().map(PathBuf::from).collect(), dim: m.cols, embeddings: m.values })
    }
}

/// Ranks `texts` for each image in `images: [B, 3, S, S]`: the `k` best texts per image.
pub fn rank_texts(
    model: &Florence,
    tokenizer: &Tokenizer,
    images: Tensor<4>,
    texts: &[String],
    k: usize,
) -> Result<Vec<Vec<Hit>>> {
    if texts.is_empty() {
        return Err(FlorenceError::Labels("no texts to rank: give at least one".into()));
    }
    let device = images.device();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let v = host(model.encode_text(tokenizer.tokenize(&refs, &device)?)?)?;
    let u = model.encode_image(images)?;
    let dim = u.dims()[1];
    let u = host(u)?;
    Ok(u.chunks_exact(dim).map(|q| top_k(&v, dim, q, k)).collect())
}

/// The `k` rows of `rows: [N, dim]` with the largest dot product with `q`, best first (ties in
/// row order).
fn top_k(rows: &[f32], dim: usize, q: &[f32], k: usize) -> Vec<Hit> {
    let mut hits: Vec<Hit> = rows
        .chunks_exact(dim)
        .enumerate()
        .map(|(index, r)| Hit { index, score: r.iter().zip(q).map(|(a, b)| a * b).sum() })
        .collect();
    hits.sort_by(|a, b| b.score.total_cmp(&a.score));
    hits.truncate(k);
    hits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_orders_by_score_and_keeps_ties_in_order() {
        let rows = [1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.6, 0.8];
        let hits = top_k(&rows, 2, &[1.0, 0.0], 3);
        assert_eq!(hits.iter().map(|h| h.index).collect::<Vec<_>>(), vec![0, 2, 3]);
        assert_eq!(top_k(&rows, 2, &[0.0, 1.0], 10).len(), 4);
    }
}
