//! `nn.MultiheadAttention` as UniCL's text blocks use it: one packed input projection
//! (`in_proj_weight [3W, W]`, rows q | k | v, and `in_proj_bias`) and `out_proj`.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::softmax;

use crate::ops::{merge_heads, split_qkv};

/// Self-attention with a packed q|k|v projection. The checkpoint's `attn.in_proj_weight` /
/// `attn.in_proj_bias` are mapped to `attn.in_proj.{weight,bias}` by the loader.
#[derive(Module, Debug)]
pub struct MultiheadSelfAttention {
    /// `Linear(W, 3W)`; output columns are q, then k, then v.
    pub in_proj: Linear,
    /// `Linear(W, W)`.
    pub out_proj: Linear,
    /// Number of heads.
    pub num_heads: usize,
}

impl MultiheadSelfAttention {
    /// Builds the module.
    pub fn new(width: usize, heads: usize, device: &Device) -> Self {
        Self {
            in_proj: LinearConfig::new(width, 3 * width).init(device),
            out_proj: LinearConfig::new(width, width).init(device),
            num_heads: heads,
        }
    }

    /// `x: [B, L, W]`, `mask: [L, L]` additive (0 or a large negative) -> `[B, L, W]`.
    pub fn forward(&self, x: Tensor<3>, mask: Option<Tensor<2>>) -> Tensor<3> {
        let [_, _, w] = x.dims();
        let hd = w / self.num_heads;
        let [q, k, v] = split_qkv(self.in_proj.forward(x), self.num_heads); // each [B, heads, L, hd]
        // PyTorch's MHA scales q by head_dim^-0.5 before the product.
        let mut scores = q.mul_scalar((hd as f64).powf(-0.5)).matmul(k.swap_dims(2, 3));
        if let Some(mask) = mask {
            scores = scores + mask.unsqueeze_dim::<3>(0).unsqueeze_dim::<4>(0);
        }
        self.out_proj.forward(merge_heads(softmax(scores, 3).matmul(v)))
    }
}
