//! The Swin transformer block: pre-LN window attention (optionally cyclically shifted) and an
//! MLP, each with a residual (Swin §3.1, timm `SwinTransformerBlock`; Video Swin's
//! `SwinTransformerBlock3D`). One block for 2D maps `[B, H, W, C]` and 3D maps `[B, T, H, W, C]`:
//! the layout step ([`super::layout`]) is rank-specific, the attention, MLP and norms are shared.

use burn::nn::LayerNorm;
use burn::prelude::*;

use crate::layers::layer_norm;
use burn::tensor::DType;

use super::attention::WindowAttention;
use super::geometry::{num_windows, padded_size, shifted_window_mask, window_len};
use super::layout::{BlockLayout, shifted_windows};
use super::window::{window_partition, window_partition_3d, window_reverse, window_reverse_3d};
use crate::layers::Activation;
pub use crate::layers::Mlp;
use crate::layers::drop_path::{DropPathNoise, drop_path};

/// One Swin block. `shift` is all zeros for even blocks.
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
    /// Cyclic shift per axis at the config's image size (clamped there, as `attn.window` is).
    #[module(skip)]
    pub shift: Vec<usize>,
    /// The unclamped shift (`window / 2` for odd blocks, else 0), used when the layout decides
    /// windows at run time.
    #[module(skip)]
    pub nominal_shift: Vec<usize>,
    /// Padding order, window decisions, bias rows of clamped windows.
    #[module(skip)]
    pub layout: BlockLayout,
    /// Stochastic-depth rate of both residual branches (timm's `drop_path1`, `drop_path2`);
    /// active only in a forward given a [`DropPathNoise`].
    #[module(skip)]
    pub drop_path: f64,
    /// This block's draw site ([`crate::layers::drop_path::site::block`]).
    #[module(skip)]
    pub site: u64,
}

