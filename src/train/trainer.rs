//! The training loop for any [`Task`]: AdamW with decay groups, warm-up + cosine, gradient
//! accumulation, data parallelism over several devices, gradient checkpointing and half
//! precision; atomic checkpoints and an exact `--resume`. [`Trainer`] without a type argument is
//! UniCL ([`UniclTask`]: the gradient cache, the all-gathered similarity matrix, zero-shot
//! evaluation), built from a [`TrainConfig`].
//!
//! A run folder holds:
//! - `checkpoints/step-NNNNNNN/` with `model.safetensors` (UniCL layout, the model's dtype),
//!   `optimizer.bpk` (Burn's optimizer record) and `state.json` (step, counters, config). Each is
//!   written into `*.partial` and renamed, and `checkpoints/latest` (the newest folder's name) is
//!   replaced last, so a crash at any point leaves the previous checkpoint intact.
//! - `metrics.jsonl` and `metrics.png`, `final.safetensors` and `config.json` (the model config).
//!
//! Exact resume: the batch stream is a pure function of the seed and the batch index
//! ([`crate::data::loader`]), parameter ids are assigned by position so the optimizer record maps
//! onto a freshly built model, and the learning rate is a function of the step. A run stopped
//! after step k and resumed reproduces the parameters of an uninterrupted run exactly
//! (tests/trainer.rs).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::optim::{GradientsAccumulator, ModuleOptimizer};
use burn::prelude::*;
use burn::tensor::DType;
use serde::{Deserialize, Serialize};

use super::config::{Precision, TrainConfig};
use super::metrics::{MetricsLine, MetricsLog, plot_metrics, read_metrics};
use super::optimizer::OptimizerConfig;
use super::precision::{LossScaler, cast_params, master_gradients};
use super::task::{BatchContext, Task, UniclTask};
use crate::config::FlorenceConfig;
use crate::data::{BatchSource, Dataset, Loader};
use crate::error::{FlorenceError, Result};
use crate::files::Skipped;
use crate::preprocess::DecodeOptions;
use crate::progress::{Progress, Silent};
use crate::text::tokenizer::Tokenizer;
use crate::zeroshot::Templates;

const STATE_FORMAT: &str = "florence-train-state-1";

/// What `state.json` records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Format tag.
    pub format: String,
    /// Optimiser steps taken.
    pub step: usize,
    /// Training pairs consumed.
    pub pairs_seen: u64,
    /// Files skipped so far.
    pub skipped: usize,
    /// The config of the run, to refuse resuming with a different one.
    pub config: TrainConfig,
    /// The f16 loss scaler's state (absent for f32 and bf16).
    #[serde(default)]
    pub loss_scaler: Option<LossScaler>,
}

/// What [`Trainer::run`] returns (`E`: the task's evaluation report).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrainSummary<E = crate::eval::ZeroShotReport> {
    /// The step reached.
    pub step: usize,
    /// Loss of the last step.
    pub last_loss: Option<f32>,
    /// Mean training pairs per second of this call.
    pub images_per_s: f32,
    /// Files skipped in this call.
    pub skipped: usize,
    /// The last evaluation, when configured.
    pub eval: Option<E>,
    /// The newest checkpoint folder.
    pub checkpoint: Option<PathBuf>,
}

/// Assigns parameter ids by traversal order (0, 1, 2, ...), so two builds of one architecture
/// share ids and an optimizer record saved by one applies to the other.
pub fn canonical_param_ids<M: Module>(model: M) -> M {
    struct Ids(u64);
    impl ModuleMapper for Ids {
        fn map_float<const D: usize>(&mut self, mut param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            param.id = ParamId::from(self.0);
            self.0 += 1;
            param
        }
    }
    model.map(&mut Ids(0))
}

/// A training run of task `T` (UniCL by default).
pub struct Trainer<T: Task = UniclTask> {
    cfg: TrainConfig,
    base: PathBuf,
    output: PathBuf,
    devices: Vec<Device>,
    /// The weights the forward and backward passes use: in the training precision.
    model: T::Model,
    /// f32 master weights behind half-precision training (same parameter ids as `model`);
    /// AdamW steps these, and `model` is cast from them (see [`super::precision`]).
    master: Option<T::Model>,
    /// The training precision's float type (`None`: f32 throughout).
    half: Option<DType>,
    /// Dynamic loss scaling, for f16.
    scaler: Option<LossScaler>,
    optim: ModuleOptimizer,
    task: Arc<T>,
    step: usize,
    pairs_seen: u64,
    skipped: usize,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FlorenceError + '_ {
    move |source| FlorenceError::Io { path: path.to_path_buf(), source }
}

