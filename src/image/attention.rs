//! Window multi-head self-attention with relative position bias (Swin §3.3, Video Swin §3.2),
//! for windows of rank 2 or 3: the shared core of every Swin block.

use burn::module::Param;
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::prelude::*;

use super::geometry::{clamped_relative_position_index, relative_position_index, relative_table_size, window_len};
use super::layout::IndexSlice;
use crate::attention::{AttentionKind, combined_bias, window_attention};
use crate::linear;

/// Attention inside windows. Field names follow the checkpoint keys (`attn.qkv`, `attn.proj`,
/// `attn.relative_position_bias_table`).
#[derive(Module, Debug)]
pub struct WindowAttention {
    /// Packed q|k|v projection, `Linear(D, 3D)`.
    pub qkv: Linear,
    /// Output projection, `Linear(D, D)`.
    pub proj: Linear,
    /// `[prod(2 w_i - 1), heads]` learned bias table.
    pub relative_position_bias_table: Param<Tensor<2>>,
    /// Constant `[N*N]` index into the table (recomputed, never loaded; see `checkpoint`).
    pub relative_position_index: Tensor<1, Int>,
    /// Number of heads.
    pub num_heads: usize,
    /// The window the table was built for, outermost axis first (`[wh, ww]` or `[wd, wh, ww]`).
    #[module(skip)]
    pub window: Vec<usize>,
    /// Fused kernel or reference tensor ops (a runtime choice, not a weight).
    #[module(skip)]
    pub attention: AttentionKind,
}

impl WindowAttention {
    /// Builds the module for width `dim`, `heads` heads and a `window` of rank 2 or 3.
    pub fn new(dim: usize, heads: usize, window: &[usize], qkv_bias: bool, device: &Device) -> Self {
        let table = Initializer::Normal { mean: 0.0, std: 0.02 }.init([relative_table_size(window), heads], device);
        let index = index_for(window, window, IndexSlice::Geometric);
        let n = index.len();
        Self {
            qkv: LinearConfig::new(dim, 3 * dim).with_bias(qkv_bias).init(device),
            proj: LinearConfig::new(dim, dim).init(device),
            relative_position_bias_table: table,
            relative_position_index: Tensor::from_data(TensorData::new(index, [n]), device),
            num_heads: heads,
            window: window.to_vec(),
            attention: AttentionKind::default(),
        }
    }

    /// The 2D window `(wh, ww)` (the last two axes).
    pub fn window_2d(&self) -> (usize, usize) {
        let n = self.window.len();
        (self.window[n.saturating_sub(2)], self.window[n - 1])
    }

    /// Tokens per window, `prod(w_i)`.
    pub fn window_len(&self) -> usize {
        window_len(&self.window)
    }

    /// The bias added to every window's scores: `[heads, N, N]`,
    /// `bias[h, i, j] = table[index[i, j], h]`.
    pub fn relative_position_bias(&self) -> Tensor<3> {
        let n = self.window_len();
        gather_bias(&self.relative_position_bias_table, self.relative_position_index.clone(), n, self.num_heads)
    }

    /// The bias of a `used` window no larger than the table's (a clamped window), its rows taken
    /// as `slice` says: `[heads, N, N]` with `N = prod(used)`.
    pub fn relative_position_bias_for(&self, used: &[usize], slice: IndexSlice) -> Tensor<3> {
        if used == self.window.as_slice() {
            return self.relative_position_bias();
        }
        let index = index_for(&self.window, used, slice);
        let n = window_len(used);
        let device = self.relative_position_index.device();
        let index = Tensor::from_data(TensorData::new(index, [n * n]), &device);
        gather_bias(&self.relative_position_bias_table, index, n, self.num_heads)
    }

