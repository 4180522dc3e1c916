//! Windowed multi-head attention with an additive bias, fused.
//!
//! Burn 0.22's `attention` runs unfused on CubeCL backends whenever an additive bias is present
//! and on every backend under autodiff (`burn-cubecl-0.22.1/src/ops/module.rs`,
//! `burn-autodiff-0.22.1/src/ops/module.rs`), and Swin always has a bias. This module is the
//! fused operation:
//! - [`WindowAttentionOps`]: a backend extension with CubeCL kernels (forward, and a backward
//!   that recomputes the softmax from saved log-sum-exp statistics), registered with Fusion,
//!   differentiable under Autodiff (also with gradient checkpointing);
//!   on flex, a one-pass-per-window CPU loop for the forward;
//! - [`window_attention_reference`]: the same formula in plain tensor ops;
//! - [`window_attention`]: the entry point the Swin/CoSwin blocks call, switched by
//!   [`AttentionKind`].

#[cfg(feature = "train")]
mod autodiff;
#[cfg(feature = "flex")]
mod cpu;
#[cfg(feature = "cube")]
mod cube;
#[cfg(feature = "cube")]
mod kernels;
mod ops;
mod reference;

use burn::backend::Dispatch;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

pub use ops::WindowAttentionOps;
pub use reference::window_attention_reference;

/// Which implementation window attention runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttentionKind {
    /// The backend extension: CubeCL kernels on wgpu/vulkan/metal/cuda, the reference math on
    /// the backend's primitives elsewhere, a hand-written backward under autodiff.
    #[default]
    Fused,
    /// [`window_attention_reference`]: plain tensor ops, differentiated op by op.
    Reference,
}

/// Window attention over the packed projection. Shapes:
/// - `qkv: [B * nW, N, 3C]`, the `qkv` Linear's output (q, k, v, each head-major);
/// - `bias: [nWb, heads, N, N]`, added to window `w`'s scores as `bias[w % nWb]`
///   (see [`combined_bias`]);
/// - returns `[B * nW, N, C]`, heads merged.
///
/// `scale` multiplies `q k^T` (Swin: `head_dim^-0.5`).
pub fn window_attention(qkv: Tensor<3>, bias: Tensor<4>, heads: usize, scale: f64, kind: AttentionKind) -> Tensor<3> {
    match kind {
        AttentionKind::Fused => Tensor::from_dispatch(<Dispatch as WindowAttentionOps>::window_attention(
            qkv.into_dispatch(),
            bias.into_dispatch(),
            heads,
            scale,
        )),
        AttentionKind::Reference => window_attention_reference(qkv, bias, heads, scale),
    }
}

/// The additive bias of a block: `bias: [heads, N, N]` (relative position bias) and, for shifted
/// windows, `mask: [nW, N, N]` (0 or -100, Swin's `attn_mask`) -> `[1, heads, N, N]` or
/// `[nW, heads, N, N]`. Both are independent of the batch, so this is small.
pub fn combined_bias(bias: Tensor<3>, mask: Option<Tensor<3>>) -> Tensor<4> {
    let bias = bias.unsqueeze_dim::<4>(0);
    match mask {
        Some(mask) => bias + mask.unsqueeze_dim::<4>(1),
        None => bias,
    }
}