impl Trainer<UniclTask> {
    /// A new UniCL run from `cfg` (relative paths against `base`, the config file's folder).
    /// Fails if the output folder already holds a checkpoint: resume it or choose another folder.
    pub fn new(cfg: TrainConfig, base: &Path) -> Result<Self> {
        let task = unicl_task(&cfg, base)?;
        Self::with_task(cfg, base, task)
    }

    /// Continues the UniCL run in `cfg.output` from its newest checkpoint. The config must equal
    /// the one the run started with, except `optimizer.total_steps`, which may grow (and the
    /// settings that only change logging, checkpoint cadence or loading speed).
    pub fn resume(cfg: TrainConfig, base: &Path) -> Result<Self> {
        let task = unicl_task(&cfg, base)?;
        Self::resume_task(cfg, base, task)
    }

    /// The model's config.
    pub fn model_config(&self) -> &FlorenceConfig {
        &self.task.model_config
    }
}

/// The UniCL task of a [`TrainConfig`]: its model, data sources, tokenizer, templates,
/// augmentation and zero-shot evaluation (relative paths against `base`).
pub fn unicl_task(cfg: &TrainConfig, base: &Path) -> Result<UniclTask> {
    cfg.validate()?;
    if cfg.data.is_empty() {
        return Err(FlorenceError::Config("`data` needs at least one source".into()));
    }
    let at = |p: &Path| if p.is_absolute() { p.to_path_buf() } else { base.join(p) };
    let mut model_config = if at(Path::new(&cfg.model)).is_file() {
        FlorenceConfig::load(at(Path::new(&cfg.model)))?
    } else {
        FlorenceConfig::preset(&cfg.model)?
    };
    if let Some(rate) = cfg.drop_path_rate {
        model_config.image.drop_path_rate = rate;
    }
    if let Some(rate) = cfg.text_drop_path_rate {
        model_config.text.drop_path_rate = rate;
    }
    let tokenizer = match &cfg.tokenizer {
        Some(p) => Tokenizer::from_file(at(p))?,
        None => Tokenizer::clip()?,
    }
    .with_context_length(model_config.text.context_length);
    // Template files, like every other path of the config, are relative to its folder.
    let tpl = |spec: &str| match spec {
        "imagenet" | "simple" | "none" => Templates::parse(spec),
        file => Templates::from_file(&at(Path::new(file))),
    };
    let templates = tpl(&cfg.templates)?;
    let parts = cfg.data.iter().map(|s| s.load(base)).collect::<Result<Vec<_>>>()?;
    let dataset = Dataset::concat(parts, templates.strings());
    let source = Arc::new(BatchSource {
        dataset,
        tokenizer,
        augment: cfg.augment.clone(),
        preprocess: model_config.preprocess(),
        batch_size: cfg.batch_size,
        seed: cfg.seed,
        workers: cfg.workers,
        decode: DecodeOptions::default(),
    });
    source.validate()?;
    let eval = match &cfg.eval {
        Some(e) => Some((at(&e.folder), tpl(&e.templates)?, e.every, e.batch_size)),
        None => None,
    };
    Ok(UniclTask::new(model_config, source, cfg.grad_cache_chunk, cfg.max_logit_scale, eval))
}

impl<T: Task> Trainer<T> {
    /// A new run of `task` with the training settings of `cfg` (optimizer, precision, devices,
    /// accumulation, checkpoints; relative paths against `base`). Fails if the output folder
    /// already holds a checkpoint.
    pub fn with_task(cfg: TrainConfig, base: &Path, task: T) -> Result<Self> {
        let t = Self::build(cfg, base, None, task)?;
        if t.output.join("checkpoints").join("latest").exists() {
            return Err(FlorenceError::Config(format!(
                "{} already holds a training run; resume it (`--resume`) or choose another `output`",
                t.output.display()
            )));
        }
        Ok(t)
    }

