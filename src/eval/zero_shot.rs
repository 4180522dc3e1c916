//! Zero-shot top-1 / top-5 accuracy on a labelled image folder (ROOT/CLASS/IMAGE), with the class
//! folder names as labels and a prompt-template set, as UniCL and CLIP evaluate.

use std::path::Path;

use burn::prelude::*;
use serde::Serialize;

use super::probe::embed_dataset;
use crate::data::Dataset;
use crate::error::{FlorenceError, Result};
use crate::files::Skipped;
use crate::model::Florence;
use crate::preprocess::Preprocessor;
use crate::progress::Progress;
use crate::text::tokenizer::Tokenizer;
use crate::zeroshot::{Templates, ZeroShotClassifier};

/// Accuracy of one class.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassAccuracy {
    /// The class (folder) name.
    pub class: String,
    /// Images of the class that were evaluated.
    pub n: usize,
    /// Top-1 accuracy on them.
    pub top1: f32,
}

/// The result of a zero-shot evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ZeroShotReport {
    /// Images evaluated (skipped files excluded).
    pub n: usize,
    /// Number of classes.
    pub classes: usize,
    /// Fraction whose true class is the top prediction.
    pub top1: f32,
    /// Fraction whose true class is among the 5 top predictions (all of them below 5 classes).
    pub top5: f32,
    /// Per-class top-1.
    pub per_class: Vec<ClassAccuracy>,
    /// Files that could not be decoded.
    pub skipped: Vec<Skipped>,
}

/// Top-k hits per row of `scores` (`[n, c]`, row-major).
pub(crate) fn top_k_hits(scores: &[f32], c: usize, labels: &[usize], k: usize) -> Vec<bool> {
    labels
        .iter()
        .enumerate()
        .map(|(i, &y)| {
            let row = &scores[i * c..(i + 1) * c];
            // Rank of the true class: classes scoring strictly higher (ties favour the truth).
            row.iter().filter(|&&s| s > row[y]).count() < k
        })
        .collect()
}

/// Evaluates `model` on `folder`. Class names come from the sub-folder names; `templates` turn
/// them into prompts ([`ZeroShotClassifier::build`]). The candidates are the folder's classes,
/// or `candidates` when given: a larger label set that holds every folder class (e.g. all 36
/// colour-shape pairs when the folder holds only the held-out ones). Undecodable files are
/// skipped and reported. Progress covers the classifier (labels) and the images.
#[allow(clippy::too_many_arguments)]
pub fn zero_shot_folder(
    model: &Florence,
    tokenizer: &Tokenizer,
    preprocessor: &Preprocessor,
    folder: &Path,
    templates: &Templates,
    candidates: Option<&[String]>,
    batch_size: usize,
    progress: &mut dyn Progress,
) -> Result<ZeroShotReport> {
    let data = Dataset::image_folder(folder)?;
    let classes: Vec<String> = candidates.map_or_else(|| data.classes.clone(), <[String]>::to_vec);
    let map: Vec<usize> = data
        .classes
        .iter()
        .map(|c| {
            classes.iter().position(|x| x == c).ok_or_else(|| {
                FlorenceError::Labels(format!("the folder's class `{c}` is not among the candidate labels"))
            })
        })
        .collect::<Result<_>>()?;
    let classifier = ZeroShotClassifier::build(model, tokenizer, &classes, templates, batch_size.max(1), progress)?;
    let feats = embed_dataset(model, preprocessor, data, batch_size, progress)?;
    if feats.labels.is_empty() {
        return Err(FlorenceError::Input("no image of the evaluation folder could be decoded".into()));
    }
    let n = feats.labels.len();
    let u = Tensor::<2>::from_data(TensorData::new(feats.features, [n, feats.dim]), &model.logit_scale.val().device());
    let scores = crate::ops::to_vec_f32(classifier.logits(model, u)?)?;
    let c = classes.len();
    let truth: Vec<usize> = feats.labels.iter().map(|&k| map[k]).collect();
    let hit1 = top_k_hits(&scores, c, &truth, 1);
    let hit5 = top_k_hits(&scores, c, &truth, 5);
    let frac = |h: &[bool]| h.iter().filter(|&&x| x).count() as f32 / h.len().max(1) as f32;
    // Per-class rows only for classes that have images.
    let per_class = classes
        .iter()
        .enumerate()
        .map(|(k, name)| {
            let rows: Vec<bool> = truth.iter().zip(&hit1).filter(|(t, _)| **t == k).map(|(_, h)| *h).collect();
            ClassAccuracy { class: name.clone(), n: rows.len(), top1: frac(&rows) }
        })
        .filter(|a| a.n > 0)
        .collect();
    Ok(ZeroShotReport { n, classes: c, top1: frac(&hit1), top5: frac(&hit5), per_class, skipped: feats.skipped })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_counts_ties_for_the_truth() {
        let scores = [0.1, 0.9, 0.5, /* row 2 */ 0.3, 0.3, 0.1];
        assert_eq!(top_k_hits(&scores, 3, &[1, 0], 1), vec![true, true]);
        assert_eq!(top_k_hits(&scores, 3, &[2, 2], 1), vec![false, false]);
        assert_eq!(top_k_hits(&scores, 3, &[2, 2], 2), vec![true, false]);
    }
}
