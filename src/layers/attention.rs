//! Multi-head attention with separate query and key/value inputs, as `torch.nn.MultiheadAttention`
//! computes it (`softmax(q k^T / sqrt(d) + mask) v`, heads concatenated, then `out_proj`): self-
//! attention when the key/value input is the query, cross-attention otherwise (METER's
//! co-attention layers attend from one modality to the other).
//!
//! The input projection is stored either packed, as `nn.MultiheadAttention` does when the key and
//! value width equal the model width (`in_proj_weight [3E, E]`, rows q | k | v; florence's field
//! `in_proj`), or as three projections (`q_proj`, `k_proj`, `v_proj`: `nn.MultiheadAttention` with
//! other `kdim`/`vdim`, and BERT-style `query`/`key`/`value` layers).

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::DType;
use burn::tensor::activation::softmax;

use crate::linear;
use crate::ops::{merge_heads, split_qkv};

/// Multi-head attention. Field names follow `nn.MultiheadAttention`'s keys (the loader maps the
/// packed `in_proj_weight`/`in_proj_bias` to `in_proj.{weight,bias}`).
#[derive(Module, Debug)]
pub struct MultiHeadAttention {
    /// Packed q|k|v projection `Linear(E, 3E)`, when keys and values have the model width.
    pub in_proj: Option<Linear>,
    /// Query projection `Linear(E, E)` (when not packed).
    pub q_proj: Option<Linear>,
    /// Key projection `Linear(kdim, E)` (when not packed).
    pub k_proj: Option<Linear>,
    /// Value projection `Linear(vdim, E)` (when not packed).
    pub v_proj: Option<Linear>,
    /// Output projection `Linear(E, E)`.
    pub out_proj: Linear,
    /// Number of heads; `E` is a multiple of it.
    pub num_heads: usize,
}

impl MultiHeadAttention {
    /// Packed projections of width `dim` (self-attention, or cross-attention between inputs of
    /// the same width).
    pub fn new(dim: usize, heads: usize, bias: bool, device: &Device) -> Self {
        Self {
            in_proj: Some(LinearConfig::new(dim, 3 * dim).with_bias(bias).init(device)),
            q_proj: None,
            k_proj: None,
            v_proj: None,
            out_proj: LinearConfig::new(dim, dim).with_bias(bias).init(device),
            num_heads: heads,
        }
    }

    /// Separate projections: queries of width `dim`, keys of width `kdim`, values of `vdim`.
    pub fn separate(dim: usize, kdim: usize, vdim: usize, heads: usize, bias: bool, device: &Device) -> Self {
        let lin = |i: usize, o: usize| Some(LinearConfig::new(i, o).with_bias(bias).init(device));
        Self {
            in_proj: None,
            q_proj: lin(dim, dim),
            k_proj: lin(kdim, dim),
            v_proj: lin(vdim, dim),
            out_proj: LinearConfig::new(dim, dim).with_bias(bias).init(device),
            num_heads: heads,
        }
    }

    /// Self-attention: `x: [B, L, E]`, `mask` additive and broadcastable to `[B, heads, L, L]`
    /// (e.g. [`causal_mask`] `[1, 1, L, L]`) -> `[B, L, E]`.
    pub fn forward(&self, x: Tensor<3>, mask: Option<Tensor<4>>) -> Tensor<3> {
        if let Some(in_proj) = &self.in_proj
            && Self::fused_cpu(&x, mask.as_ref())
        {
            return self.forward_fused(in_proj, x, mask);
        }
        let (q, k, v) = self.project(x.clone(), x, true);
        linear::forward(&self.out_proj, merge_heads(Self::attend(q, k, v, mask).0))
    }

    /// Cross-attention: `query: [B, Lq, E]`, `key_value: [B, Lk, kdim]`, `mask` additive and
    /// broadcastable to `[B, heads, Lq, Lk]` (e.g. [`key_padding_mask`] `[B, 1, Lq, Lk]`) ->
    /// `[B, Lq, E]`.
    pub fn forward_cross(&self, query: Tensor<3>, key_value: Tensor<3>, mask: Option<Tensor<4>>) -> Tensor<3> {
        self.forward_cross_with_weights(query, key_value, mask).0
    }

    /// [`Self::forward_cross`] and the attention probabilities averaged over heads, `[B, Lq, Lk]`
    /// (`nn.MultiheadAttention`'s `need_weights=True, average_attn_weights=True`).
    pub fn forward_cross_with_weights(
        &self,
        query: Tensor<3>,
        key_value: Tensor<3>,
        mask: Option<Tensor<4>>,
    ) -> (Tensor<3>, Tensor<3>) {
        let (q, k, v) = self.project(query, key_value, false);
        let (out, probs) = Self::attend(q, k, v, mask);
        (linear::forward(&self.out_proj, merge_heads(out)), probs.mean_dim(1).squeeze_dim::<3>(1))
    }

