//! Swin patch merging (§3.5): gather each 2x2 neighbourhood as `[x0, x1, x2, x3]`
//! (x0 = (0,0), x1 = (1,0), x2 = (0,1), x3 = (1,1) in (row, col)), LayerNorm(4D), then a
//! bias-free Linear(4D, 2D). Odd sides are zero-padded by one first (timm, detection variants).

use burn::nn::{LayerNorm, Linear, LinearConfig};

use crate::layers::layer_norm;
use crate::linear;
use burn::prelude::*;
use burn::tensor::ops::PadMode;

/// Keys: `norm.{weight,bias}` (4D), `reduction.weight` (`[2D, 4D]`, no bias).
#[derive(Module, Debug)]
pub struct PatchMerging {
    /// LayerNorm(4D).
    pub norm: LayerNorm,
    /// Linear(4D, 2D), no bias.
    pub reduction: Linear,
}

impl PatchMerging {
    /// Merges a width-`dim` map into width `2 * dim`.
    pub fn new(dim: usize, eps: f64, device: &Device) -> Self {
        Self {
            norm: layer_norm(4 * dim, eps, device),
            reduction: LinearConfig::new(4 * dim, 2 * dim).with_bias(false).init(device),
        }
    }

    /// `[B, H, W, D] -> [B, ceil(H/2), ceil(W/2), 2D]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, h, w, c] = x.dims();
        let x = if h % 2 + w % 2 > 0 { x.pad([(0, h % 2), (0, w % 2), (0, 0)], PadMode::Constant(0.0)) } else { x };
        let (h2, w2) = (h.div_ceil(2), w.div_ceil(2));
        // timm: reshape(B, H/2, 2, W/2, 2, C).permute(0, 1, 3, 4, 2, 5): (col-sub, row-sub) order
        // is exactly x0, x1, x2, x3.
        let x = x.reshape([b, h2, 2, w2, 2, c]).permute([0, 1, 3, 4, 2, 5]).reshape([b, h2, w2, 4 * c]);
        linear::forward(&self.reduction, self.norm.forward(x))
    }
}
