//! Linear-probe and few-shot evaluation on frozen image features: embed a training folder and a
//! test folder (ROOT/CLASS/IMAGE, class names matched by folder name), fit a multinomial
//! logistic regression ([`super::linear_probe`], scikit-learn's objective) on the training
//! features, report top-1 / top-5 on the test features. Few-shot fits on `k` images per class,
//! over several seeded draws.

use std::path::Path;

use serde::Serialize;

use super::linear_probe::{LogisticRegression, ProbeConfig, few_shot_indices, top_k_accuracy};
use crate::data::{Dataset, Target};
use crate::error::{FlorenceError, Result};
use crate::files::Skipped;
use crate::model::Florence;
use crate::preprocess::{DecodeOptions, Preprocessor};
use crate::progress::Progress;
use crate::retrieval::ImageIndex;

/// L2-normalised image embeddings of a labelled folder.
#[derive(Debug, Clone, PartialEq)]
pub struct FolderFeatures {
    /// `[n, dim]` row-major.
    pub features: Vec<f32>,
    /// Embedding width.
    pub dim: usize,
    /// Class index of each row, into `classes`.
    pub labels: Vec<usize>,
    /// Class (folder) names.
    pub classes: Vec<String>,
    /// Files that could not be decoded.
    pub skipped: Vec<Skipped>,
}

/// Embeds every image of `folder` with `model`.
pub fn folder_features(
    model: &Florence,
    preprocessor: &Preprocessor,
    folder: &Path,
    batch_size: usize,
    progress: &mut dyn Progress,
) -> Result<FolderFeatures> {
    embed_dataset(model, preprocessor, Dataset::image_folder(folder)?, batch_size, progress)
}

/// Embeds every image of an image-label dataset (as [`Dataset::image_folder`] reads it).
pub(crate) fn embed_dataset(
    model: &Florence,
    preprocessor: &Preprocessor,
    data: Dataset,
    batch_size: usize,
    progress: &mut dyn Progress,
) -> Result<FolderFeatures> {
    let paths: Vec<_> = data.examples.iter().map(|e| e.path.clone()).collect();
    let (index, skipped) =
        ImageIndex::build(model, preprocessor, &DecodeOptions::default(), &paths, batch_size, progress)?;
    let label_of: std::collections::HashMap<&Path, usize> =
        data.examples.iter().map(|e| (e.path.as_path(), if let Target::Class(k) = e.target { k } else { 0 })).collect();
    let labels = index.paths().iter().map(|p| label_of[p.as_path()]).collect();
    let features = (0..index.len()).flat_map(|i| index.embedding(i).to_vec()).collect();
    Ok(FolderFeatures { features, dim: index.dim(), labels, classes: data.classes, skipped })
}

/// Test labels re-indexed into the training folder's classes; a test class the training folder
/// lacks is an error.
fn align(train: &FolderFeatures, test: &FolderFeatures) -> Result<Vec<usize>> {
    let map: Vec<usize> = test
        .classes
        .iter()
        .map(|c| {
            train.classes.iter().position(|t| t == c).ok_or_else(|| {
                FlorenceError::Input(format!(
                    "test class `{c}` has no folder in the training set; the probe cannot predict it"
                ))
            })
        })
        .collect::<Result<_>>()?;
    Ok(test.labels.iter().map(|&l| map[l]).collect())
}

fn probe_err(e: String) -> FlorenceError {
    FlorenceError::Input(format!("linear probe: {e}"))
}

/// The result of a linear probe.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeReport {
    /// Training images used.
    pub train_n: usize,
    /// Test images scored.
    pub test_n: usize,
    /// Classes.
    pub classes: usize,
    /// Test top-1 accuracy.
    pub top1: f64,
    /// Test top-5 accuracy.
    pub top5: f64,
    /// L-BFGS iterations.
    pub iterations: usize,
    /// Whether the optimiser converged.
    pub converged: bool,
}

