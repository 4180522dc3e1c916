//! GELU and QuickGELU, fast on the CPU.
//!
//! Burn's flex computes GELU with a scalar, single-threaded `libm::erff` loop and QuickGELU as
//! three passes (`mul_scalar`, `sigmoid`, `mul`) over the MLP's hidden activation, the largest
//! tensor of every transformer block. This module is the same math as one vectorised,
//! multi-threaded pass ([`math`]), forward and backward:
//! - [`gelu`], [`quick_gelu`]: the entry points the MLPs call;
//! - on flex with f32 tensors and a CPU with AVX2+FMA (or AVX-512, or aarch64), a backend
//!   extension (`ActivationKernelOps`) runs [`math`]'s loops, with its own autodiff node;
//! - everywhere else (CubeCL backends, whose fusion compiler already fuses Burn's `gelu` with
//!   its neighbours; LibTorch; other dtypes), Burn's own operations, unchanged.
//!
//! The loops live in this crate, so they are only as fast as this crate's optimisation level:
//! in a debug build [`Kernels::Auto`] keeps Burn's kernels, and [`set_kernels`] overrides the
//! choice (see [`crate::kernels`]).
//!
//! Accuracy: within [`math::GELU_ULP`] ULP of the libm-evaluated formula (or [`math::GELU_ABS`]
//! absolute where the formula cancels), forward and backward; see [`math`].

#[cfg(feature = "train")]
mod autodiff;
pub mod math;
mod ops;

use burn::backend::Dispatch;
use burn::prelude::*;
use burn::tensor::activation;

use ops::ActivationKernelOps;

pub use crate::kernels::{Kernels, kernels, set_kernels};

/// Whether `x` takes the fast path: an f32 tensor on flex (with or without autodiff), on a CPU
/// that runs the vectorised loops, with the fast kernels chosen.
fn fast_path<const D: usize>(x: &Tensor<D>) -> bool {
    crate::kernels::loops_chosen() && crate::kernels::on_flex_f32(x)
}

/// Exact GELU, `x/2 (1 + erf(x / sqrt 2))` (`nn.GELU()`), any shape.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if fast_path(&x) {
        Tensor::from_dispatch(<Dispatch as ActivationKernelOps>::fast_gelu(x.into_dispatch()))
    } else {
        activation::gelu(x)
    }
}

/// CLIP's QuickGELU, `x * sigmoid(1.702 x)` (UniCL's `QuickGELU`), any shape.
pub fn quick_gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if fast_path(&x) {
        Tensor::from_dispatch(<Dispatch as ActivationKernelOps>::fast_quick_gelu(x.into_dispatch()))
    } else {
        x.clone() * activation::sigmoid(x.mul_scalar(math::QUICK_GELU_K))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(t: Tensor<2>) -> Vec<f32> {
        t.into_data().iter::<f32>().collect()
    }

    fn input(device: &Device) -> Tensor<2> {
        let xs: Vec<f32> = (0..4 * 1000).map(|i| ((i as f32) * 0.0137).sin() * 7.0).collect();
        Tensor::<1>::from_floats(xs.as_slice(), device).reshape([4, 1000])
    }

    fn assert_close(got: &[f32], want: &[f32], what: &str) {
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() <= 1e-6 * w.abs().max(1.0), "{what}[{i}]: {g} vs {w}");
        }
    }

    /// The fast path gives Burn's values (the reference decomposition on flex), on contiguous,
    /// shared and transposed inputs, and leaves a shared input untouched.
    #[test]
    fn fast_activations_agree_with_burn_on_any_layout() {
        set_kernels(Kernels::Fast);
        let dev = Device::default();
        let x = input(&dev);
        let burn_gelu = values(activation::gelu(x.clone()));
        let burn_quick = values(x.clone() * activation::sigmoid(x.clone().mul_scalar(1.702)));
        let before = values(x.clone());
        assert_close(&values(gelu(x.clone())), &burn_gelu, "gelu (shared input)");
        assert_eq!(values(x.clone()), before, "a shared input was written in place");
        assert_close(&values(quick_gelu(x.clone())), &burn_quick, "quick_gelu");
        let xt = x.clone().transpose();
        let gt = values(gelu(xt).transpose());
        assert_close(&gt, &burn_gelu, "gelu (transposed)");
        // Uniquely owned: computed in place.
        assert_close(&values(gelu(input(&dev))), &burn_gelu, "gelu (in place)");
    }

    /// Under autodiff the gradients equal those of Burn's `gelu` and of the decomposed QuickGELU,
    /// also with gradient checkpointing (which recomputes the output through the retro-forward).
    #[cfg(feature = "train")]
    #[test]
    fn fast_activations_have_burn_gradients_also_under_checkpointing() {
        set_kernels(Kernels::Fast);
        for device in [Device::default().autodiff(), Device::default().autodiff().gradient_checkpointing()] {
            let w = Tensor::<2>::ones([1000, 3], &device).mul_scalar(0.01);
            let grads_of = |f: &dyn Fn(Tensor<2>) -> Tensor<2>| {
                let x = input(&device).require_grad();
                // A matmul after the activation, so that the backward needs its output's grad.
                let loss = f(x.clone().mul_scalar(1.0)).matmul(w.clone()).powi_scalar(2).sum();
                let g = loss.backward();
                values(x.grad(&g).expect("x has a gradient"))
            };
            let fast = grads_of(&|x| gelu(x));
            let burn = grads_of(&|x| activation::gelu(x));
            assert_close(&fast, &burn, "gelu grad");
            let fast = grads_of(&|x| quick_gelu(x));
            let burn = grads_of(&|x| x.clone() * activation::sigmoid(x.mul_scalar(1.702)));
            assert_close(&fast, &burn, "quick_gelu grad");
        }
    }
}
