//! The backend extension: GELU and QuickGELU, forward and backward, as single backend operations.
//!
//! `#[backend_extension]` (Burn 0.22.1, `burn-backend-extension`) generates the `Dispatch`
//! routing. Only two backends are listed, and [`super::fast_path`] sends nothing else here:
//! - `Flex`: one pass of [`super::math`] over the f32 storage (vectorised, multi-threaded), in
//!   place when the input is uniquely owned and contiguous;
//! - `Autodiff`: [`super::autodiff`], whose backward calls the `*_backward` operations.
//!
//! CubeCL backends keep Burn's `gelu` (fused with its neighbours by the fusion compiler) and
//! LibTorch its own kernels.

// The backward operations are called by the autodiff node only (feature `train`).
#![cfg_attr(not(feature = "train"), allow(dead_code))]

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, backend_extension};

/// The activations as backend operations. Shapes: `x`, `dy` and every output have one shape.
#[backend_extension(Flex: cfg(feature = "flex"), Autodiff: cfg(feature = "train"))]
pub trait ActivationKernelOps: Backend {
    /// Exact GELU, `x Φ(x)`.
    fn fast_gelu(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// `dy * GELU'(x)`.
    fn fast_gelu_backward(x: FloatTensor<Self>, dy: FloatTensor<Self>) -> FloatTensor<Self>;
    /// QuickGELU, `x sigmoid(1.702 x)`.
    fn fast_quick_gelu(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// `dy * QuickGELU'(x)`.
    fn fast_quick_gelu_backward(x: FloatTensor<Self>, dy: FloatTensor<Self>) -> FloatTensor<Self>;
}

#[cfg(feature = "flex")]
mod flex {
    use burn::backend::TensorMetadata;
    use burn::backend::flex::FlexTensor;

    use super::super::math;
    use super::ActivationKernelOps;
    use crate::kernels::flex::{assert_f32, contiguous, filled, from_vec, values, writable};

    /// `f` over an f32 tensor: in place if [`writable`], into a new contiguous tensor otherwise.
    fn unary<F: math::Unary>(mut x: FlexTensor, f: F) -> FlexTensor {
        assert_f32(&x, "the fast activations");
        if writable(&x) {
            let n = x.layout().num_elements();
            math::map_in_place(&mut x.storage_mut::<f32>()[..n], f);
            return x;
        }
        let x = contiguous(x);
        let xs = values(&x);
        from_vec(filled(xs.len(), |out| math::map(xs, out, f)), x.shape())
    }

    /// `f(x, dy)` elementwise into a new contiguous tensor.
    fn binary<F: math::Binary>(x: FlexTensor, dy: FlexTensor, f: F) -> FlexTensor {
        assert_f32(&x, "the fast activations");
        assert_f32(&dy, "the fast activations");
        assert_eq!(x.shape(), dy.shape(), "activation backward: x and dy differ in shape");
        let (x, dy) = (contiguous(x), contiguous(dy));
        let (xs, dys) = (values(&x), values(&dy));
        from_vec(filled(xs.len(), |out| math::zip_map(xs, dys, out, f)), x.shape())
    }

    impl ActivationKernelOps for burn::backend::Flex {
        fn fast_gelu(x: FlexTensor) -> FlexTensor {
            unary(x, math::Gelu)
        }
        fn fast_gelu_backward(x: FlexTensor, dy: FlexTensor) -> FlexTensor {
            binary(x, dy, math::GeluBackward)
        }
        fn fast_quick_gelu(x: FlexTensor) -> FlexTensor {
            unary(x, math::QuickGelu)
        }
        fn fast_quick_gelu_backward(x: FlexTensor, dy: FlexTensor) -> FlexTensor {
            binary(x, dy, math::QuickGeluBackward)
        }
    }
}
