//! The window attention as one pass per window on the CPU (flex, f32), forward and backward.
//!
//! The reference on flex ([`super::reference::forward`]) is a dozen tensor operations: the q/k/v
//! split (a permute copy), a batched matmul of `BW * H` tiny `[N, hd] x [hd, N]` products (one
//! gemm call each, whose packing outweighs the 49 x 49 x 32 work), the bias add, the softmax
//! in five passes with a scalar `exp`, a second batched matmul and the head merge (another
//! copy). Measured on Swin-T, that was ~25% of the image forward for ~3% of its flops.
//!
//! Here one task per window reads its q, k and v straight from the packed `[BW, N, 3C]`
//! projection, keeps the `[N, N]` scores of one head in a scratch buffer (20 KiB for Swin's 49
//! tokens: L1/L2-resident), and writes its heads merged into `[BW, N, C]`:
//! - `S = (scale q) k^T`, the scaled q first as timm does, with a register-blocked
//!   `R x 16` micro-kernel over `k^T` padded to a multiple of 16 columns;
//! - `S += bias[w % nWb, h]`, the row max `m`, `E = exp(S - m)` ([`math::exp`], within 1 ULP),
//!   `l = sum E`, `P = E (1 / l)`, `lse = m + ln l`;
//! - `O = P v` with the same micro-kernel over `v` padded to a multiple of 16.
//!
//! The backward ([`backward`]) recomputes P from the saved `lse` and runs its five products with
//! the same micro-kernel (see [`window_backward`]).
//!
//! Same formula as the reference, with the products summed in another order (FMA along the head
//! dimension / the keys): the differences are a few ULP of the sums, measured in
//! `tests/window_attention.rs` against the reference at the f32 bound (~2e-7 relative).
//! The text tower's self-attention uses it too (`crate::layers::attention`, one window per
//! sequence, the causal mask as the bias).

use std::ops::Range;

use rayon::prelude::*;

use crate::activation::math;

/// Columns of one micro-kernel block: one AVX-512 register, two AVX2 registers.
const LANES: usize = 16;
/// Rows of one micro-kernel block (4 rows x 2 blocks of 16 accumulators: 8 AVX-512 registers).
const ROWS: usize = 4;

/// `x` rounded up to a multiple of [`LANES`].
fn padded(x: usize) -> usize {
    x.div_ceil(LANES) * LANES
}

/// The shapes of one call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dims {
    /// Windows (all images).
    pub bw: usize,
    /// Tokens per window.
    pub n: usize,
    /// Heads.
    pub h: usize,
    /// Head dimension.
    pub hd: usize,
    /// Windows with their own bias (`bias[w % nwb]`).
    pub nwb: usize,
}

/// Per-task scratch: scaled q `[N, hd]`, `k^T` `[hd, NP]`, v `[N, HP]`, scores `[N, NP]`, the
/// output block `[N, HP]`.
struct Scratch {
    q: Vec<f32>,
    kt: Vec<f32>,
    v: Vec<f32>,
    s: Vec<f32>,
    o: Vec<f32>,
}

impl Scratch {
    fn new(d: Dims) -> Self {
        let (np, hp) = (padded(d.n), padded(d.hd));
        Self {
            q: vec![0.0; d.n * d.hd],
            kt: vec![0.0; d.hd * np],
            v: vec![0.0; d.n * hp],
            s: vec![0.0; d.n * np],
            o: vec![0.0; d.n * hp],
        }
    }
}

