//! The rank-specific layout step of a Swin block: pad to window multiples, cyclically shift,
//! partition into windows, and undo all three after attention. The attention itself (the shared
//! core, [`super::attention::WindowAttention::forward`]) sees only `[B * nW, N, C]` windows, so
//! 2D Swin and 3D Video Swin blocks share it, fused kernel included.
//!
//! The references differ in two choices, both settings here:
//! - the order of padding and shifting: timm's dynamic path rolls the unpadded map and then
//!   pads (`SwinTransformerBlock._attn`); torchvision (`shifted_window_attention`,
//!   `shifted_window_attention_3d`), Video Swin and the Swin detection backbones pad first and
//!   roll the padded map ([`PadOrder`]);
//! - when the window and shift are decided: timm fixes them at construction from the image size
//!   the weights were built for, and only the mask follows the input; torchvision's
//!   `ShiftedWindowAttention3d` and Video Swin clamp them per forward from the actual size, which
//!   a detection input (800x1333) needs too ([`WindowMode`]). A window smaller than the bias
//!   table's takes its rows as [`IndexSlice`] says.

use burn::prelude::*;
use burn::tensor::ops::PadMode;
use serde::{Deserialize, Serialize};

use super::geometry::{clamp_window_and_shift, pad_to_multiple};

/// Whether the cyclic shift comes before or after the padding to window multiples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PadOrder {
    /// Roll the map, then pad its end (timm; the UniCL checkpoints' reference).
    #[default]
    RollThenPad,
    /// Pad the end, then roll the padded map (torchvision, Video Swin, Swin detection backbones).
    PadThenRoll,
}

/// When a block decides its window and shift.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowMode {
    /// At construction, from the config's image size (timm's `dynamic_mask` path): other input
    /// sizes are padded to the same windows.
    #[default]
    Fixed,
    /// At every forward, from the actual feature-map size: along an axis no larger than its
    /// window the window shrinks to the map and the shift is 0 (torchvision
    /// `_get_window_and_shift_size`, Video Swin `get_window_size`).
    Runtime,
}

/// The relative-position-bias rows of a window smaller than the one the table was built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IndexSlice {
    /// The rows of the smaller window's own token offsets (the relative positions are kept).
    #[default]
    Geometric,
    /// The top-left `[N, N]` block of the full window's index, `index[:N, :N]`, as torchvision's
    /// `_get_relative_position_bias` and Video Swin take it (equal to `Geometric` only when just
    /// the outermost axes are clamped).
    TopLeft,
}

/// The layout settings of a block (not weights).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BlockLayout {
    /// Padding and shift order.
    #[serde(default)]
    pub order: PadOrder,
    /// When the window and shift are decided.
    #[serde(default)]
    pub mode: WindowMode,
    /// Bias rows of a clamped window.
    #[serde(default)]
    pub index_slice: IndexSlice,
}

impl BlockLayout {
    /// Video Swin / torchvision `swin3d`: pad then roll, clamp per forward, `index[:N, :N]`.
    pub fn video_swin() -> Self {
        Self { order: PadOrder::PadThenRoll, mode: WindowMode::Runtime, index_slice: IndexSlice::TopLeft }
    }

    /// The window and shift a block uses on a map of `size` (spatial axes). `window` is the
    /// block's table window and `fixed` its shift at the config's image size (both already
    /// clamped there); `nominal` is its unclamped shift (`window / 2` or 0).
    pub fn decide(
        self,
        size: &[usize],
        window: &[usize],
        fixed: &[usize],
        nominal: &[usize],
    ) -> (Vec<usize>, Vec<usize>) {
        match self.mode {
            WindowMode::Fixed => (window.to_vec(), fixed.to_vec()),
            WindowMode::Runtime => {
                let mut w = window.to_vec();
                let mut s = nominal.to_vec();
                for i in 0..w.len().min(size.len()) {
                    let ([wi], [si]) = clamp_window_and_shift([size[i]], [window[i]], [nominal[i]]);
                    (w[i], s[i]) = (wi, si);
                }
                (w, s)
            }
        }
    }
}

/// Runs `attend` on the windows of `x: [B, spatial..., C]` (`D - 2` spatial axes) and returns
/// the map it gives back, `[B, spatial..., C]`: padding to multiples of `window` at the end of
/// each axis, the cyclic shift by `-shift` in the given `order`, `partition` into
/// `[B * nW, N, C]`, `attend`, `reverse` (given the padded spatial size), and the inverse shift
/// and crop. `attend` receives the windows and the padded spatial size (for the mask).
pub fn shifted_windows<const D: usize>(
    x: Tensor<D>,
    window: &[usize],
    shift: &[usize],
    order: PadOrder,
    partition: impl FnOnce(Tensor<D>) -> Tensor<3>,
    attend: impl FnOnce(Tensor<3>, &[usize]) -> Tensor<3>,
    reverse: impl FnOnce(Tensor<3>, &[usize]) -> Tensor<D>,
) -> Tensor<D> {
    let dims = x.dims();
    let size = &dims[1..D - 1];
    let pads: Vec<usize> = size.iter().zip(window).map(|(&n, &w)| pad_to_multiple(n, w)).collect();
    let padded: Vec<usize> = size.iter().zip(&pads).map(|(n, p)| n + p).collect();
    let axes: Vec<usize> = (1..D - 1).collect();
    let shifted = shift.iter().any(|&s| s > 0);
    let back: Vec<i64> = shift.iter().map(|&s| s as i64).collect();
    let fwd: Vec<i64> = back.iter().map(|s| -s).collect();
    let pad = |t: Tensor<D>| {
        if pads.iter().all(|&p| p == 0) {
            return t;
        }
        let mut pairs: Vec<(usize, usize)> = pads.iter().map(|&p| (0, p)).collect();
        pairs.push((0, 0));
        t.pad(pairs, PadMode::Constant(0.0))
    };
    let crop = |t: Tensor<D>| {
        if pads.iter().all(|&p| p == 0) {
            return t;
        }
        let ranges: [std::ops::Range<usize>; D] = std::array::from_fn(|i| 0..dims[i]);
        t.slice(ranges)
    };
    let roll = |t: Tensor<D>, by: &[i64]| if shifted { t.roll(by, &axes) } else { t };
    let y = match order {
        PadOrder::RollThenPad => pad(roll(x, &fwd)),
        PadOrder::PadThenRoll => roll(pad(x), &fwd),
    };
    let y = reverse(attend(partition(y), &padded), &padded);
    match order {
        PadOrder::RollThenPad => roll(crop(y), &back),
        PadOrder::PadThenRoll => crop(roll(y, &back)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_decisions_follow_the_mode() {
        let fixed = BlockLayout::default();
        // Built for a 7x7 stage: the window covers it, no shift, whatever the input.
        assert_eq!(fixed.decide(&[25, 42], &[7, 7], &[0, 0], &[3, 3]), (vec![7, 7], vec![0, 0]));
        let runtime = BlockLayout { mode: WindowMode::Runtime, ..fixed };
        assert_eq!(runtime.decide(&[25, 42], &[7, 7], &[0, 0], &[3, 3]), (vec![7, 7], vec![3, 3]));
        assert_eq!(runtime.decide(&[4, 10], &[7, 7], &[0, 0], &[3, 3]), (vec![4, 7], vec![0, 3]));
        let video = BlockLayout::video_swin();
        assert_eq!(video.decide(&[8, 14, 14], &[8, 7, 7], &[4, 3, 3], &[4, 3, 3]), (vec![8, 7, 7], vec![0, 3, 3]));
    }
}
