//! UniCL's `ResidualAttentionBlock` (pre-LN; `model/text_encoder/transformer.py`):
//! `x + attn(ln_1(x))`, then `x + c_proj(QuickGELU(c_fc(ln_2(x))))`.

use burn::nn::{LayerNorm, Linear, LinearConfig};

use crate::layers::layer_norm;
use burn::prelude::*;

use super::config::DropPathUnit;
use crate::layers::drop_path::{DropPathNoise, drop_path_along};
pub use crate::layers::mlp::quick_gelu;
use crate::layers::{Activation, MultiHeadAttention};
use crate::linear;

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
        linear::forward(&self.c_proj, Activation::QuickGelu.forward(linear::forward(&self.c_fc, x)))
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
    /// Stochastic-depth rate of both residual branches (UniCL's `self.drop_path`, one module
    /// applied to both); active only in a forward given a [`DropPathNoise`].
    #[module(skip)]
    pub drop_path: f64,
    /// This block's draw site ([`crate::layers::drop_path::site::block`]).
    #[module(skip)]
    pub site: u64,
    /// What one draw covers (UniCL: a token position).
    #[module(skip)]
    pub drop_path_per: DropPathUnit,
}

impl ResidualAttentionBlock {
    /// Builds a block.
    pub fn new(width: usize, heads: usize, eps: f64, device: &Device) -> Self {
        Self {
            attn: MultiHeadAttention::new(width, heads, true, device),
            ln_1: layer_norm(width, eps, device),
            mlp: TextMlp {
                c_fc: LinearConfig::new(width, 4 * width).init(device),
                c_proj: LinearConfig::new(4 * width, width).init(device),
            },
            ln_2: layer_norm(width, eps, device),
            drop_path: 0.0,
            site: 0,
            drop_path_per: DropPathUnit::default(),
        }
    }

    /// `x: [B, L, W] -> [B, L, W]`; `mask: [L, L]` additive (the causal mask).
    pub fn forward(&self, x: Tensor<3>, mask: Option<Tensor<2>>) -> Tensor<3> {
        self.forward_with_noise(x, mask, None)
    }

    /// [`Self::forward`] in training, with stochastic depth drawn from `noise` (`B` rows).
    pub fn forward_with_noise(
        &self,
        x: Tensor<3>,
        mask: Option<Tensor<2>>,
        noise: Option<&DropPathNoise>,
    ) -> Tensor<3> {
        let axis = match self.drop_path_per {
            DropPathUnit::Position => 1,
            DropPathUnit::Sample => 0,
        };
        let attn = self.attn.forward(self.ln_1.forward(x.clone()), mask.map(|m| m.unsqueeze::<4>()));
        let x = x + drop_path_along(attn, axis, self.drop_path, noise, self.site);
        let mlp = self.mlp.forward(self.ln_2.forward(x.clone()));
        x + drop_path_along(mlp, axis, self.drop_path, noise, self.site + 1)
    }
}