    /// Continues the run of `task` in `cfg.output` from its newest checkpoint (see
    /// [`Trainer::resume`] for what may change).
    pub fn resume_task(cfg: TrainConfig, base: &Path, task: T) -> Result<Self> {
        let output = base.join(&cfg.output);
        let ckpt = latest_checkpoint(&output)?.ok_or_else(|| {
            FlorenceError::Config(format!(
                "{} has no checkpoint to resume from; start without `--resume`",
                output.display()
            ))
        })?;
        let state: TrainState = serde_json::from_slice(&std::fs::read(ckpt.join("state.json")).map_err(io(&ckpt))?)
            .map_err(|e| FlorenceError::Config(format!("{}: {e}", ckpt.join("state.json").display())))?;
        if state.format != STATE_FORMAT {
            return Err(FlorenceError::Config(format!("{}: unknown state format `{}`", ckpt.display(), state.format)));
        }
        // What decides the trained weights must match; the run length and the settings that only
        // change logging, checkpoint cadence or loading speed may differ.
        let normalise = |c: &TrainConfig| TrainConfig {
            optimizer: OptimizerConfig { total_steps: 0, ..c.optimizer.clone() },
            eval: None,
            checkpoint_every: 0,
            keep_checkpoints: 1,
            workers: 0,
            prefetch: 0,
            ..c.clone()
        };
        if normalise(&state.config) != normalise(&cfg) {
            return Err(FlorenceError::Config(format!(
                "the config differs from the one {} was started with; on resume only `optimizer.total_steps`, `eval`, `checkpoint_every`, `keep_checkpoints`, `workers` and `prefetch` may change",
                output.display()
            )));
        }
        let mut t = Self::build(cfg, base, Some(&ckpt), task)?;
        t.step = state.step;
        t.pairs_seen = state.pairs_seen;
        t.skipped = state.skipped;
        if t.scaler.is_some() {
            t.scaler = Some(state.loss_scaler.unwrap_or_default());
        }
        Ok(t)
    }

    fn build(cfg: TrainConfig, base: &Path, ckpt: Option<&Path>, task: T) -> Result<Self> {
        cfg.validate()?;
        let at = |p: &Path| if p.is_absolute() { p.to_path_buf() } else { base.join(p) };
        let output = at(&cfg.output);
        let names: Vec<String> =
            if cfg.devices.is_empty() { vec![crate::device::default_name()?] } else { cfg.devices.clone() };
        // Mixed precision: the working copy of the weights, and so the activations, are half;
        // the master weights and AdamW's state stay f32 (see `super::precision`). The devices
        // keep f32 as their default float type, so optimiser state reloaded on resume is f32.
        let half = match cfg.precision {
            Precision::F32 => None,
            Precision::F16 => Some(DType::F16),
            Precision::Bf16 => Some(DType::BF16),
        };
        let mut devices = Vec::with_capacity(names.len());
        for name in &names {
            let d = crate::device::device_by_name(name)?;
            if let Some(dtype) = half
                && !d.supports_dtype(dtype)
            {
                return Err(FlorenceError::Config(format!(
                    "device `{name}` does not support {dtype:?}; use `precision = \"f32\"`"
                )));
            }
            let mut d = d.autodiff();
            if cfg.gradient_checkpointing {
                d = d.gradient_checkpointing();
            }
            devices.push(d);
        }
        let main = devices[0].clone();

        // The weights that are loaded, saved and stepped are f32 (the master copy in half
        // precision), whatever float type the device defaults to.
        let built = |main: &Device| -> Result<T::Model> {
            let m = task.init_model(main)?;
            Ok(if half.is_some() { cast_params(m, DType::F32) } else { m })
        };
        let load = |path: PathBuf| -> Result<T::Model> {
            let mut m = built(&main)?;
            task.load_weights(&mut m, &path)?;
            Ok(m)
        };
        let weights = match (ckpt, &cfg.init) {
            (Some(c), _) => load(c.join("model.safetensors"))?,
            (None, Some(init)) => load(at(init))?,
            (None, None) => {
                // Parameter initialisation draws from the backend's RNG; seed it for repeatability.
                main.seed(cfg.seed);
                built(&main)?
            }
        };
        let weights = canonical_param_ids(weights).train();
        let (model, master) = match half {
            Some(dtype) => (cast_params(weights.clone(), dtype), Some(weights)),
            None => (weights, None),
        };
        let scaler = (cfg.precision == Precision::F16).then(LossScaler::default);
        let mut optim = cfg.optimizer.init(master.as_ref().unwrap_or(&model))?;
        if let Some(c) = ckpt {
            let bytes = std::fs::read(c.join("optimizer.bpk")).map_err(io(c))?;
            optim = optim
                .from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
                .map_err(|e| FlorenceError::Config(format!("{}: {e:?}", c.join("optimizer.bpk").display())))?;
        }
        Ok(Self {
            cfg,
            base: base.to_path_buf(),
            output,
            devices,
            model,
            master,
            half,
            scaler,
            optim,
            task: Arc::new(task),
            step: 0,
            pairs_seen: 0,
            skipped: 0,
        })
    }

