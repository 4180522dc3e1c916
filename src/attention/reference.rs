//! The reference window attention, in plain tensor ops: what the fused kernels are tested
//! against, and what every backend without a kernel runs.
//!
//! Two spellings of one formula (timm `WindowAttention.forward`, `timm/models/swin_transformer.py`):
//! `softmax(scale * q k^T + bias[w % nWb]) v` per window `w` and head.
//! - [`window_attention_reference`] on `Tensor`s, differentiated by Burn's autodiff as usual;
//! - [`forward`] / [`backward`] on a backend's primitives, the default bodies of
//!   [`WindowAttentionOps`](super::WindowAttentionOps) (Flex and LibTorch run these, and the
//!   hand-written backward is checked against autodiff through the `Tensor` spelling).

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Shape, Slice, TensorMetadata};
use burn::prelude::*;
use burn::tensor::activation::softmax;

use crate::ops::{merge_heads, split_qkv};

/// `qkv: [BW, N, 3C]`, `bias: [nWb, H, N, N]` (`BW` a multiple of `nWb`) -> `[BW, N, C]`.
///
/// q is scaled before the product, as timm does.
pub fn window_attention_reference(qkv: Tensor<3>, bias: Tensor<4>, heads: usize, scale: f64) -> Tensor<3> {
    let [bw, n, _] = qkv.dims();
    let nwb = bias.dims()[0];
    let [q, k, v] = split_qkv(qkv, heads); // each [BW, H, N, hd]
    let scores = q.mul_scalar(scale).matmul(k.swap_dims(2, 3)); // [BW, H, N, N]
    let scores = (scores.reshape([bw / nwb, nwb, heads, n, n]) + bias.unsqueeze_dim::<5>(0)).reshape([bw, heads, n, n]);
    merge_heads(softmax(scores, 3).matmul(v))
}

/// The shapes of one call: `(BW, N, heads, head dim, nWb)`.
pub(crate) fn dims(qkv: &Shape, bias: &Shape, heads: usize) -> (usize, usize, usize, usize, usize) {
    (qkv[0], qkv[1], heads, qkv[2] / (3 * heads), bias[0])
}

/// `[BW, N, 3C] -> [q, k, v]`, each `[BW, H, N, hd]`.
fn split<B: Backend>(qkv: FloatTensor<B>, heads: usize) -> [FloatTensor<B>; 3] {
    let s = qkv.shape();
    let (bw, n, hd) = (s[0], s[1], s[2] / (3 * heads));
    let x = B::float_permute(B::float_reshape(qkv, Shape::new([bw, n, 3, heads, hd])), &[2, 0, 3, 1, 4]);
    [0, 1, 2].map(|i| {
        let part = B::float_slice(
            x.clone(),
            &[Slice::from(i..i + 1), Slice::from(0..bw), Slice::from(0..heads), Slice::from(0..n), Slice::from(0..hd)],
        );
        B::float_reshape(part, Shape::new([bw, heads, n, hd]))
    })
}

/// `[BW, H, N, hd] -> [BW, N, H * hd]`.
fn merge<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    let s = x.shape();
    B::float_reshape(B::float_swap_dims(x, 1, 2), Shape::new([s[0], s[2], s[1] * s[3]]))
}

/// `[BW, N, H * hd] -> [BW, H, N, hd]`.
fn heads_first<B: Backend>(x: FloatTensor<B>, heads: usize) -> FloatTensor<B> {
    let s = x.shape();
    B::float_swap_dims(B::float_reshape(x, Shape::new([s[0], s[1], heads, s[2] / heads])), 1, 2)
}

/// `x: [BW, ...]` plus `y: [nWb, ...]` broadcast over the windows of each class.
fn add_per_window<B: Backend>(x: FloatTensor<B>, y: FloatTensor<B>) -> FloatTensor<B> {
    let s = x.shape();
    let nwb = y.shape()[0];
    let mut grouped = vec![s[0] / nwb, nwb];
    grouped.extend(s.iter().skip(1));
    let mut one = vec![1, nwb];
    one.extend(s.iter().skip(1));
    let y = B::float_expand(B::float_reshape(y, Shape::from(one)), Shape::from(grouped.clone()));
    B::float_reshape(B::float_add(B::float_reshape(x, Shape::from(grouped)), y), s)
}

