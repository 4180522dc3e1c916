//! The backend extension: windowed attention as one backend operation.
//!
//! `#[backend_extension]` (Burn 0.22.1, `burn-backend-extension`) generates the `Dispatch`
//! routing. Per backend:
//! - `Cube` (wgpu, vulkan, metal, cuda): the CubeCL kernels of [`super::kernels`], launched by
//!   [`super::cube`];
//! - `Fusion` (the default on every CubeCL backend): a generated lazy wrapper that registers the
//!   operation with the fusion stream and calls the `Cube` kernels when it runs; the kernels are
//!   opaque to the fuser, which fuses around them;
//! - `Flex`: [`super::cpu`] (one pass per window), forward and backward;
//! - `LibTorch`: the default bodies, the reference math on the backend's primitives
//!   ([`super::reference`]);
//! - `Autodiff`: [`super::autodiff`], whose backward calls `window_attention_backward`.

#[cfg(feature = "cube")]
use burn::backend::Shape;
#[cfg(feature = "cube")]
use burn::backend::fusion::custom::TensorSpec;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, backend_extension};

use super::reference;

/// Windowed multi-head attention (Swin §3.2) over packed `qkv`. Shapes: `qkv: [BW, N, 3C]` with
/// `C = heads * hd`, `bias: [nWb, H, N, N]` applied to window `w` as `bias[w % nWb]` (`BW` a
/// multiple of `nWb`), output `[BW, N, C]`, `lse: [BW, H, N]`.
#[backend_extension(
    Flex: cfg(feature = "flex"),
    Cube: cfg(feature = "cube"),
    Fusion: cfg(feature = "cube"),
    LibTorch: cfg(feature = "tch"),
    Autodiff: cfg(feature = "train"),
)]
pub trait WindowAttentionOps: Backend {
    /// `softmax(scale * q k^T + bias) v` per window and head: `[BW, N, C]`.
    #[fusion(dtype = qkv, shape = output_shape(qkv))]
    fn window_attention(
        qkv: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        heads: usize,
        scale: f64,
    ) -> FloatTensor<Self> {
        reference::forward::<Self>(qkv, bias, heads, scale).0
    }

    /// The forward and its per-row log-sum-exp (the statistics the backward recomputes from).
    #[fusion(meta = forward_meta)]
    fn window_attention_with_lse(
        qkv: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        heads: usize,
        scale: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        reference::forward::<Self>(qkv, bias, heads, scale)
    }

    /// Gradients `(dqkv [BW, N, 3C], dbias [nWb, H, N, N])` from the upstream `dout [BW, N, C]`.
    #[fusion(meta = backward_meta)]
    #[allow(clippy::too_many_arguments)]
    fn window_attention_backward(
        qkv: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        out: FloatTensor<Self>,
        lse: FloatTensor<Self>,
        dout: FloatTensor<Self>,
        heads: usize,
        scale: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        reference::backward::<Self>(qkv, bias, out, lse, dout, heads, scale)
    }
}

/// `[BW, N, 3C] -> [BW, N, C]`.
#[cfg(feature = "cube")]
pub(crate) fn output_shape(qkv: &Shape) -> Shape {
    Shape::new([qkv[0], qkv[1], qkv[2] / 3])
}

#[cfg(feature = "cube")]
fn forward_meta(qkv: &TensorSpec, _bias: &TensorSpec, heads: &usize, _scale: &f64) -> (TensorSpec, TensorSpec) {
    let out = TensorSpec::new(output_shape(&qkv.shape), qkv.dtype);
    let lse = TensorSpec::new(Shape::new([qkv.shape[0], *heads, qkv.shape[1]]), qkv.dtype);
    (out, lse)
}

#[cfg(feature = "cube")]
#[allow(clippy::too_many_arguments)]
fn backward_meta(
    qkv: &TensorSpec,
    bias: &TensorSpec,
    _out: &TensorSpec,
    _lse: &TensorSpec,
    _dout: &TensorSpec,
    _heads: &usize,
    _scale: &f64,
) -> (TensorSpec, TensorSpec) {
    (qkv.clone(), bias.clone())
}

/// Flex: [`super::cpu`]'s one pass per window for f32 when the in-crate loops are chosen
/// ([`crate::kernels`]), forward and backward; the reference otherwise.
#[cfg(feature = "flex")]
mod flex {
    use burn::backend::flex::FlexTensor;
    use burn::backend::{DType, Shape, TensorMetadata};

    use super::super::{cpu, reference};
    use super::WindowAttentionOps;
    use crate::kernels::flex::{contiguous, from_vec, values};

    fn fused(qkv: FlexTensor, bias: FlexTensor, heads: usize, scale: f64) -> (FlexTensor, FlexTensor) {
        type Flex = burn::backend::Flex;
        if qkv.dtype() != DType::F32 || bias.dtype() != DType::F32 || !crate::kernels::loops_chosen() {
            return reference::forward::<Flex>(qkv, bias, heads, scale);
        }
        let (bw, n, h, hd, nwb) = reference::dims(&qkv.shape(), &bias.shape(), heads);
        let (qkv, bias) = (contiguous(qkv), contiguous(bias));
        let d = cpu::Dims { bw, n, h, hd, nwb };
        let (out, lse) = cpu::forward(d, values(&qkv), values(&bias), scale as f32);
        (from_vec(out, Shape::new([bw, n, h * hd])), from_vec(lse, Shape::new([bw, h, n])))
    }

    impl WindowAttentionOps for burn::backend::Flex {
        fn window_attention(qkv: FlexTensor, bias: FlexTensor, heads: usize, scale: f64) -> FlexTensor {
            fused(qkv, bias, heads, scale).0
        }
        fn window_attention_with_lse(
            qkv: FlexTensor,
            bias: FlexTensor,
            heads: usize,
            scale: f64,
        ) -> (FlexTensor, FlexTensor) {
            fused(qkv, bias, heads, scale)
        }
        fn window_attention_backward(
            qkv: FlexTensor,
            bias: FlexTensor,
            out: FlexTensor,
            lse: FlexTensor,
            dout: FlexTensor,
            heads: usize,
            scale: f64,
        ) -> (FlexTensor, FlexTensor) {
            type Flex = burn::backend::Flex;
            let f32s = [&qkv, &bias, &out, &lse, &dout].iter().all(|t| t.dtype() == DType::F32);
            if !f32s || !crate::kernels::loops_chosen() {
                return reference::backward::<Flex>(qkv, bias, out, lse, dout, heads, scale);
            }
            let (qkv_shape, bias_shape) = (qkv.shape(), bias.shape());
            let (bw, n, h, hd, nwb) = reference::dims(&qkv_shape, &bias_shape, heads);
            let [qkv, bias, out, lse, dout] = [qkv, bias, out, lse, dout].map(contiguous);
            let d = cpu::Dims { bw, n, h, hd, nwb };
            let (dqkv, dbias) =
                cpu::backward(d, values(&qkv), values(&bias), values(&out), values(&lse), values(&dout), scale as f32);
            (from_vec(dqkv, qkv_shape), from_vec(dbias, bias_shape))
        }
    }
}

#[cfg(feature = "tch")]
impl WindowAttentionOps for burn::backend::LibTorch {}