    /// Optimiser steps taken so far.
    pub fn step(&self) -> usize {
        self.step
    }

    /// The model being trained.
    pub fn model(&self) -> &T::Model {
        &self.model
    }

    /// The task.
    pub fn task(&self) -> &T {
        &self.task
    }

    /// The run folder.
    pub fn output(&self) -> &Path {
        &self.output
    }

    /// The task's evaluation of the current model (`None` when none is configured).
    pub fn evaluate(&self, progress: &mut dyn Progress) -> Result<Option<T::Eval>> {
        self.task.evaluate(&self.model.valid(), progress)
    }

    /// Trains until `optimizer.total_steps`, or until step `stop_at` if given (for a run split
    /// into parts). Saves checkpoints every `checkpoint_every` steps and at the end, logs every
    /// step to `metrics.jsonl`, and reports progress (steps; the message carries loss, learning
    /// rate and throughput).
    pub fn run(&mut self, stop_at: Option<usize>, progress: &mut dyn Progress) -> Result<TrainSummary<T::Eval>> {
        let total = self.cfg.optimizer.total_steps;
        let end = stop_at.unwrap_or(total).min(total);
        std::fs::create_dir_all(self.output.join("checkpoints")).map_err(io(&self.output))?;
        self.task.write_run_files(&self.output)?;
        let mut log = MetricsLog::open(self.output.join("metrics.jsonl"), self.step)?;
        let accum = self.cfg.accumulation;
        let task = self.task.clone();
        let mut loader = Loader::from_fn(move |b| task.load_batch(b), (self.step * accum) as u64, self.cfg.prefetch)?;
        let started = Instant::now();
        let (mut pairs, mut skipped_here, mut last_loss, mut last_eval, mut last_ckpt) =
            (0u64, 0usize, None, None, None);
        progress.start("train", total);
        progress.advance(self.step);
        while self.step < end {
            let t0 = Instant::now();
            let lr = self.cfg.optimizer.lr_at(self.step);
            let replicas: Vec<T::Model> = self
                .devices
                .iter()
                .enumerate()
                .map(|(i, d)| if i == 0 { self.model.clone() } else { self.model.clone().fork(d) })
                .collect();
            let mut acc = GradientsAccumulator::<T::Model>::new();
            // f16: the loss is scaled before backpropagation and the gradients unscaled after.
            let loss_scale = self.scaler.map_or(1.0, |s| s.scale);
            let (mut loss_sum, mut batches, mut step_pairs, mut step_skipped) = (0f32, 0usize, 0u64, 0usize);
            let mut first_skip = None;
            for k in 0..accum {
                let index = (self.step * accum + k) as u64;
                let batch = loader.next_batch()?;
                let (usable, skipped) = self.task.batch_examples(&batch);
                step_skipped += skipped.len();
                for s in skipped {
                    progress.warn(&format!("skipping {}: {}", s.path.display(), s.reason));
                }
                first_skip = first_skip.or_else(|| skipped.first().cloned());
                if usable < self.task.min_batch().max(1) {
                    continue; // too few readable files to train on (UniCL: nothing to contrast)
                }
                let ctx = BatchContext::new(self.cfg.seed, index, loss_scale / accum as f32);
                let g = self.task.gradients(&replicas, &batch, ctx)?;
                loss_sum += g.loss;
                batches += 1;
                step_pairs += usable as u64;
                acc.accumulate(&self.model, g.grads);
            }
            drop(replicas);
            self.check_skipped(step_pairs, step_skipped, first_skip)?;
            let applied = self.apply(lr, acc.grads(), loss_scale, progress);
            self.step += 1;
            self.pairs_seen += step_pairs;
            self.skipped += step_skipped;
            pairs += step_pairs;
            skipped_here += step_skipped;
            let loss = (batches > 0).then(|| loss_sum / batches as f32);
            last_loss = loss.or(last_loss);
            let ips = step_pairs as f32 / t0.elapsed().as_secs_f32().max(1e-9);
            let mut line = MetricsLine {
                step: self.step,
                loss,
                lr: Some(lr),
                scale: self.task.scale(&self.model),
                images_per_s: Some(ips),
                skipped: Some(step_skipped),
                zero_shot_top1: None,
                zero_shot_top5: None,
                loss_scale: self.scaler.map(|_| loss_scale),
                overflow: self.scaler.map(|_| !applied),
            };
            if let Some(every) = self.task.eval_every()
                && (self.step.is_multiple_of(every.max(1)) || self.step == end)
                && let Some(report) = self.evaluate(&mut Silent)?
            {
                (line.zero_shot_top1, line.zero_shot_top5) = self.task.eval_accuracy(&report);
                last_eval = Some(report);
            }
            log.append(&line)?;
            progress.message(&format!(
                "loss {} lr {lr:.2e} {ips:.1} img/s",
                loss.map_or("-".to_string(), |l| format!("{l:.4}"))
            ));
            progress.advance(1);
            let every = self.cfg.checkpoint_every;
            if self.step == end || (every > 0 && self.step.is_multiple_of(every)) {
                last_ckpt = Some(self.save_checkpoint()?);
                plot_metrics(&read_metrics(log.path())?, &self.output.join("metrics.png"))?;
            }
        }
        progress.finish();
        if self.step >= total {
            self.task.save_weights(self.weights(), &self.output.join("final.safetensors"), self.dtype())?;
        }
        Ok(TrainSummary {
            step: self.step,
            last_loss,
            images_per_s: pairs as f32 / started.elapsed().as_secs_f32().max(1e-9),
            skipped: skipped_here,
            eval: last_eval,
            checkpoint: last_ckpt,
        })
    }

