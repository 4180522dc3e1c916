//! Mixed precision: f32 master weights behind half-precision (f16/bf16) training, and dynamic
//! loss scaling for f16.
//!
//! Burn has no autocast. The trainer keeps the weights and AdamW's moments in f32 and runs the
//! forward and backward passes on a half-precision working copy of the weights (so the
//! activations are half too; the devices keep f32 as their default float type): each step the
//! half gradients are cast to f32 (and unscaled), AdamW updates the f32 master weights, and the
//! half working copy is cast from them. Without the f32
//! copy an update below half an ulp of its parameter is rounded away: in bf16 (8 significant
//! bits) at lr 1e-3 a parameter near 1, such as a layer-norm gain, never moves. This is the
//! scheme of PyTorch's AMP and of Micikevicius et al., "Mixed Precision Training" (2018).
//!
//! f16 also has a narrow exponent range, so small gradients underflow to 0. [`LossScaler`]
//! multiplies the loss by a scale before backpropagation and divides the gradients by it after;
//! a step whose gradients overflow is skipped and the scale halved, and the scale doubles after
//! a run of good steps (PyTorch's `GradScaler` defaults: 2^16, x2 every 2000 steps, /2 on
//! overflow). bf16 has f32's exponent range and needs no scaling.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::DType;
use serde::{Deserialize, Serialize};

/// `model` with every parameter cast to `dtype`, as a fresh leaf of the autodiff graph with the
/// same parameter id (so gradients and optimiser state keyed by id carry over). Buffers are
/// left as they are.
pub fn cast_params<M: Module>(model: M, dtype: DType) -> M {
    struct Cast(DType);
    impl ModuleMapper for Cast {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let dtype = self.0;
            param.map(|t| {
                if !t.is_autodiff() {
                    return t.cast(dtype);
                }
                // Cast off the graph and re-enter it as a leaf, with the parameter's
                // gradient-checkpointing strategy (operands of one op must share it).
                let (grad, strategy) = (t.is_require_grad(), t.gradient_checkpointing_strategy());
                let mut c = t.without_autodiff().cast(dtype).autodiff();
                if let Some(s) = strategy {
                    c = c.with_gradient_checkpointing_strategy(s);
                }
                if grad { c.require_grad() } else { c }
            })
        }
    }
    model.map(&mut Cast(dtype))
}

/// The gradients of `grads` for every parameter of `master`, cast to the master's dtype (f32)
/// and multiplied by `unscale`, and whether every value is finite (one scalar read for all).
pub fn master_gradients<M: Module>(grads: GradientsParams, master: &M, unscale: f32) -> (GradientsParams, bool) {
    struct Collect {
        from: GradientsParams,
        to: GradientsParams,
        unscale: f32,
        total: Option<Tensor<1>>,
    }
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.from.remove::<D>(param.id) {
                let g = g.cast(param.val().dtype()) * self.unscale;
                // NaN and inf propagate through |g| summed: one check for every gradient.
                let s = g.clone().abs().sum();
                self.total = Some(match self.total.take() {
                    Some(t) => t + s,
                    None => s,
                });
                self.to.register::<D>(param.id, g);
            }
        }
    }
    let mut c = Collect { from: grads, to: GradientsParams::new(), unscale, total: None };
    master.visit(&mut c);
    let finite = c.total.is_none_or(|t| t.into_scalar::<f32>().is_finite());
    (c.to, finite)
}

/// Dynamic loss scaling for f16 training (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossScaler {
    /// The factor the loss is multiplied by before backpropagation.
    pub scale: f32,
    /// Consecutive steps with finite gradients since the scale last changed.
    pub good_steps: usize,
    /// Good steps after which the scale doubles.
    pub growth_interval: usize,
}

impl Default for LossScaler {
    fn default() -> Self {
        Self { scale: 65536.0, good_steps: 0, growth_interval: 2000 }
    }
}

impl LossScaler {
    /// Records a step: `finite` is whether its gradients were finite (and so were applied).
    /// Returns `false` when the step must be skipped.
    pub fn update(&mut self, finite: bool) -> bool {
        if !finite {
            self.scale = (self.scale * 0.5).max(1.0);
            self.good_steps = 0;
            return false;
        }
        self.good_steps += 1;
        if self.good_steps >= self.growth_interval {
            // f16's largest value is 65504: no reason to scale a loss further than 2^24.
            self.scale = (self.scale * 2.0).min(16_777_216.0);
            self.good_steps = 0;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaler_backs_off_and_grows() {
        let mut s = LossScaler { growth_interval: 3, ..LossScaler::default() };
        assert!(!s.update(false));
        assert_eq!(s.scale, 32768.0);
        assert!(s.update(true) && s.update(true));
        assert_eq!(s.scale, 32768.0);
        assert!(s.update(true));
        assert_eq!((s.scale, s.good_steps), (65536.0, 0));
        let mut tiny = LossScaler { scale: 1.0, ..LossScaler::default() };
        tiny.update(false);
        assert_eq!(tiny.scale, 1.0);
    }
}