/// `c[r][j][0..16] = sum_k a[r * a_stride + k] * b[k * b_stride + col + 16 j ..][0..16]` for
/// `R` rows and `C` column blocks: `R * C` independent accumulators, enough to hide the FMA
/// latency at `R = 4, C = 2`.
#[inline(always)]
fn block<const R: usize, const C: usize>(
    a: &[f32],
    a_stride: usize,
    b: &[f32],
    b_stride: usize,
    col: usize,
    k: usize,
) -> [[[f32; LANES]; C]; R] {
    let mut acc = [[[0.0f32; LANES]; C]; R];
    if k == 0 {
        return acc;
    }
    // Every index below is within these bounds; checked once here rather than per FMA.
    assert!(a.len() >= (R - 1) * a_stride + k, "micro-kernel: a is too short");
    assert!(b.len() >= (k - 1) * b_stride + col + C * LANES, "micro-kernel: b is too short");
    for kk in 0..k {
        // SAFETY: kk * b_stride + col + C * LANES <= b.len() and r * a_stride + kk < a.len()
        // for kk < k and r < R (asserted above).
        let bv = unsafe { &*(b.as_ptr().add(kk * b_stride + col) as *const [[f32; LANES]; C]) };
        for (r, acc_r) in acc.iter_mut().enumerate() {
            let x = unsafe { *a.get_unchecked(r * a_stride + kk) };
            for (acc_rc, bc) in acc_r.iter_mut().zip(bv) {
                for l in 0..LANES {
                    acc_rc[l] = x.mul_add(bc[l], acc_rc[l]);
                }
            }
        }
    }
    acc
}

/// A row-major matrix operand: `values[row * stride + col]`.
#[derive(Clone, Copy)]
struct Rows<'a> {
    values: &'a [f32],
    stride: usize,
}

/// `c[i * c_stride + j] = sum_k a[i, k] * b[k, j]` for `i < m`, `k < k`, `j < b.stride` (a
/// multiple of [`LANES`]; `c_stride >= b.stride`).
#[inline(always)]
fn matmul(a: Rows, m: usize, k: usize, b: Rows, c: &mut [f32], c_stride: usize) {
    let (Rows { values: a, stride: a_stride }, Rows { values: b, stride: b_stride }) = (a, b);
    /// `R` rows from row `i` and `C` column blocks from column `col`, stored into `c`.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn tile<const R: usize, const C: usize>(
        a: &[f32],
        a_stride: usize,
        i: usize,
        k: usize,
        b: &[f32],
        b_stride: usize,
        col: usize,
        c: &mut [f32],
        c_stride: usize,
    ) {
        let acc = block::<R, C>(&a[i * a_stride..], a_stride, b, b_stride, col, k);
        for (r, acc_r) in acc.iter().enumerate() {
            for (j, v) in acc_r.iter().enumerate() {
                let at = (i + r) * c_stride + col + j * LANES;
                c[at..at + LANES].copy_from_slice(v);
            }
        }
    }
    let blocks = b_stride / LANES;
    let mut i = 0;
    while i < m {
        let full = m - i >= ROWS;
        let mut j = 0;
        while j < blocks {
            let pair = blocks - j >= 2;
            let col = j * LANES;
            match (full, pair) {
                (true, true) => tile::<ROWS, 2>(a, a_stride, i, k, b, b_stride, col, c, c_stride),
                (true, false) => tile::<ROWS, 1>(a, a_stride, i, k, b, b_stride, col, c, c_stride),
                (false, true) => tile::<1, 2>(a, a_stride, i, k, b, b_stride, col, c, c_stride),
                (false, false) => tile::<1, 1>(a, a_stride, i, k, b, b_stride, col, c, c_stride),
            }
            j += if pair { 2 } else { 1 };
        }
        i += if full { ROWS } else { 1 };
    }
}

/// `max(row)` in [`LANES`] partial maxima (a reduction LLVM vectorises; a left fold it does not).
#[inline(always)]
fn row_max(row: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for c in &mut chunks {
        for l in 0..LANES {
            lanes[l] = lanes[l].max(c[l]);
        }
    }
    let tail = chunks.remainder().iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    lanes.iter().fold(tail, |m, &x| m.max(x))
}