    /// One optimiser step with the (summed, still loss-scaled) gradients of the working model;
    /// Stops the run when step `self.step + 1` had no usable pair, or when more than
    /// `max_skipped_fraction` of the files read so far (with this step's) were skipped: training
    /// on nothing would save the initial weights as if they were trained.
    fn check_skipped(&self, step_pairs: u64, step_skipped: usize, first: Option<Skipped>) -> Result<()> {
        let why = first.map_or(String::new(), |s| format!(" (e.g. {}: {})", s.path.display(), s.reason));
        if step_pairs == 0 {
            return Err(FlorenceError::Input(format!(
                "training step {} had no usable image-text pair: {step_skipped} file(s) were skipped{why}; check the data paths",
                self.step + 1
            )));
        }
        let skipped = (self.skipped + step_skipped) as u64;
        let read = self.pairs_seen + step_pairs + skipped;
        let enough = read >= (self.task.dataset_len() as u64).min(100);
        if enough && skipped as f64 > self.cfg.max_skipped_fraction * read as f64 {
            return Err(FlorenceError::Input(format!(
                "{skipped} of the {read} files read so far were skipped, more than `max_skipped_fraction` = {}{why}; fix the data or raise the fraction",
                self.cfg.max_skipped_fraction
            )));
        }
        Ok(())
    }

    /// `false` when f16 gradients overflowed and the step was skipped.
    fn apply(
        &mut self,
        lr: f64,
        grads: burn::optim::GradientsParams,
        loss_scale: f32,
        progress: &mut dyn Progress,
    ) -> bool {
        let Some(master) = self.master.take() else {
            self.model = self.optim.step(lr, self.model.clone(), grads);
            return true;
        };
        let (grads, finite) = master_gradients(grads, &master, 1.0 / loss_scale);
        let apply = self.scaler.as_mut().map_or(finite, |s| s.update(finite));
        let master = if apply {
            let m = self.optim.step(lr, master, grads);
            self.model = cast_params(m.clone(), self.half.unwrap_or(DType::F32));
            m
        } else {
            progress.warn(&format!(
                "step {}: gradients overflowed at loss scale {loss_scale}; step skipped, scale lowered",
                self.step + 1
            ));
            master
        };
        self.master = Some(master);
        apply
    }

