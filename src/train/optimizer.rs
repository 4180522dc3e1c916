//! AdamW with UniCL/Swin's parameter groups and a warm-up + cosine learning-rate schedule.
//!
//! Weight decay is off for norms, biases, embeddings, the relative-position tables and the
//! logit scale (Swin's `no_weight_decay` / CLIP practice): every rank-1 parameter (LayerNorm
//! gains and shifts, Linear biases, `logit_scale`) and, by path, `token_embedding`,
//! `positional_embedding` and `relative_position_bias_table`. The groups are built from the
//! model's parameter ids, so they do not depend on how Burn spells paths.

use burn::module::{Module, ModuleVisitor, Param, ParamGroup, ParamId};
use burn::optim::ModuleOptimizer;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::adamw::FusedAdamW;
use crate::error::{FlorenceError, Result};

/// Optimiser and schedule settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerConfig {
    /// Peak learning rate, reached at the end of warm-up.
    pub lr: f64,
    /// Learning rate at the end of the cosine decay.
    #[serde(default)]
    pub min_lr: f64,
    /// Linear warm-up steps from 0 to `lr`.
    #[serde(default)]
    pub warmup_steps: usize,
    /// Total optimiser steps (warm-up included); the cosine ends here.
    pub total_steps: usize,
    /// Decoupled weight decay for the decayed group.
    #[serde(default = "default_wd")]
    pub weight_decay: f32,
    /// Adam betas.
    #[serde(default = "default_betas")]
    pub betas: (f32, f32),
    /// Adam epsilon.
    #[serde(default = "default_eps")]
    pub eps: f32,
    /// Clip each parameter's gradient to this L2 norm (Burn's per-tensor norm clipping).
    #[serde(default)]
    pub clip_grad_norm: Option<f32>,
}

fn default_wd() -> f32 {
    0.05
}
fn default_betas() -> (f32, f32) {
    (0.9, 0.999)
}
fn default_eps() -> f32 {
    1e-8
}

impl OptimizerConfig {
    /// Checks the settings; the error names the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(FlorenceError::Config(format!("optimizer: {m}")));
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("`lr` must be a positive number");
        }
        if !(self.min_lr >= 0.0 && self.min_lr <= self.lr) {
            return bad("`min_lr` must be between 0 and `lr`");
        }
        if self.total_steps == 0 || self.warmup_steps > self.total_steps {
            return bad("`total_steps` must be at least 1 and at least `warmup_steps`");
        }
        if self.weight_decay.is_nan()
            || self.weight_decay < 0.0
            || !(0.0..1.0).contains(&self.betas.0)
            || !(0.0..1.0).contains(&self.betas.1)
        {
            return bad("`weight_decay` must be >= 0 and both betas in [0, 1)");
        }
        Ok(())
    }

    /// The learning rate for optimiser step `step` (0-based): linear warm-up to `lr` over
    /// `warmup_steps` steps (step 0 gets `lr / warmup_steps`), then cosine decay to `min_lr` at
    /// `total_steps`; `min_lr` after that.
    pub fn lr_at(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let span = (self.total_steps - self.warmup_steps).max(1) as f64;
        let t = ((step - self.warmup_steps) as f64 / span).min(1.0);
        self.min_lr + 0.5 * (self.lr - self.min_lr) * (1.0 + (std::f64::consts::PI * t).cos())
    }

    /// AdamW over `model` with weight decay on the decayed group only ([`FusedAdamW`]: Burn's
    /// AdamW, as one pass per parameter on flex; same values, same optimizer records).
    pub fn init<M: Module>(&self, model: &M) -> Result<ModuleOptimizer> {
        self.validate()?;
        let adamw = |wd: f32| FusedAdamW::new(self.betas.0, self.betas.1, self.eps, wd);
        let clip = self.clip_grad_norm.map(|c| GradientClippingConfig::Norm(c).init());
        let mut optim = ModuleOptimizer::from(adamw(self.weight_decay));
        if let Some(c) = clip.clone() {
            optim = optim.with_grad_clipping(c);
        }
        let (_, no_decay) = decay_groups(model);
        Ok(optim.with_group(ParamGroup::from_ids(no_decay), adamw(0.0), clip))
    }
}

/// Parameter ids `(decayed, not decayed)` by the rules in the module docs.
pub fn decay_groups<M: Module>(model: &M) -> (Vec<ParamId>, Vec<ParamId>) {
    let mut v = Groups::default();
    model.visit(&mut v);
    (v.decay, v.no_decay)
}

/// Parameter paths `(path, decayed)`, for reports and tests.
pub fn decay_table<M: Module>(model: &M) -> Vec<(String, bool)> {
    let mut v = Groups::default();
    model.visit(&mut v);
    v.table
}

#[derive(Default)]
struct Groups {
    path: Vec<String>,
    decay: Vec<ParamId>,
    no_decay: Vec<ParamId>,
    table: Vec<(String, bool)>,
}

impl ModuleVisitor for Groups {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let path = self.path.join(".");
        let no_decay = D == 1
            || ["token_embedding", "positional_embedding", "relative_position_bias_table"]
                .iter()
                .any(|k| path.contains(k));
        if no_decay {
            self.no_decay.push(param.id);
        } else {
            self.decay.push(param.id);
        }
        self.table.push((path, !no_decay));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> OptimizerConfig {
        OptimizerConfig {
            lr: 1e-3,
            min_lr: 1e-5,
            warmup_steps: 10,
            total_steps: 110,
            weight_decay: 0.05,
            betas: (0.9, 0.999),
            eps: 1e-8,
            clip_grad_norm: None,
        }
    }

    #[test]
    fn warmup_then_cosine() {
        let c = cfg();
        assert!((c.lr_at(0) - 1e-4).abs() < 1e-12);
        assert!((c.lr_at(9) - 1e-3).abs() < 1e-12);
        assert!((c.lr_at(10) - 1e-3).abs() < 1e-12);
        assert!((c.lr_at(60) - (1e-5 + 0.5 * (1e-3 - 1e-5))).abs() < 1e-12);
        assert!((c.lr_at(110) - 1e-5).abs() < 1e-12);
        assert!((c.lr_at(500) - 1e-5).abs() < 1e-12);
        assert!((1..110).all(|s| c.lr_at(s) <= c.lr_at(s.saturating_sub(1)) || s < 10));
    }

    #[test]
    fn bad_settings_are_errors() {
        for f in [
            |c: &mut OptimizerConfig| c.lr = 0.0,
            |c: &mut OptimizerConfig| c.min_lr = 1.0,
            |c: &mut OptimizerConfig| c.warmup_steps = 1000,
            |c: &mut OptimizerConfig| c.betas.0 = 1.0,
        ] {
            let mut c = cfg();
            f(&mut c);
            assert!(c.validate().is_err());
        }
    }
}
