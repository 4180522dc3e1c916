//! The Swin transformer block: pre-LN window attention (optionally cyclically shifted) and a
//! GELU MLP, each with a residual (Swin §3.1, timm `SwinTransformerBlock._attn`).

use burn::nn::{LayerNorm, LayerNormConfig};
use burn::prelude::*;
use burn::tensor::ops::PadMode;

use super::attention::WindowAttention;
use super::geometry::pad_to_multiple;
use super::window::{window_partition, window_reverse};
pub use crate::layers::Mlp;
use crate::layers::Activation;

/// One Swin block. `shift` is `(0, 0)` for even blocks.
#[derive(Module, Debug)]
pub struct SwinBlock {
    /// Pre-attention LayerNorm.
    pub norm1: LayerNorm,
    /// Window attention.
    pub attn: WindowAttention,
    /// Pre-MLP LayerNorm.
    pub norm2: LayerNorm,
    /// The MLP (exact GELU).
    pub mlp: Mlp,
    /// Cyclic shift (rows, cols) applied before partitioning.
    pub shift: (usize, usize),
}

impl SwinBlock {
    /// Builds a block of width `dim`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        dim: usize,
        heads: usize,
        window: (usize, usize),
        shift: (usize, usize),
        mlp_ratio: f64,
        qkv_bias: bool,
        eps: f64,
        device: &Device,
    ) -> Self {
        Self {
            norm1: LayerNormConfig::new(dim).with_epsilon(eps).init(device),
            attn: WindowAttention::new(dim, heads, window, qkv_bias, device),
            norm2: LayerNormConfig::new(dim).with_epsilon(eps).init(device),
            mlp: Mlp::new(dim, (dim as f64 * mlp_ratio) as usize, Activation::Gelu, device),
            shift,
        }
    }

    /// Whether this block shifts its windows (and so needs the shifted-window mask).
    pub fn is_shifted(&self) -> bool {
        self.shift != (0, 0)
    }

    /// `x: [B, H, W, D] -> [B, H, W, D]`. `mask` is the `[nW, N, N]` shifted-window mask for the
    /// padded map (only read when the block shifts).
    ///
    /// Order of operations follows timm (the reference for sizes that are not window multiples):
    /// roll by `-shift`, zero-pad right/bottom to a window multiple, partition, attend, reverse,
    /// crop to `H x W`, roll back.
    pub fn forward(&self, x: Tensor<4>, mask: Option<Tensor<3>>) -> Tensor<4> {
        let [b, h, w, c] = x.dims();
        let win = self.attn.window;
        let y = self.norm1.forward(x.clone());
        let (sh, sw) = (self.shift.0 as i64, self.shift.1 as i64);
        let y = if self.is_shifted() { y.roll(&[-sh, -sw], &[1, 2]) } else { y };
        let (ph, pw) = (pad_to_multiple(h, win.0), pad_to_multiple(w, win.1));
        let y = if ph + pw > 0 { y.pad([(0, ph), (0, pw), (0, 0)], PadMode::Constant(0.0)) } else { y };
        let (hp, wp) = (h + ph, w + pw);
        let windows = self.attn.forward(window_partition(y, win), if self.is_shifted() { mask } else { None });
        let y = window_reverse(windows, win, hp, wp);
        let y = if ph + pw > 0 { y.slice([0..b, 0..h, 0..w, 0..c]) } else { y };
        let y = if self.is_shifted() { y.roll(&[sh, sw], &[1, 2]) } else { y };
        let x = x + y;
        x.clone() + self.mlp.forward(self.norm2.forward(x))
    }
}