    /// `x: [B * nW, N, D]`, `mask: [nW, N, N]` (additive, for shifted windows) -> `[B * nW, N, D]`.
    ///
    /// timm's `softmax(q * head_dim^-0.5 @ k^T + bias + mask) @ v`, computed by
    /// [`window_attention`] from the packed `qkv` projection with the bias and mask summed once
    /// per block (`[1 or nW, heads, N, N]`, independent of the batch).
    pub fn forward(&self, x: Tensor<3>, mask: Option<Tensor<3>>) -> Tensor<3> {
        self.forward_with_bias(x, self.relative_position_bias(), mask)
    }

    /// [`Self::forward`] with a given `[heads, N, N]` relative position bias (a clamped window's).
    pub fn forward_with_bias(&self, x: Tensor<3>, bias: Tensor<3>, mask: Option<Tensor<3>>) -> Tensor<3> {
        let d = x.dims()[2];
        let scale = ((d / self.num_heads) as f64).powf(-0.5);
        let bias = combined_bias(bias, mask);
        linear::forward(
            &self.proj,
            window_attention(linear::forward(&self.qkv, x), bias, self.num_heads, scale, self.attention),
        )
    }
}

fn gather_bias(table: &Param<Tensor<2>>, index: Tensor<1, Int>, n: usize, heads: usize) -> Tensor<3> {
    table.val().select(0, index).reshape([n, n, heads]).permute([2, 0, 1])
}

/// The flat `[N * N]` index of a `used` window into the table of `full` (equal windows: the
/// full index). Ranks 2 and 3.
fn index_for(full: &[usize], used: &[usize], slice: IndexSlice) -> Vec<i64> {
    match (slice, full, used) {
        (IndexSlice::TopLeft, &[a, b], &[c, d]) => clamped_relative_position_index([a, b], [c, d]),
        (IndexSlice::TopLeft, &[a, b, c], &[d, e, f]) => clamped_relative_position_index([a, b, c], [d, e, f]),
        (IndexSlice::Geometric, &[a, b], &[c, d]) => rebase(&relative_position_index([c, d]), &[c, d], &[a, b]),
        (IndexSlice::Geometric, &[a, b, c], &[d, e, f]) => {
            rebase(&relative_position_index([d, e, f]), &[d, e, f], &[a, b, c])
        }
        // `BlockLayout` only builds rank-2 and rank-3 windows of equal rank.
        _ => Vec::new(),
    }
}

/// Rewrites an index over `used`'s table (digits `p_i - q_i + u_i - 1` in radices `2 u_i - 1`)
/// as the same offsets in `full`'s table (radices `2 f_i - 1`), for `used <= full` per axis.
fn rebase(index: &[i64], used: &[usize], full: &[usize]) -> Vec<i64> {
    if used == full {
        return index.to_vec();
    }
    index
        .iter()
        .map(|&v| {
            let mut v = v;
            let mut digits = vec![0i64; used.len()];
            for i in (0..used.len()).rev() {
                let r = 2 * used[i] as i64 - 1;
                digits[i] = v % r - (used[i] as i64 - 1); // the offset p_i - q_i
                v /= r;
            }
            digits.iter().zip(full).fold(0i64, |acc, (&off, &f)| acc * (2 * f as i64 - 1) + off + f as i64 - 1)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometric_sub_window_keeps_the_offsets() {
        // A 2x2 window inside a 3x3 table: offsets (-1..=1)^2 land on the 3x3 window's own rows
        // for those offsets, i.e. the sub-block of the full index for tokens of the top-left 2x2.
        let full = relative_position_index([3, 3]);
        let got = index_for(&[3, 3], &[2, 2], IndexSlice::Geometric);
        let toks = [0usize, 1, 3, 4]; // (0,0) (0,1) (1,0) (1,1) in the 3x3 window
        let full = &full;
        let want: Vec<i64> = toks.iter().flat_map(|&p| toks.iter().map(move |&q| full[p * 9 + q])).collect();
        assert_eq!(got, want);
        assert_eq!(&index_for(&[3, 3], &[3, 3], IndexSlice::TopLeft), full);
        assert_eq!(window_len([2, 3, 4]), 24);
        assert_eq!(relative_table_size(vec![2, 3]), 15);
    }
}
