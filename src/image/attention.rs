//! Window multi-head self-attention with relative position bias (Swin §3.3).

use burn::module::Param;
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::prelude::*;

use super::geometry::relative_position_index;
use crate::attention::{AttentionKind, combined_bias, window_attention};

/// Attention inside `wh x ww` windows. Field names follow the checkpoint keys
/// (`attn.qkv`, `attn.proj`, `attn.relative_position_bias_table`).
#[derive(Module, Debug)]
pub struct WindowAttention {
    /// Packed q|k|v projection, `Linear(D, 3D)`.
    pub qkv: Linear,
    /// Output projection, `Linear(D, D)`.
    pub proj: Linear,
    /// `[(2wh-1)(2ww-1), heads]` learned bias table.
    pub relative_position_bias_table: Param<Tensor<2>>,
    /// Constant `[N*N]` index into the table (recomputed, never loaded; see `checkpoint`).
    pub relative_position_index: Tensor<1, Int>,
    /// Number of heads.
    pub num_heads: usize,
    /// Window height and width.
    pub window: (usize, usize),
    /// Fused kernel or reference tensor ops (a runtime choice, not a weight).
    #[module(skip)]
    pub attention: AttentionKind,
}

impl WindowAttention {
    /// Builds the module for width `dim`, `heads` heads and a `window`.
    pub fn new(dim: usize, heads: usize, window: (usize, usize), qkv_bias: bool, device: &Device) -> Self {
        let (wh, ww) = window;
        let table = Initializer::Normal { mean: 0.0, std: 0.02 }.init([(2 * wh - 1) * (2 * ww - 1), heads], device);
        let index = relative_position_index([wh, ww]);
        let n = index.len();
        Self {
            qkv: LinearConfig::new(dim, 3 * dim).with_bias(qkv_bias).init(device),
            proj: LinearConfig::new(dim, dim).init(device),
            relative_position_bias_table: table,
            relative_position_index: Tensor::from_data(TensorData::new(index, [n]), device),
            num_heads: heads,
            window,
            attention: AttentionKind::default(),
        }
    }

    /// The bias added to every window's scores: `[heads, N, N]`,
    /// `bias[h, i, j] = table[index[i, j], h]`.
    pub fn relative_position_bias(&self) -> Tensor<3> {
        let n = self.window.0 * self.window.1;
        self.relative_position_bias_table
            .val()
            .select(0, self.relative_position_index.clone())
            .reshape([n, n, self.num_heads])
            .permute([2, 0, 1])
    }

    /// `x: [B * nW, N, D]`, `mask: [nW, N, N]` (additive, for shifted windows) -> `[B * nW, N, D]`.
    ///
    /// timm's `softmax(q * head_dim^-0.5 @ k^T + bias + mask) @ v`, computed by
    /// [`window_attention`] from the packed `qkv` projection with the bias and mask summed once
    /// per block (`[1 or nW, heads, N, N]`, independent of the batch).
    pub fn forward(&self, x: Tensor<3>, mask: Option<Tensor<3>>) -> Tensor<3> {
        let d = x.dims()[2];
        let scale = ((d / self.num_heads) as f64).powf(-0.5);
        let bias = combined_bias(self.relative_position_bias(), mask);
        self.proj.forward(window_attention(self.qkv.forward(x), bias, self.num_heads, scale, self.attention))
    }
}