/// `sum(row)` in [`LANES`] partial sums.
#[inline(always)]
fn row_sum(row: &[f32]) -> f32 {
    let mut lanes = [0.0f32; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for c in &mut chunks {
        for l in 0..LANES {
            lanes[l] += c[l];
        }
    }
    lanes.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

/// `dst[i * dst_stride + j] = scale * src[i][cols.start + j]` for every row `i` of `src` and
/// `j < cols.len()`: one head's q/k/v/dO columns into a scratch block, or a product's block
/// back into its head's columns (`dst` then starts at that head's first column).
#[inline(always)]
fn gather(src: Rows, cols: Range<usize>, scale: f32, dst: &mut [f32], dst_stride: usize) {
    for (i, row) in src.values.chunks_exact(src.stride).enumerate() {
        for (d, &x) in dst[i * dst_stride..][..cols.len()].iter_mut().zip(&row[cols.clone()]) {
            *d = x * scale;
        }
    }
}

/// `dst[j * dst_stride + i] = row[j]`: `row` stored as column `i` of `dst`.
#[inline(always)]
fn store_column(row: &[f32], i: usize, dst: &mut [f32], dst_stride: usize) {
    for (d, &x) in dst[i..].iter_mut().step_by(dst_stride).zip(row) {
        *d = x;
    }
}

/// `dst[j * dst_stride + i] = src[i][cols.start + j]`: one head's k or v columns, transposed
/// into `[hd, NP]`.
#[inline(always)]
fn gather_transposed(src: Rows, cols: Range<usize>, dst: &mut [f32], dst_stride: usize) {
    for (i, row) in src.values.chunks_exact(src.stride).enumerate() {
        store_column(&row[cols.clone()], i, dst, dst_stride);
    }
}

/// The inputs of one window: its rows `qkv: [N, 3C]`, its bias `[H, N, N]`, the q scale.
#[derive(Clone, Copy)]
struct Window<'a> {
    qkv: &'a [f32],
    bias: &'a [f32],
    scale: f32,
}

/// One window: every head, into `out: [N, C]` and `lse: [H, N]`.
#[inline(always)]
fn window(d: Dims, x: Window, out: &mut [f32], lse: &mut [f32], t: &mut Scratch) {
    let Window { qkv, bias, scale } = x;
    let (n, hd) = (d.n, d.hd);
    let c = d.h * hd;
    let (np, hp) = (padded(n), padded(hd));
    for h in 0..d.h {
        // Gather this head's q (scaled), k^T and v; the padding columns stay zero.
        let rows = Rows { values: qkv, stride: 3 * c };
        gather(rows, h * hd..(h + 1) * hd, scale, &mut t.q, hd);
        gather_transposed(rows, c + h * hd..c + (h + 1) * hd, &mut t.kt, np);
        gather(rows, 2 * c + h * hd..2 * c + (h + 1) * hd, 1.0, &mut t.v, hp);
        matmul(Rows { values: &t.q, stride: hd }, n, hd, Rows { values: &t.kt, stride: np }, &mut t.s, np);
        let bias_h = &bias[h * n * n..(h + 1) * n * n];
        for i in 0..n {
            let row = &mut t.s[i * np..i * np + n];
            for (s, &b) in row.iter_mut().zip(&bias_h[i * n..(i + 1) * n]) {
                *s += b;
            }
            let m = row_max(row);
            for s in row.iter_mut() {
                *s = math::exp(*s - m);
            }
            let l = row_sum(row);
            let inv = 1.0 / l;
            for s in row.iter_mut() {
                *s *= inv;
            }
            lse[h * n + i] = m + l.ln();
        }
        // Only the first N columns of P enter (k = n); its padding columns are left over.
        matmul(Rows { values: &t.s, stride: np }, n, n, Rows { values: &t.v, stride: hp }, &mut t.o, hp);
        gather(Rows { values: &t.o, stride: hp }, 0..hd, 1.0, &mut out[h * hd..], c);
    }
}

// [`window`] compiled for AVX-512, AVX2+FMA or the baseline (the caller checks
// [`math::vectorised`]).
math::dispatched!(window_dispatched, <>, (d: Dims, x: Window, out: &mut [f32], lse: &mut [f32], t: &mut Scratch), window(d, x, out, lse, t));

/// The forward: `qkv: [BW, N, 3C]` and `bias: [nWb, H, N, N]`, both row-major, ->
/// `(out [BW, N, C], lse [BW, H, N])`, one parallel task per window.
pub(crate) fn forward(d: Dims, qkv: &[f32], bias: &[f32], scale: f32) -> (Vec<f32>, Vec<f32>) {
    let c = d.h * d.hd;
    assert_eq!(qkv.len(), d.bw * d.n * 3 * c, "window attention: qkv is not [BW, N, 3C]");
    assert_eq!(bias.len(), d.nwb * d.h * d.n * d.n, "window attention: bias is not [nWb, H, N, N]");
    assert!(d.nwb > 0 && d.bw.is_multiple_of(d.nwb), "window attention: {} windows for {} biases", d.bw, d.nwb);
    let mut out = vec![0.0f32; d.bw * d.n * c];
    let mut lse = vec![0.0f32; d.bw * d.h * d.n];
    if d.bw == 0 || d.n == 0 || c == 0 {
        return (out, lse);
    }
    out.par_chunks_mut(d.n * c).zip(lse.par_chunks_mut(d.h * d.n)).enumerate().for_each_init(
        || Scratch::new(d),
        |t, (w, (out_w, lse_w))| {
            let per_window = d.h * d.n * d.n;
            let x = Window {
                qkv: &qkv[w * d.n * 3 * c..(w + 1) * d.n * 3 * c],
                bias: &bias[(w % d.nwb) * per_window..(w % d.nwb + 1) * per_window],
                scale,
            };
            window_dispatched(d, x, out_w, lse_w, t)
        },
    );
    (out, lse)
}

/// Per-task scratch of the backward, every buffer `[N, NP]` or `[N, HP]` / `[hd, NP]`.
struct BackwardScratch {
    /// Scaled q `[N, HP]`, k `[N, HP]`, `dO` `[N, HP]`.
    q: Vec<f32>,
    k: Vec<f32>,
    dout: Vec<f32>,
    /// `k^T`, `v^T`: `[hd, NP]`.
    kt: Vec<f32>,
    vt: Vec<f32>,
    /// P (then dS), `P^T`, `dP`, `dS^T`: `[N, NP]`.
    p: Vec<f32>,
    pt: Vec<f32>,
    dp: Vec<f32>,
    st: Vec<f32>,
    /// One `[N, HP]` product.
    o: Vec<f32>,
}

impl BackwardScratch {
    fn new(d: Dims) -> Self {
        let (np, hp) = (padded(d.n), padded(d.hd));
        let nhp = || vec![0.0f32; d.n * hp];
        let nnp = || vec![0.0f32; d.n * np];
        Self {
            q: nhp(),
            k: nhp(),
            dout: nhp(),
            kt: vec![0.0; d.hd * np],
            vt: vec![0.0; d.hd * np],
            p: nnp(),
            pt: nnp(),
            dp: nnp(),
            st: nnp(),
            o: nhp(),
        }
    }
}

/// The inputs of one window's backward: its rows of `qkv: [N, 3C]`, `out` and `dout: [N, C]`,
/// `lse: [H, N]`, its bias `[H, N, N]`, the q scale.
#[derive(Clone, Copy)]
struct WindowGrad<'a> {
    qkv: &'a [f32],
    out: &'a [f32],
    dout: &'a [f32],
    lse: &'a [f32],
    bias: &'a [f32],
    scale: f32,
}