impl SwinBlock {
    /// Builds a block of width `dim` with a `window` of rank 2 or 3 and its `shift` (both at the
    /// config's image size), `nominal_shift` the shift before clamping.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        dim: usize,
        heads: usize,
        window: &[usize],
        shift: &[usize],
        nominal_shift: &[usize],
        mlp_ratio: f64,
        qkv_bias: bool,
        eps: f64,
        device: &Device,
    ) -> Self {
        Self {
            norm1: layer_norm(dim, eps, device),
            attn: WindowAttention::new(dim, heads, window, qkv_bias, device),
            norm2: layer_norm(dim, eps, device),
            mlp: Mlp::new(dim, (dim as f64 * mlp_ratio) as usize, Activation::Gelu, device),
            shift: shift.to_vec(),
            nominal_shift: nominal_shift.to_vec(),
            layout: BlockLayout::default(),
            drop_path: 0.0,
            site: 0,
        }
    }

    /// Whether this block shifts its windows at the config's image size (and so has an
    /// `attn_mask` buffer in the checkpoints).
    pub fn is_shifted(&self) -> bool {
        self.shift.iter().any(|&s| s > 0)
    }

    /// The window and shift used on a map of spatial `size` (see [`BlockLayout::decide`]).
    pub fn decide(&self, size: &[usize]) -> (Vec<usize>, Vec<usize>) {
        self.layout.decide(size, &self.attn.window, &self.shift, &self.nominal_shift)
    }

    /// The shifted-window mask `[nW, N, N]` for a map of spatial `size` (padded to the window
    /// this block uses there), or `None` where it does not shift there.
    pub fn shift_mask(&self, size: &[usize], device: &Device, dtype: DType) -> Option<Tensor<3>> {
        let (window, shift) = self.decide(size);
        if shift.iter().all(|&s| s == 0) {
            return None;
        }
        let (nw, mask) = match (size, window.as_slice(), shift.as_slice()) {
            (&[a, b], &[c, d], &[e, f]) => {
                let padded = padded_size([a, b], [c, d]);
                (num_windows(padded, [c, d]), shifted_window_mask(padded, [c, d], [e, f]))
            }
            (&[a, b, c], &[d, e, f], &[g, h, i]) => {
                let padded = padded_size([a, b, c], [d, e, f]);
                (num_windows(padded, [d, e, f]), shifted_window_mask(padded, [d, e, f], [g, h, i]))
            }
            _ => return None,
        };
        let n = window_len(&window);
        Some(Tensor::from_data(TensorData::new(mask, [nw, n, n]), (device, dtype)))
    }

    /// `x: [B, H, W, D] -> [B, H, W, D]`. `mask` is the `[nW, N, N]` shifted-window mask for
    /// this map (a stage computes it once for its blocks; `None` builds it here when needed).
    pub fn forward(&self, x: Tensor<4>, mask: Option<Tensor<3>>) -> Tensor<4> {
        self.forward_with_noise(x, mask, None)
    }

    /// [`Self::forward`] in training, with stochastic depth drawn from `noise` (`B` rows).
    pub fn forward_with_noise(
        &self,
        x: Tensor<4>,
        mask: Option<Tensor<3>>,
        noise: Option<&DropPathNoise>,
    ) -> Tensor<4> {
        self.residual(x, |y| self.window_attention_2d(y, mask), noise)
    }

    /// `x: [B, T, H, W, D] -> [B, T, H, W, D]` (Video Swin); `mask` as in [`Self::forward`].
    pub fn forward_3d(&self, x: Tensor<5>, mask: Option<Tensor<3>>) -> Tensor<5> {
        self.forward_3d_with_noise(x, mask, None)
    }

    /// [`Self::forward_3d`] in training, with stochastic depth drawn from `noise` (`B` rows).
    pub fn forward_3d_with_noise(
        &self,
        x: Tensor<5>,
        mask: Option<Tensor<3>>,
        noise: Option<&DropPathNoise>,
    ) -> Tensor<5> {
        self.residual(x, |y| self.window_attention_3d(y, mask), noise)
    }

    /// The two pre-norm residual branches around `attention` (the rank-specific part):
    /// `x + drop_path(attention(norm1(x)))`, then `x + drop_path(mlp(norm2(x)))`.
    fn residual<const D: usize>(
        &self,
        x: Tensor<D>,
        attention: impl FnOnce(Tensor<D>) -> Tensor<D>,
        noise: Option<&DropPathNoise>,
    ) -> Tensor<D> {
        let attn = attention(self.norm1.forward(x.clone()));
        let x = x + drop_path(attn, self.drop_path, noise, self.site);
        let mlp = self.mlp.forward(self.norm2.forward(x.clone()));
        x + drop_path(mlp, self.drop_path, noise, self.site + 1)
    }

    /// The attention branch alone on a 2D map `[B, H, W, D]` (torchvision's
    /// `ShiftedWindowAttention.forward`): layout, window attention, inverse layout.
    pub fn window_attention_2d(&self, y: Tensor<4>, mask: Option<Tensor<3>>) -> Tensor<4> {
        let [_, h, w, _] = y.dims();
        let (window, shift) = self.decide(&[h, w]);
        let win = (window[0], window[1]);
        self.attend(y, &window, &shift, mask, |t| window_partition(t, win), |t, p| window_reverse(t, win, p[0], p[1]))
    }

    /// The attention branch alone on a 3D map `[B, T, H, W, D]` (torchvision's
    /// `ShiftedWindowAttention3d.forward`).
    pub fn window_attention_3d(&self, y: Tensor<5>, mask: Option<Tensor<3>>) -> Tensor<5> {
        let [_, t, h, w, _] = y.dims();
        let (window, shift) = self.decide(&[t, h, w]);
        let win = [window[0], window[1], window[2]];
        self.attend(
            y,
            &window,
            &shift,
            mask,
            |t| window_partition_3d(t, win),
            |t, p| window_reverse_3d(t, win, [p[0], p[1], p[2]]),
        )
    }

    /// The attention branch on a normalised map: layout, then the shared attention core.
    fn attend<const D: usize>(
        &self,
        y: Tensor<D>,
        window: &[usize],
        shift: &[usize],
        mask: Option<Tensor<3>>,
        partition: impl FnOnce(Tensor<D>) -> Tensor<3>,
        reverse: impl FnOnce(Tensor<3>, &[usize]) -> Tensor<D>,
    ) -> Tensor<D> {
        let bias = self.attn.relative_position_bias_for(window, self.layout.index_slice);
        let shifted = shift.iter().any(|&s| s > 0);
        let dims = y.dims();
        let size = dims[1..D - 1].to_vec();
        let (device, dtype) = (y.device(), y.dtype());
        shifted_windows(
            y,
            window,
            shift,
            self.layout.order,
            partition,
            |windows, _padded| {
                let mask = if shifted { mask.or_else(|| self.shift_mask(&size, &device, dtype)) } else { None };
                self.attn.forward_with_bias(windows, bias, mask)
            },
            reverse,
        )
    }
}
