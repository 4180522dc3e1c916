//! What the trainer needs from a task: its model, its batches, its loss and its evaluation.
//!
//! [`super::Trainer`] is generic over a [`Task`]: every task gets the same AdamW groups and
//! schedules, gradient accumulation, f32 master weights with f16/bf16 working copies and loss
//! scaling, data parallelism over devices, atomic checkpoints with an exact resume, progress,
//! the metrics log and its plot. A task supplies what differs: how to build, load and save its
//! model, the batch of a given index (a pure function of the index, so a resumed run sees the
//! same batches), the loss and gradients of a batch over the replicas, and an evaluation.
//! [`UniclTask`] (image-text contrastive training) is one; detection, VQA and video fine-tuning
//! implement the same trait.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use burn::module::Module;
use burn::prelude::*;
use burn::tensor::DType;

use super::distributed::data_parallel_gradients;
use super::step::{StepGradients, StepOptions};
use crate::config::FlorenceConfig;
use crate::data::{BatchSource, HostBatch};
use crate::error::Result;
use crate::eval::{ZeroShotReport, zero_shot_folder};
use crate::files::Skipped;
use crate::model::Florence;
use crate::preprocess::Preprocessor;
use crate::progress::Progress;
use crate::zeroshot::Templates;

/// What the trainer tells a task about the batch it differentiates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchContext {
    /// Multiply the loss by this before differentiation (1 / accumulation, times the f16 loss
    /// scale).
    pub loss_weight: f32,
    /// The batch's index in the stream (the same batch has the same index after a resume).
    pub index: u64,
    /// The seed of the batch's random draws inside the model (stochastic depth): a pure
    /// function of the run's seed and `index`, so a resumed run draws what an uninterrupted one
    /// would have.
    pub seed: u64,
}

impl BatchContext {
    /// The context of batch `index` of a run seeded with `run_seed`.
    pub fn new(run_seed: u64, index: u64, loss_weight: f32) -> Self {
        /// Separates these draws from the data pipeline's, which derive from the same run seed.
        const MODEL_NOISE: u64 = 0x006e_6f69_7365; // "noise"
        Self { loss_weight, index, seed: crate::rng::derive_seed(run_seed, &[MODEL_NOISE, index]) }
    }
}

/// A trainable task (see the module docs).
pub trait Task: Send + Sync + 'static {
    /// The model: a Burn module.
    type Model: Module + 'static;
    /// One batch as the data stream produces it, on the host.
    type Batch: Send + 'static;
    /// What an evaluation reports.
    type Eval: Clone + std::fmt::Debug + serde::Serialize;

    /// The model with fresh weights on `device` (the backend's RNG is seeded before this).
    fn init_model(&self, device: &Device) -> Result<Self::Model>;

    /// Loads a weights file into `model`, strictly.
    fn load_weights(&self, model: &mut Self::Model, path: &Path) -> Result<()>;

    /// Writes the model's weights (a checkpoint's `model.safetensors`, `final.safetensors`) in
    /// float type `dtype`.
    fn save_weights(&self, model: &Self::Model, path: &Path, dtype: DType) -> Result<()>;

    /// Files the run folder holds besides checkpoints and metrics (e.g. the model config).
    fn write_run_files(&self, output: &Path) -> Result<()> {
        let _ = output;
        Ok(())
    }

    /// The examples of the data stream (for the skipped-fraction check).
    fn dataset_len(&self) -> usize;

    /// Batch `index` of the stream; runs on the loader thread.
    fn load_batch(&self, index: u64) -> Result<Self::Batch>;

    /// Usable examples of a batch and the files it left out.
    fn batch_examples<'a>(&self, batch: &'a Self::Batch) -> (usize, &'a [Skipped]);

    /// The fewest usable examples a batch needs to be trained on (a contrastive loss needs 2).
    fn min_batch(&self) -> usize {
        1
    }

    /// The loss of `batch` and the parameter gradients, over `replicas` (one per device, the
    /// same weights; the first is the one optimised), with the loss multiplied by
    /// `ctx.loss_weight` before differentiation (accumulation and loss scaling) and the model's
    /// random draws (stochastic depth) seeded by `ctx.seed`.
    fn gradients(&self, replicas: &[Self::Model], batch: &Self::Batch, ctx: BatchContext) -> Result<StepGradients>;

    /// A number the metrics log records every step (UniCL: the temperature `exp(logit_scale)`).
    fn scale(&self, model: &Self::Model) -> Option<f32> {
        let _ = model;
        None
    }

    /// Steps between evaluations (`None`: no evaluation).
    fn eval_every(&self) -> Option<usize> {
        None
    }

    /// Evaluates `model` (in inference mode); `None` when no evaluation is configured.
    fn evaluate(&self, model: &Self::Model, progress: &mut dyn Progress) -> Result<Option<Self::Eval>> {
        let _ = (model, progress);
        Ok(None)
    }

    /// Top-1 and top-5 accuracy of an evaluation, for the metrics log and plot.
    fn eval_accuracy(&self, eval: &Self::Eval) -> (Option<f32>, Option<f32>) {
        let _ = eval;
        (None, None)
    }
}