    /// `[B, heads, L, d]` queries, keys and values. `same` marks self-attention, where the
    /// packed projection is one matrix product.
    fn project(&self, query: Tensor<3>, key_value: Tensor<3>, same: bool) -> (Tensor<4>, Tensor<4>, Tensor<4>) {
        let h = self.num_heads;
        if let Some(in_proj) = &self.in_proj {
            if same {
                let [q, k, v] = split_qkv(linear::forward(in_proj, query), h);
                return (q, k, v);
            }
            let e = self.out_proj.weight.dims()[0];
            let part = |x: Tensor<3>, range: std::ops::Range<usize>| {
                let w = in_proj.weight.val().slice_dim(1, range.clone());
                let y = x.matmul(w.unsqueeze_dim::<3>(0));
                match &in_proj.bias {
                    Some(b) => y + b.val().slice_dim(0, range).unsqueeze_dim::<2>(0).unsqueeze_dim::<3>(0),
                    None => y,
                }
            };
            let q = part(query, 0..e);
            let k = part(key_value.clone(), e..2 * e);
            let v = part(key_value, 2 * e..3 * e);
            return (heads(q, h), heads(k, h), heads(v, h));
        }
        // `new` and `separate` build one of the two layouts; a module with neither cannot be
        // constructed through them.
        let lin = |l: &Option<Linear>, x: Tensor<3>| match l {
            Some(l) => linear::forward(l, x),
            None => x,
        };
        let q = lin(&self.q_proj, query);
        let k = lin(&self.k_proj, key_value.clone());
        let v = lin(&self.v_proj, key_value);
        (heads(q, h), heads(k, h), heads(v, h))
    }

    /// Whether self-attention runs as one fused CPU pass: f32 on flex with florence's loops
    /// chosen ([`crate::kernels`]). CubeCL backends keep the tensor ops, which their fusion
    /// compiler already fuses and which Burn's own attention covers.
    fn fused_cpu(x: &Tensor<3>, mask: Option<&Tensor<4>>) -> bool {
        crate::kernels::loops_chosen() && crate::kernels::on_flex_f32(x) && mask.is_none_or(|m| m.dtype() == DType::F32)
    }

    /// Self-attention through the window-attention operation (`src/attention/cpu.rs` on flex,
    /// with its autodiff backward): the packed projection as it comes out of `in_proj`, the mask
    /// as the additive bias `[1 or B, heads, L, L]`, one "window" per sequence. Same formula as
    /// [`Self::attend`] (q scaled by `head_dim^-0.5` first), summed in another order.
    fn forward_fused(&self, in_proj: &Linear, x: Tensor<3>, mask: Option<Tensor<4>>) -> Tensor<3> {
        let [b, l, e] = x.dims();
        let h = self.num_heads;
        let device = x.device();
        let qkv = linear::forward(in_proj, x);
        let bias = match mask {
            Some(m) => {
                let rows = if m.dims()[0] == 1 { 1 } else { b };
                m.expand([rows, h, l, l])
            }
            None => Tensor::zeros([1, h, l, l], &device),
        };
        let scale = ((e / h) as f64).powf(-0.5);
        let out = crate::attention::window_attention(qkv, bias, h, scale, crate::attention::AttentionKind::Fused);
        linear::forward(&self.out_proj, out)
    }

    /// `softmax(q / sqrt(d) k^T + mask) v` per head, and the probabilities `[B, heads, Lq, Lk]`.
    fn attend(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, mask: Option<Tensor<4>>) -> (Tensor<4>, Tensor<4>) {
        let hd = q.dims()[3];
        // PyTorch's MHA scales q by head_dim^-0.5 before the product.
        let mut scores = q.mul_scalar((hd as f64).powf(-0.5)).matmul(k.swap_dims(2, 3));
        if let Some(mask) = mask {
            scores = scores + mask;
        }
        let probs = softmax(scores, 3);
        (probs.clone().matmul(v), probs)
    }
}

/// `[B, L, heads * d] -> [B, heads, L, d]`.
fn heads(x: Tensor<3>, heads: usize) -> Tensor<4> {
    let [b, l, e] = x.dims();
    x.reshape([b, l, heads, e / heads]).swap_dims(1, 2)
}

/// The additive value of a masked position: the most negative finite value of `dtype` (as
/// Hugging Face's `finfo(dtype).min`), so a row whose keys are all masked gives uniform weights
/// rather than NaN, while any unmasked key takes all the weight.
pub fn mask_value(dtype: DType) -> f32 {
    match dtype {
        DType::F16 => -65504.0,
        DType::BF16 => -3.389_531_4e38,
        _ => f32::MIN,
    }
}

/// Additive key-padding mask `[B, 1, Lq, Lk]` from `padded: [B, Lk]` (true where the key is
/// padding, as `key_padding_mask` of `nn.MultiheadAttention`), in `dtype`.
pub fn key_padding_mask(padded: Tensor<2, Bool>, lq: usize, dtype: DType) -> Tensor<4> {
    let [b, lk] = padded.dims();
    let zeros = Tensor::<2>::zeros([b, lk], (&padded.device(), dtype));
    zeros.mask_fill(padded, mask_value(dtype)).reshape([b, 1, 1, lk]).expand([b, 1, lq, lk])
}

/// Additive causal mask `[1, 1, L, L]`: position `i` attends to `j <= i`.
pub fn causal_mask(l: usize, device: &Device, dtype: DType) -> Tensor<4> {
    let value = mask_value(dtype);
    let data: Vec<f32> = (0..l * l).map(|p| if p % l > p / l { value } else { 0.0 }).collect();
    Tensor::from_data(TensorData::new(data, [1, 1, l, l]), (device, dtype))
}
