//! Small tensor helpers shared by the two towers.

use burn::prelude::*;

use crate::error::{FlorenceError, Result};

/// `f` over `items` on up to `threads` scoped threads (0: all cores), results in item order.
/// Image decoding and preprocessing use it; a panic in `f` is propagated.
pub(crate) fn par_map<T: Sync, U: Send>(items: &[T], threads: usize, f: impl Fn(&T) -> U + Sync) -> Vec<U> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = if threads == 0 { cores } else { threads }.min(items.len()).max(1);
    if threads == 1 {
        return items.iter().map(&f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> =
            items.chunks(chunk).map(|part| scope.spawn(|| part.iter().map(&f).collect::<Vec<_>>())).collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    })
}

/// Splits the output of a packed q|k|v projection into per-head tensors.
///
/// `qkv: [B, N, 3 * heads * d]` (q, then k, then v, as PyTorch's `in_proj` and Swin's `qkv`
/// lay them out) -> `[q, k, v]`, each `[B, heads, N, d]`.
pub fn split_qkv(qkv: Tensor<3>, heads: usize) -> [Tensor<4>; 3] {
    let [b, n, three_d] = qkv.dims();
    let hd = three_d / (3 * heads);
    let qkv = qkv.reshape([b, n, 3, heads, hd]).permute([2, 0, 3, 1, 4]); // [3, B, heads, N, d]
    [0, 1, 2].map(|i| qkv.clone().slice_dim(0, i..i + 1).reshape([b, heads, n, hd]))
}

/// `[B, heads, N, d] -> [B, N, heads * d]`, the inverse head split.
pub fn merge_heads(x: Tensor<4>) -> Tensor<3> {
    let [b, h, n, d] = x.dims();
    x.swap_dims(1, 2).reshape([b, n, h * d])
}

/// Copies a float tensor to the host as `f32`, row-major.
pub fn to_vec_f32<const D: usize>(x: Tensor<D>) -> Result<Vec<f32>> {
    x.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| FlorenceError::Input(format!("cannot read a tensor back from the device: {e:?}")))
}