/// UniCL image-text-label contrastive training of the two-tower model.
pub struct UniclTask {
    /// The model's architecture.
    pub model_config: FlorenceConfig,
    /// The batch stream.
    pub source: Arc<BatchSource>,
    /// Gradient-cache sub-batch size per replica.
    pub grad_cache_chunk: Option<usize>,
    /// Upper clamp of `exp(logit_scale)`.
    pub max_logit_scale: Option<f32>,
    /// Zero-shot evaluation: folder, templates, every, batch size.
    pub eval: Option<(PathBuf, Templates, usize, usize)>,
    /// The epoch order the loader thread last computed (a cache: batches are a pure function
    /// of their index either way).
    order: Mutex<Option<(u64, Vec<usize>)>>,
}

impl UniclTask {
    /// The task over `source`; see the fields.
    pub fn new(
        model_config: FlorenceConfig,
        source: Arc<BatchSource>,
        grad_cache_chunk: Option<usize>,
        max_logit_scale: Option<f32>,
        eval: Option<(PathBuf, Templates, usize, usize)>,
    ) -> Self {
        Self { model_config, source, grad_cache_chunk, max_logit_scale, eval, order: Mutex::new(None) }
    }
}

impl Task for UniclTask {
    type Model = Florence;
    type Batch = HostBatch;
    type Eval = ZeroShotReport;

    fn init_model(&self, device: &Device) -> Result<Florence> {
        self.model_config.init(device)
    }

    fn load_weights(&self, model: &mut Florence, path: &Path) -> Result<()> {
        model.load_weights(path).map(|_| ())
    }

    fn save_weights(&self, model: &Florence, path: &Path, dtype: DType) -> Result<()> {
        model.save_safetensors(path, dtype)
    }

    fn write_run_files(&self, output: &Path) -> Result<()> {
        self.model_config.save(output.join("config.json"))
    }

    fn dataset_len(&self) -> usize {
        self.source.dataset.len()
    }

    fn load_batch(&self, index: u64) -> Result<HostBatch> {
        // A poisoned cache is only a cache: start it again.
        let mut order = self.order.lock().unwrap_or_else(|e| e.into_inner());
        self.source.load(index, &mut order)
    }

    fn batch_examples<'a>(&self, batch: &'a HostBatch) -> (usize, &'a [Skipped]) {
        (batch.len(), &batch.skipped)
    }

    fn min_batch(&self) -> usize {
        2
    }

    fn gradients(&self, replicas: &[Florence], batch: &HostBatch, ctx: BatchContext) -> Result<StepGradients> {
        let device = replicas.first().map(|m| m.logit_scale.val().device().without_autodiff());
        let Some(device) = device else {
            return Err(crate::FlorenceError::Input("training needs at least one device".into()));
        };
        let opts = StepOptions {
            chunk: self.grad_cache_chunk,
            max_scale: self.max_logit_scale,
            loss_weight: ctx.loss_weight,
            drop_path_seed: Some(ctx.seed),
        };
        data_parallel_gradients(replicas, &batch.to_device(&device), opts)
    }

    fn scale(&self, model: &Florence) -> Option<f32> {
        Some(model.scale_value())
    }

    fn eval_every(&self) -> Option<usize> {
        self.eval.as_ref().map(|e| e.2)
    }

    fn evaluate(&self, model: &Florence, progress: &mut dyn Progress) -> Result<Option<ZeroShotReport>> {
        let Some((folder, templates, _, batch)) = &self.eval else { return Ok(None) };
        let pre = Preprocessor::new(self.model_config.preprocess())?;
        zero_shot_folder(model, &self.source.tokenizer, &pre, folder, templates, None, *batch, progress).map(Some)
    }

    fn eval_accuracy(&self, eval: &ZeroShotReport) -> (Option<f32>, Option<f32>) {
        (Some(eval.top1), Some(eval.top5))
    }
}
