//! Window multi-head self-attention with relative position bias (Swin §3.3).

use burn::module::Param;
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::softmax;

use super::geometry::relative_position_index;
use crate::ops::{merge_heads, split_qkv};

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
}

impl WindowAttention {
    /// Builds the module for width `dim`, `heads` heads and a `window`.
    pub fn new(dim: usize, heads: usize, window: (usize, usize), qkv_bias: bool, device: &Device) -> Self {
        let (wh, ww) = window;
        let table = Initializer::Normal { mean: 0.0, std: 0.02 }.init([(2 * wh - 1) * (2 * ww - 1), heads], device);
        let index = relative_position_index(wh, ww);
        let n = index.len();
        Self {
            qkv: LinearConfig::new(dim, 3 * dim).with_bias(qkv_bias).init(device),
            proj: LinearConfig::new(dim, dim).init(device),
            relative_position_bias_table: table,
            relative_position_index: Tensor::from_data(TensorData::new(index, [n]), device),
            num_heads: heads,
            window,
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
    pub fn forward(&self, x: Tensor<3>, mask: Option<Tensor<3>>) -> Tensor<3> {
        let [bn, n, d] = x.dims();
        let (h, hd) = (self.num_heads, d / self.num_heads);
        let [q, k, v] = split_qkv(self.qkv.forward(x), h); // each [B*nW, heads, N, hd]
        // Swin scales q before the product (head_dim^-0.5).
        let q = q.mul_scalar((hd as f64).powf(-0.5));
        let mut attn = q.matmul(k.swap_dims(2, 3)) + self.relative_position_bias().unsqueeze_dim::<4>(0);
        if let Some(mask) = mask {
            let nw = mask.dims()[0];
            attn = (attn.reshape([bn / nw, nw, h, n, n]) + mask.unsqueeze_dim::<4>(1).unsqueeze_dim::<5>(0))
                .reshape([bn, h, n, n]);
        }
        self.proj.forward(merge_heads(softmax(attn, 3).matmul(v)))
    }
}