    /// The weights being trained, which checkpoints save: the f32 master copy in half-precision
    /// training ([`Trainer::model`] is then its half working copy), else the model itself.
    pub fn weights(&self) -> &T::Model {
        self.master.as_ref().unwrap_or(&self.model)
    }

    /// The float type of the weights checkpoints save (that of their first float parameter).
    fn dtype(&self) -> DType {
        struct First(Option<DType>);
        impl burn::module::ModuleVisitor for First {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                self.0 = self.0.or(Some(param.val().dtype()));
            }
        }
        let mut first = First(None);
        self.weights().visit(&mut first);
        first.0.unwrap_or(DType::F32)
    }

    /// Writes a checkpoint of the current step atomically and prunes old ones; returns its folder.
    pub fn save_checkpoint(&self) -> Result<PathBuf> {
        let dir = self.output.join("checkpoints");
        let name = format!("step-{:07}", self.step);
        let partial = dir.join(format!("{name}.partial"));
        let final_dir = dir.join(&name);
        // A checkpoint is a folder of three files that must appear together, so the folder is
        // what is made atomic: filled under `<name>.partial` and renamed. `files::write_atomic`
        // (tempfile's persist) renames one file and cannot serve here; `tempfile::TempDir` has no
        // persist, and its random name would defeat the clean-up of a crashed `<name>.partial`
        // below. The files inside need no atomic writes of their own.
        if partial.exists() {
            std::fs::remove_dir_all(&partial).map_err(io(&partial))?;
        }
        std::fs::create_dir_all(&partial).map_err(io(&partial))?;
        self.task.save_weights(self.weights(), &partial.join("model.safetensors"), self.dtype())?;
        let bytes = self
            .optim
            .into_bytes()
            .map_err(|e| FlorenceError::Input(format!("cannot serialise the optimizer state: {e:?}")))?;
        std::fs::write(partial.join("optimizer.bpk"), &*bytes).map_err(io(&partial))?;
        let state = TrainState {
            format: STATE_FORMAT.into(),
            step: self.step,
            pairs_seen: self.pairs_seen,
            skipped: self.skipped,
            config: self.cfg.clone(),
            loss_scaler: self.scaler,
        };
        std::fs::write(partial.join("state.json"), serde_json::to_vec_pretty(&state).expect("plain struct"))
            .map_err(io(&partial))?;
        if final_dir.exists() {
            std::fs::remove_dir_all(&final_dir).map_err(io(&final_dir))?;
        }
        std::fs::rename(&partial, &final_dir).map_err(io(&final_dir))?;
        crate::files::write_bytes_atomic(&dir.join("latest"), name.as_bytes())?;
        // Keep the newest `keep_checkpoints` folders.
        let mut old: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(io(&dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_dir()
                    && p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("step-") && !n.ends_with(".partial"))
            })
            .collect();
        old.sort();
        let excess = old.len().saturating_sub(self.cfg.keep_checkpoints);
        for p in old.into_iter().take(excess) {
            let _ = std::fs::remove_dir_all(p);
        }
        Ok(final_dir)
    }

    /// The config file's folder that relative paths resolve against.
    pub fn base(&self) -> &Path {
        &self.base
    }
}

/// The newest complete checkpoint folder of a run, if any.
pub fn latest_checkpoint(output: &Path) -> Result<Option<PathBuf>> {
    let latest = output.join("checkpoints").join("latest");
    if !latest.exists() {
        return Ok(None);
    }
    let name = std::fs::read_to_string(&latest).map_err(io(&latest))?;
    let dir = output.join("checkpoints").join(name.trim());
    if !dir.join("state.json").exists() {
        return Err(FlorenceError::Config(format!(
            "{} names {}, which is incomplete or missing",
            latest.display(),
            dir.display()
        )));
    }
    Ok(Some(dir))
}