/// `[BW, H, N, N]` scores `scale * q k^T + bias`.
fn scores<B: Backend>(q: FloatTensor<B>, k: FloatTensor<B>, bias: FloatTensor<B>, scale: f64) -> FloatTensor<B> {
    let s = B::float_matmul(B::float_mul_scalar(q, scale.into()), B::float_swap_dims(k, 2, 3));
    add_per_window::<B>(s, bias)
}

/// Repeats `[BW, H, N]` row statistics along the key axis.
fn rows<B: Backend>(x: FloatTensor<B>, n: usize) -> FloatTensor<B> {
    let s = x.shape();
    B::float_expand(B::float_reshape(x, Shape::new([s[0], s[1], s[2], 1])), Shape::new([s[0], s[1], s[2], n]))
}

/// Forward on primitives: `(out [BW, N, C], lse [BW, H, N])`.
pub(crate) fn forward<B: Backend>(
    qkv: FloatTensor<B>,
    bias: FloatTensor<B>,
    heads: usize,
    scale: f64,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let (bw, n, h, _, _) = dims(&qkv.shape(), &bias.shape(), heads);
    let [q, k, v] = split::<B>(qkv, heads);
    let s = scores::<B>(q, k, bias, scale);
    let m = B::float_reshape(B::float_max_dim(s.clone(), 3), Shape::new([bw, h, n]));
    let e = B::float_exp(B::float_sub(s, rows::<B>(m.clone(), n)));
    let l = B::float_reshape(B::float_sum_dim(e.clone(), 3), Shape::new([bw, h, n]));
    let p = B::float_div(e, rows::<B>(l.clone(), n));
    let out = merge::<B>(B::float_matmul(p, v));
    (out, B::float_add(m, B::float_log(l)))
}

/// Backward on primitives: `(dqkv [BW, N, 3C], dbias [nWb, H, N, N])` from `dout [BW, N, C]`,
/// recomputing the probabilities from `lse` (`P = exp(S - lse)`, `dS = P * (dP - rowsum(dO * O))`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward<B: Backend>(
    qkv: FloatTensor<B>,
    bias: FloatTensor<B>,
    out: FloatTensor<B>,
    lse: FloatTensor<B>,
    dout: FloatTensor<B>,
    heads: usize,
    scale: f64,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let (bw, n, h, hd, nwb) = dims(&qkv.shape(), &bias.shape(), heads);
    let [q, k, v] = split::<B>(qkv, heads);
    let p = B::float_exp(B::float_sub(scores::<B>(q.clone(), k.clone(), bias, scale), rows::<B>(lse, n)));
    let g = heads_first::<B>(dout, heads); // [BW, H, N, hd]
    let o = heads_first::<B>(out, heads);
    let delta = B::float_reshape(B::float_sum_dim(B::float_mul(g.clone(), o), 3), Shape::new([bw, h, n]));
    let dv = B::float_matmul(B::float_swap_dims(p.clone(), 2, 3), g.clone());
    let dp = B::float_matmul(g, B::float_swap_dims(v, 2, 3));
    let ds = B::float_mul(p, B::float_sub(dp, rows::<B>(delta, n)));
    let dq = B::float_mul_scalar(B::float_matmul(ds.clone(), k), scale.into());
    let dk = B::float_mul_scalar(B::float_matmul(B::float_swap_dims(ds.clone(), 2, 3), q), scale.into());
    let grouped = B::float_reshape(ds, Shape::new([bw / nwb, nwb, h, n, n]));
    let dbias = B::float_reshape(B::float_sum_dim(grouped, 0), Shape::new([nwb, h, n, n]));
    let stacked =
        B::float_cat([dq, dk, dv].into_iter().map(|x| B::float_reshape(x, Shape::new([1, bw, h, n, hd]))).collect(), 0); // [3, BW, H, N, hd]
    let dqkv = B::float_reshape(B::float_permute(stacked, &[1, 3, 0, 2, 4]), Shape::new([bw, n, 3 * h * hd]));
    (dqkv, dbias)
}