/// One window's backward: every head, into `dqkv: [N, 3C]`, adding `dS` into `dbias: [H, N, N]`.
///
/// With `P = exp(S - lse)` recomputed, `delta_i = sum_d dO_id O_id`:
/// `dV = P^T dO`, `dP = dO V^T`, `dS = P (dP - delta)`, `dq = scale dS k`, `dk = dS^T (scale q)`
/// (FlashAttention-2's backward, Dao 2023, Algorithm 2, on one block).
#[inline(always)]
fn window_backward(d: Dims, x: WindowGrad, dqkv: &mut [f32], dbias: &mut [f32], t: &mut BackwardScratch) {
    let (n, hd) = (d.n, d.hd);
    let c = d.h * hd;
    let (np, hp) = (padded(n), padded(hd));
    for h in 0..d.h {
        let (rows, head) = (Rows { values: x.qkv, stride: 3 * c }, h * hd..(h + 1) * hd);
        let shifted = |by: usize| head.start + by..head.end + by;
        gather(rows, head.clone(), x.scale, &mut t.q, hp);
        gather(rows, shifted(c), 1.0, &mut t.k, hp);
        gather(Rows { values: x.dout, stride: c }, head.clone(), 1.0, &mut t.dout, hp);
        gather_transposed(rows, shifted(c), &mut t.kt, np);
        gather_transposed(rows, shifted(2 * c), &mut t.vt, np);
        // P = exp(S + bias - lse), and dP = dO V^T.
        matmul(Rows { values: &t.q, stride: hp }, n, hd, Rows { values: &t.kt, stride: np }, &mut t.p, np);
        matmul(Rows { values: &t.dout, stride: hp }, n, hd, Rows { values: &t.vt, stride: np }, &mut t.dp, np);
        let bias_h = &x.bias[h * n * n..(h + 1) * n * n];
        let dbias_h = &mut dbias[h * n * n..(h + 1) * n * n];
        for i in 0..n {
            let lse = x.lse[h * n + i];
            let o = &x.out[i * c + h * hd..][..hd];
            let delta: f32 = o.iter().zip(&t.dout[i * hp..][..hd]).map(|(a, b)| a * b).sum();
            let p = &mut t.p[i * np..i * np + n];
            for (s, &b) in p.iter_mut().zip(&bias_h[i * n..(i + 1) * n]) {
                *s = math::exp(*s + b - lse);
            }
            store_column(p, i, &mut t.pt, np);
            let dp = &t.dp[i * np..i * np + n];
            for ((s, &g), db) in p.iter_mut().zip(dp).zip(&mut dbias_h[i * n..(i + 1) * n]) {
                *s *= g - delta;
                *db += *s;
            }
            store_column(p, i, &mut t.st, np);
        }
        // dV = P^T dO.
        matmul(Rows { values: &t.pt, stride: np }, n, n, Rows { values: &t.dout, stride: hp }, &mut t.o, hp);
        gather(Rows { values: &t.o, stride: hp }, 0..hd, 1.0, &mut dqkv[2 * c + h * hd..], 3 * c);
        // dq = scale dS k.
        matmul(Rows { values: &t.p, stride: np }, n, n, Rows { values: &t.k, stride: hp }, &mut t.o, hp);
        gather(Rows { values: &t.o, stride: hp }, 0..hd, x.scale, &mut dqkv[h * hd..], 3 * c);
        // dk = dS^T (scale q).
        matmul(Rows { values: &t.st, stride: np }, n, n, Rows { values: &t.q, stride: hp }, &mut t.o, hp);
        gather(Rows { values: &t.o, stride: hp }, 0..hd, 1.0, &mut dqkv[c + h * hd..], 3 * c);
    }
}

