//! UniCL's `ResidualAttentionBlock` (pre-LN; `model/text_encoder/transformer.py`):
//! `x + attn(ln_1(x))`, then `x + c_proj(QuickGELU(c_fc(ln_2(x))))`.

use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;

pub use crate::layers::mlp::quick_gelu;
use crate::layers::{Activation, MultiHeadAttention};

/// `c_proj(QuickGELU(c_fc(x)))`. Keys `mlp.c_fc.*`, `mlp.c_proj.*` (the shared
/// [`crate::layers::Mlp`] computes the same with timm's `fc1`/`fc2` names).
#[derive(Module, Debug)]
pub struct TextMlp {
    /// `Linear(W, 4W)`.
    pub c_fc: Linear,
    /// `Linear(4W, W)`.
    pub c_proj: Linear,
}

impl TextMlp {
    /// `[B, L, W] -> [B, L, W]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.c_proj.forward(Activation::QuickGelu.forward(self.c_fc.forward(x)))
    }
}

/// One residual block.
#[derive(Module, Debug)]
pub struct ResidualAttentionBlock {
    /// Self-attention (`nn.MultiheadAttention`, packed `in_proj`).
    pub attn: MultiHeadAttention,
    /// LayerNorm before attention (eps 1e-12 in UniCL).
    pub ln_1: LayerNorm,
    /// The MLP.
    pub mlp: TextMlp,
    /// LayerNorm before the MLP.
    pub ln_2: LayerNorm,
}

impl ResidualAttentionBlock {
    /// Builds a block.
    pub fn new(width: usize, heads: usize, eps: f64, device: &Device) -> Self {
        Self {
            attn: MultiHeadAttention::new(width, heads, true, device),
            ln_1: LayerNormConfig::new(width).with_epsilon(eps).init(device),
            mlp: TextMlp {
                c_fc: LinearConfig::new(width, 4 * width).init(device),
                c_proj: LinearConfig::new(4 * width, width).init(device),
            },
            ln_2: LayerNormConfig::new(width).with_epsilon(eps).init(device),
        }
    }

    /// `x: [B, L, W] -> [B, L, W]`; `mask: [L, L]` additive (the causal mask).
    pub fn forward(&self, x: Tensor<3>, mask: Option<Tensor<2>>) -> Tensor<3> {
        let x = x.clone() + self.attn.forward(self.ln_1.forward(x), mask.map(|m| m.unsqueeze::<4>()));
        x.clone() + self.mlp.forward(self.ln_2.forward(x))
    }
}
