//! The training config (`florence train --config train.toml|json`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::optimizer::OptimizerConfig;
use crate::data::{AugmentConfig, SourceSpec};
use crate::error::{FlorenceError, Result};

/// Float precision of the parameters and activations. The loss is always computed in f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f32 everywhere.
    #[default]
    F32,
    /// f16 activations and working weights, f32 master weights and AdamW state, dynamic loss
    /// scaling (flex: native; wgpu: needs `shader-f16`).
    F16,
    /// bf16 activations and working weights, f32 master weights and AdamW state (flex: native;
    /// CUDA; Metal with MSL 3.2).
    Bf16,
}

/// Zero-shot evaluation during training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSpec {
    /// A labelled image folder (ROOT/CLASS/IMAGE).
    pub folder: PathBuf,
    /// `imagenet`, `simple`, `none` or a template file.
    #[serde(default = "default_templates")]
    pub templates: String,
    /// Evaluate every this many optimiser steps (and at the end).
    pub every: usize,
    /// Images per forward pass.
    #[serde(default = "default_eval_batch")]
    pub batch_size: usize,
}

fn default_templates() -> String {
    "simple".into()
}
fn default_eval_batch() -> usize {
    64
}
fn one() -> usize {
    1
}
fn two() -> usize {
    2
}
fn default_every() -> usize {
    100
}
fn default_max_scale() -> Option<f32> {
    Some(100.0)
}

/// Everything a training run needs. Relative paths are relative to the config file's folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// A preset name (`florence info --presets`) or a model config JSON file (read by the UniCL
    /// task; the other fields up to `eval` are too, where marked, and the rest by the trainer
    /// for every task).
    pub model: String,
    /// Weights to start from (fine-tuning); random initialisation when absent.
    #[serde(default)]
    pub init: Option<PathBuf>,
    /// Run folder: checkpoints, `metrics.jsonl`, `metrics.png`, `final.safetensors`.
    pub output: PathBuf,
    /// Training sources, mixed into one stream (UniCL; at least one).
    pub data: Vec<SourceSpec>,
    /// Prompt templates for image-label sources: `imagenet`, `simple`, `none` or a file.
    #[serde(default = "default_templates")]
    pub templates: String,
    /// A tokenizer JSON file; the bundled CLIP BPE when absent.
    #[serde(default)]
    pub tokenizer: Option<PathBuf>,
    /// Training augmentation.
    #[serde(default)]
    pub augment: AugmentConfig,
    /// Pairs per batch (the size of the similarity matrix).
    pub batch_size: usize,
    /// Gradient-cache sub-batch size; `None` backpropagates each device's shard at once.
    #[serde(default)]
    pub grad_cache_chunk: Option<usize>,
    /// Batches whose gradients are summed (each weighted 1/k) before one optimiser step.
    #[serde(default = "one")]
    pub accumulation: usize,
    /// AdamW and the learning-rate schedule; `total_steps` is the length of the run.
    pub optimizer: OptimizerConfig,
    /// Stochastic depth of the image tower: the drop-path rate of its last block, rising
    /// linearly from 0 (timm's and UniCL's `drop_path_rate`; UniCL trains Swin-T with 0.2).
    /// Overrides the model config's `image.drop_path_rate` when given (UniCL task).
    #[serde(default)]
    pub drop_path_rate: Option<f64>,
    /// The same for the text tower (`text.drop_path_rate`).
    #[serde(default)]
    pub text_drop_path_rate: Option<f64>,
    /// Upper clamp of `exp(logit_scale)` (CLIP: 100); `null` for none (UniCL).
    #[serde(default = "default_max_scale")]
    pub max_logit_scale: Option<f32>,
    /// Seed of the data order, the augmentation and the initial weights.
    #[serde(default)]
    pub seed: u64,
    /// Parameter and activation precision.
    #[serde(default)]
    pub precision: Precision,
    /// Burn's balanced gradient checkpointing (recompute memory-bound activations in backward).
    #[serde(default)]
    pub gradient_checkpointing: bool,
    /// Devices to train on at once (data parallel, e.g. `["cuda:0", "cuda:1"]`, `["wgpu:0",
    /// "wgpu:1"]` or `["flex", "flex"]`; names as `device::parse_device_name` reads them); the
    /// default device when empty.
    #[serde(default)]
    pub devices: Vec<String>,
    /// Save a checkpoint every this many optimiser steps (0: only at the end).
    #[serde(default = "default_every")]
    pub checkpoint_every: usize,
    /// Checkpoints kept on disk (the newest ones); at least 1.
    #[serde(default = "two")]
    pub keep_checkpoints: usize,
    /// Decoding threads (0: all cores).
    #[serde(default)]
    pub workers: usize,
    /// Batches prepared ahead of the model.
    #[serde(default = "two")]
    pub prefetch: usize,
    /// Zero-shot evaluation during training.
    #[serde(default)]
    pub eval: Option<EvalSpec>,
    /// Largest fraction of the files read so far that may be skipped (unreadable, missing)
    /// before the run stops with an error; checked after every step once 100 files (or the
    /// whole dataset, if smaller) have been read. A step with no usable pair is always an error.
    #[serde(default = "default_max_skipped")]
    pub max_skipped_fraction: f64,
}

fn default_max_skipped() -> f64 {
    0.1
}

impl TrainConfig {
    /// Parses TOML (`.toml`) or JSON (anything else) text.
    pub fn parse(text: &str, toml_syntax: bool) -> Result<Self> {
        let cfg: Self = if toml_syntax {
            toml::from_str(text).map_err(|e| FlorenceError::Config(format!("train config: {e}")))?
        } else {
            serde_json::from_str(text).map_err(|e| FlorenceError::Config(format!("train config: {e}")))?
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads a `.toml` or `.json` file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = crate::files::read_text_file(path)?;
        let toml_syntax = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("toml"));
        Self::parse(&text, toml_syntax).map_err(|e| match e {
            FlorenceError::Config(m) => FlorenceError::Config(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Checks the settings; the error names the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(FlorenceError::Config(m.to_string()));
        if self.batch_size < 2 {
            return bad("`batch_size` must be at least 2: a contrastive loss needs negatives");
        }
        if self.accumulation == 0 {
            return bad("`accumulation` must be at least 1");
        }
        if self.grad_cache_chunk == Some(0) {
            return bad("`grad_cache_chunk` must be at least 1");
        }
        if self.keep_checkpoints == 0 {
            return bad("`keep_checkpoints` must be at least 1");
        }
        for (name, rate) in [("drop_path_rate", self.drop_path_rate), ("text_drop_path_rate", self.text_drop_path_rate)]
        {
            if rate.is_some_and(|r| !(0.0..1.0).contains(&r)) {
                return Err(FlorenceError::Config(format!("`{name}` must be in [0, 1), got {}", rate.unwrap_or(0.0))));
            }
        }
        if self.max_logit_scale.is_some_and(|m| m.is_nan() || m <= 0.0) {
            return bad("`max_logit_scale` must be positive");
        }
        if !(0.0..=1.0).contains(&self.max_skipped_fraction) {
            return bad("`max_skipped_fraction` must be between 0 and 1");
        }
        if self.eval.as_ref().is_some_and(|e| e.every == 0 || e.batch_size == 0) {
            return bad("`eval.every` and `eval.batch_size` must be at least 1");
        }
        self.augment.validate()?;
        self.optimizer.validate()
    }
}