math::dispatched!(
    window_backward_dispatched,
    <>,
    (d: Dims, x: WindowGrad, dqkv: &mut [f32], dbias: &mut [f32], t: &mut BackwardScratch),
    window_backward(d, x, dqkv, dbias, t)
);

/// The backward: `qkv: [BW, N, 3C]`, `bias: [nWb, H, N, N]`, `out`, `dout: [BW, N, C]`,
/// `lse: [BW, H, N]`, all row-major -> `(dqkv [BW, N, 3C], dbias [nWb, H, N, N])`.
///
/// The windows are cut into one contiguous range per thread; each range writes its own rows of
/// `dqkv` and sums `dS` into its own `dbias`, and the per-range `dbias` are added at the end
/// (windows `w` and `w + nWb` share a bias).
pub(crate) fn backward(
    d: Dims,
    qkv: &[f32],
    bias: &[f32],
    out: &[f32],
    lse: &[f32],
    dout: &[f32],
    scale: f32,
) -> (Vec<f32>, Vec<f32>) {
    let c = d.h * d.hd;
    let per_window = d.h * d.n * d.n;
    assert_eq!(qkv.len(), d.bw * d.n * 3 * c, "window attention backward: qkv is not [BW, N, 3C]");
    assert_eq!(bias.len(), d.nwb * per_window, "window attention backward: bias is not [nWb, H, N, N]");
    assert!(out.len() == d.bw * d.n * c && dout.len() == out.len(), "window attention backward: out/dout");
    assert_eq!(lse.len(), d.bw * d.h * d.n, "window attention backward: lse is not [BW, H, N]");
    assert!(d.nwb > 0 && d.bw.is_multiple_of(d.nwb), "window attention: {} windows for {} biases", d.bw, d.nwb);
    let mut dqkv = vec![0.0f32; qkv.len()];
    if d.bw == 0 || d.n == 0 || c == 0 {
        return (dqkv, vec![0.0; bias.len()]);
    }
    let per_task = d.bw.div_ceil(rayon::current_num_threads().max(1));
    let partial: Vec<Vec<f32>> = dqkv
        .par_chunks_mut(per_task * d.n * 3 * c)
        .enumerate()
        .map(|(task, dqkv_range)| {
            let mut dbias = vec![0.0f32; bias.len()];
            let mut t = BackwardScratch::new(d);
            for (k, dqkv_w) in dqkv_range.chunks_mut(d.n * 3 * c).enumerate() {
                let w = task * per_task + k;
                let b = w % d.nwb;
                let rows = w * d.n * c..(w + 1) * d.n * c;
                let x = WindowGrad {
                    qkv: &qkv[w * d.n * 3 * c..(w + 1) * d.n * 3 * c],
                    out: &out[rows.clone()],
                    dout: &dout[rows],
                    lse: &lse[w * d.h * d.n..(w + 1) * d.h * d.n],
                    bias: &bias[b * per_window..(b + 1) * per_window],
                    scale,
                };
                window_backward_dispatched(d, x, dqkv_w, &mut dbias[b * per_window..(b + 1) * per_window], &mut t);
            }
            dbias
        })
        .collect();
    let mut parts = partial.into_iter();
    let mut dbias = parts.next().unwrap_or_else(|| vec![0.0; bias.len()]);
    for part in parts {
        for (a, b) in dbias.iter_mut().zip(part) {
            *a += b;
        }
    }
    (dqkv, dbias)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The micro-kernel tiling against a naive triple loop, for row counts around the 4-row
    /// tile and column counts of one, two and three 16-wide blocks.
    #[test]
    fn tiled_matmul_matches_the_naive_product() {
        for (m, k, cols) in [(1, 1, 16), (4, 3, 32), (5, 7, 48), (49, 32, 64), (9, 0, 16)] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 13) as f32 - 6.0) / 8.0).collect();
            let b: Vec<f32> = (0..k * cols).map(|i| ((i * 5 % 11) as f32 - 5.0) / 4.0).collect();
            let mut c = vec![f32::NAN; m * (cols + 3)];
            matmul(Rows { values: &a, stride: k }, m, k, Rows { values: &b, stride: cols }, &mut c, cols + 3);
            for i in 0..m {
                for j in 0..cols {
                    let want: f32 = (0..k).map(|kk| a[i * k + kk] * b[kk * cols + j]).sum();
                    assert!((c[i * (cols + 3) + j] - want).abs() <= 1e-5, "({m},{k},{cols}) at [{i},{j}]");
                }
            }
        }
    }

    /// No windows, no tokens or no channels: empty outputs of the right sizes, no panic.
    #[test]
    fn empty_inputs_give_empty_outputs() {
        let d = Dims { bw: 0, n: 49, h: 3, hd: 32, nwb: 1 };
        let (out, lse) = forward(d, &[], &[0.0; 3 * 49 * 49], 1.0);
        assert!(out.is_empty() && lse.is_empty());
        let d = Dims { bw: 2, n: 0, h: 3, hd: 32, nwb: 1 };
        let (out, lse) = forward(d, &[], &[], 1.0);
        assert!(out.is_empty() && lse.is_empty());
    }
}