/// Fits on `rows` of `train` (all when `None`) and scores `test`.
pub fn probe_features(
    train: &FolderFeatures,
    rows: Option<&[usize]>,
    test: &FolderFeatures,
    config: &ProbeConfig,
) -> Result<ProbeReport> {
    let test_labels = align(train, test)?;
    let (x, y): (Vec<f32>, Vec<usize>) = match rows {
        None => (train.features.clone(), train.labels.clone()),
        Some(r) => (
            r.iter().flat_map(|&i| train.features[i * train.dim..(i + 1) * train.dim].to_vec()).collect(),
            r.iter().map(|&i| train.labels[i]).collect(),
        ),
    };
    let c = train.classes.len();
    let lr = LogisticRegression::fit(&x, train.dim, &y, c, config).map_err(probe_err)?;
    let scores = lr.decision_function(&test.features).map_err(probe_err)?;
    Ok(ProbeReport {
        train_n: y.len(),
        test_n: test_labels.len(),
        classes: c,
        top1: top_k_accuracy(&scores, c, &test_labels, 1).map_err(probe_err)?,
        top5: top_k_accuracy(&scores, c, &test_labels, 5.min(c)).map_err(probe_err)?,
        iterations: lr.iterations,
        converged: lr.converged,
    })
}

/// Linear probe: embed both folders, fit on all training images, score the test images.
pub fn linear_probe(
    model: &Florence,
    preprocessor: &Preprocessor,
    train_folder: &Path,
    test_folder: &Path,
    config: &ProbeConfig,
    batch_size: usize,
    progress: &mut dyn Progress,
) -> Result<ProbeReport> {
    let train = folder_features(model, preprocessor, train_folder, batch_size, progress)?;
    let test = folder_features(model, preprocessor, test_folder, batch_size, progress)?;
    probe_features(&train, None, &test, config)
}

/// The result of a few-shot evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FewShotReport {
    /// Images per class in each draw.
    pub k: usize,
    /// Mean test top-1 over the draws.
    pub mean_top1: f64,
    /// Standard deviation of top-1 over the draws.
    pub std_top1: f64,
    /// Each draw's probe.
    pub trials: Vec<ProbeReport>,
}

/// Few-shot from features: `trials` draws of `k` training images per class (seeds `seed`,
/// `seed + 1`, ...), a probe fitted on each.
pub fn few_shot_features(
    train: &FolderFeatures,
    test: &FolderFeatures,
    k: usize,
    trials: usize,
    seed: u64,
    config: &ProbeConfig,
) -> Result<FewShotReport> {
    if k == 0 || trials == 0 {
        return Err(FlorenceError::Input("few-shot needs k >= 1 and at least one trial".into()));
    }
    let reports = (0..trials as u64)
        .map(|t| {
            let rows =
                few_shot_indices(&train.labels, train.classes.len(), k, seed.wrapping_add(t)).map_err(probe_err)?;
            probe_features(train, Some(&rows), test, config)
        })
        .collect::<Result<Vec<_>>>()?;
    let n = reports.len() as f64;
    let mean = reports.iter().map(|r| r.top1).sum::<f64>() / n;
    let std = (reports.iter().map(|r| (r.top1 - mean).powi(2)).sum::<f64>() / n).sqrt();
    Ok(FewShotReport { k, mean_top1: mean, std_top1: std, trials: reports })
}

/// Few-shot evaluation on two folders (see [`few_shot_features`]).
#[allow(clippy::too_many_arguments)]
pub fn few_shot(
    model: &Florence,
    preprocessor: &Preprocessor,
    train_folder: &Path,
    test_folder: &Path,
    k: usize,
    trials: usize,
    seed: u64,
    config: &ProbeConfig,
    batch_size: usize,
    progress: &mut dyn Progress,
) -> Result<FewShotReport> {
    let train = folder_features(model, preprocessor, train_folder, batch_size, progress)?;
    let test = folder_features(model, preprocessor, test_folder, batch_size, progress)?;
    few_shot_features(&train, &test, k, trials, seed, config)
}
