//! CubeCL kernels for windowed multi-head attention, forward and backward.
//!
//! Layouts (all contiguous; `C = heads * hd`):
//! - `qkv: [BW, N, 3C]`, the packed output of Swin's `qkv` Linear: q at `[.., 0..C]`, k at
//!   `[.., C..2C]`, v at `[.., 2C..3C]`, each head-major (`h * hd + d`), as timm reshapes it.
//! - `bias: [nWb, H, N, N]`, added to the scores of window `w` as `bias[w % nWb]`: the relative
//!   position bias (`nWb = 1`) or bias plus the shifted-window mask (`nWb = nW`).
//! - `out: [BW, N, C]`, heads already merged (what `proj` reads).
//! - `lse: [BW, H, N]`, the log-sum-exp of each score row, saved for the backward.
//!
//! The score matrix never reaches global memory. A cube owns one (window, head) and a block of
//! `CUBE_DIM_X` rows; keys (forward) or queries (backward) stream through shared memory in tiles
//! of `tile` rows, and each unit keeps its row's accumulators in registers: the forward is the
//! FlashAttention recurrence (running max, rescaled sum) per tile, the backward recomputes
//! `P = exp(S - lse)` from the saved statistics (FlashAttention-2, Dao 2023, Alg. 2).
//!
//! Arithmetic is f32 whatever the storage type (f16 inputs accumulate in f32). No plane (warp)
//! operations: wgpu disables them on CPU adapters such as lavapipe. Shared memory is
//! `2 * tile * hd * 4` bytes (at most 16 KB), under Metal's 32 KB. The cube index of a
//! (window, head) pair is spread over the y and z cube counts, so windows are not limited to
//! 65,535; barriers sit in uniform control flow (every unit of a cube reaches each of them).

use burn_cubecl::cubecl;
use burn_cubecl::cubecl::prelude::*;

/// The (window, head)-pair index of this cube.
#[cube]
fn pair_index() -> usize {
    (CUBE_POS_Z * CUBE_COUNT_Y + CUBE_POS_Y) as usize
}

/// Forward: `out = softmax(scale * q k^T + bias) v` per window and head, and `lse` if asked.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn window_attention_forward_kernel<F: Float>(
    qkv: &Tensor<F>,
    bias: &Tensor<F>,
    out: &mut Tensor<F>,
    lse: &mut Tensor<F>,
    scale: f32,
    tokens: u32,
    heads: u32,
    windows: u32,
    bias_windows: u32,
    #[comptime] hd: usize,
    #[comptime] tile: usize,
    #[comptime] with_lse: bool,
    #[define(F)] _dtype: ElemType,
) {
    let n = tokens as usize;
    let nh = heads as usize;
    let pair = pair_index();
    let pair_ok = pair < nh * windows as usize;
    let h = pair % nh;
    let w = pair / nh;
    let c = nh * hd;
    let row3 = 3 * c;
    let base = w * n * row3;
    let i = (CUBE_POS_X * CUBE_DIM_X + UNIT_POS_X) as usize;
    let active = pair_ok && i < n;

    let mut qi = Array::<f32>::new(hd);
    let mut acc = Array::<f32>::new(hd);
    for d in 0..hd {
        acc[d] = 0.0;
        qi[d] = 0.0;
        if active {
            qi[d] = f32::cast_from(qkv[base + i * row3 + h * hd + d]) * scale;
        }
    }
    let bias_row = ((w % bias_windows as usize) * nh + h) * n * n + i * n;
    let mut scores = Array::<f32>::new(tile);
    // A large finite "minus infinity": WGSL rejects infinite literals (burn-cubecl ctc.rs).
    let mut m = f32::new(-3.0e38);
    let mut l = f32::new(0.0);

    let mut k_tile = Shared::<[f32]>::new_slice(comptime!(tile * hd));
    let mut v_tile = Shared::<[f32]>::new_slice(comptime!(tile * hd));
    for t0 in 0..(n + tile - 1) / tile {
        let j0 = t0 * tile;
        let mut e = UNIT_POS_X as usize;
        while e < comptime!(tile * hd) {
            let j = j0 + e / hd;
            if pair_ok && j < n {
                let at = base + j * row3 + h * hd + e % hd;
                k_tile[e] = f32::cast_from(qkv[at + c]);
                v_tile[e] = f32::cast_from(qkv[at + 2 * c]);
            }
            e += CUBE_DIM_X as usize;
        }
        sync_cube();
        if active {
            let count = min(tile, n - j0);
            let mut tile_max = f32::new(-3.0e38);
            for jj in 0..count {
                let mut s = f32::new(0.0);
                for d in 0..hd {
                    s += qi[d] * k_tile[jj * hd + d];
                }
                s += f32::cast_from(bias[bias_row + j0 + jj]);
                scores[jj] = s;
                tile_max = max(tile_max, s);
            }
            let m_new = max(m, tile_max);
            let rescale = (m - m_new).exp();
            l *= rescale;
            for d in 0..hd {
                acc[d] *= rescale;
            }
            for jj in 0..count {
                let p = (scores[jj] - m_new).exp();
                l += p;
                for d in 0..hd {
                    acc[d] += p * v_tile[jj * hd + d];
                }
            }
            m = m_new;
        }
        sync_cube();
    }

    if active {
        let inv = 1.0f32 / l;
        let o = (w * n + i) * c + h * hd;
        for d in 0..hd {
            out[o + d] = F::cast_from(acc[d] * inv);
        }
        if with_lse {
            lse[(w * nh + h) * n + i] = F::cast_from(m + l.ln());
        }
    }
}

/// `delta[w, h, i] = sum_d dout[w, i, h, d] * out[w, i, h, d]`, the softmax-backward row term.
#[cube(launch)]
pub fn window_attention_delta_kernel<F: Float>(
    out: &Tensor<F>,
    dout: &Tensor<F>,
    delta: &mut Tensor<F>,
    tokens: u32,
    heads: u32,
    #[comptime] hd: usize,
    #[define(F)] _dtype: ElemType,
) {
    let row = pair_index() * CUBE_DIM_X as usize + UNIT_POS_X as usize;
    if row >= delta.len() {
        terminate!();
    }
    let n = tokens as usize;
    let nh = heads as usize;
    let i = row % n;
    let h = (row / n) % nh;
    let w = row / (n * nh);
    let o = (w * n + i) * nh * hd + h * hd;
    let mut acc = f32::new(0.0);
    for d in 0..hd {
        acc += f32::cast_from(dout[o + d]) * f32::cast_from(out[o + d]);
    }
    delta[row] = F::cast_from(acc);
}

/// Backward, query side: `dq` for every window, and `dS` summed into `bias_part`.
///
/// A cube owns a row block of one head, one bias window class `wb` and a chunk of
/// `per_chunk` windows of that class (`w = b * nWb + wb`). Each unit accumulates its row's
/// `dS` over the chunk in `bias_part[chunk, wb, h, i, :]`, which only it touches, so there are
/// no atomics; the host sums the chunks. `dqkv`'s q third is written here, k and v by
/// [`window_attention_backward_kv_kernel`].
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn window_attention_backward_q_kernel<F: Float>(
    qkv: &Tensor<F>,
    bias: &Tensor<F>,
    dout: &Tensor<F>,
    lse: &Tensor<F>,
    delta: &Tensor<F>,
    dqkv: &mut Tensor<F>,
    bias_part: &mut Tensor<F>,
    scale: f32,
    tokens: u32,
    heads: u32,
    windows: u32,
    bias_windows: u32,
    per_chunk: u32,
    chunks: u32,
    #[comptime] hd: usize,
    #[comptime] tile: usize,
    #[define(F)] _dtype: ElemType,
) {
    let n = tokens as usize;
    let nh = heads as usize;
    let nwb = bias_windows as usize;
    let pair = pair_index();
    let pair_ok = pair < nh * nwb * chunks as usize;
    let h = pair % nh;
    let wb = (pair / nh) % nwb;
    let chunk = pair / (nh * nwb);
    let c = nh * hd;
    let row3 = 3 * c;
    let i = (CUBE_POS_X * CUBE_DIM_X + UNIT_POS_X) as usize;
    let row_ok = pair_ok && i < n;
    let bias_row = (wb * nh + h) * n * n + i * n;
    let part_row = ((chunk * nwb + wb) * nh + h) * n * n + i * n;
    if row_ok {
        for j in 0..n {
            bias_part[part_row + j] = F::new(0.0);
        }
    }

    let mut qi = Array::<f32>::new(hd);
    let mut gi = Array::<f32>::new(hd);
    let mut dq = Array::<f32>::new(hd);
    let mut k_tile = Shared::<[f32]>::new_slice(comptime!(tile * hd));
    let mut v_tile = Shared::<[f32]>::new_slice(comptime!(tile * hd));

    for t in 0..per_chunk as usize {
        let w = (chunk * per_chunk as usize + t) * nwb + wb;
        let window_ok = pair_ok && w < windows as usize;
        let active = row_ok && window_ok;
        let base = w * n * row3;
        let mut lse_i = f32::new(0.0);
        let mut delta_i = f32::new(0.0);
        for d in 0..hd {
            qi[d] = 0.0;
            gi[d] = 0.0;
            dq[d] = 0.0;
        }
        if active {
            for d in 0..hd {
                qi[d] = f32::cast_from(qkv[base + i * row3 + h * hd + d]);
                gi[d] = f32::cast_from(dout[(w * n + i) * c + h * hd + d]);
            }
            lse_i = f32::cast_from(lse[(w * nh + h) * n + i]);
            delta_i = f32::cast_from(delta[(w * nh + h) * n + i]);
        }
        for t0 in 0..(n + tile - 1) / tile {
            let j0 = t0 * tile;
            let mut e = UNIT_POS_X as usize;
            while e < comptime!(tile * hd) {
                let j = j0 + e / hd;
                if window_ok && j < n {
                    let at = base + j * row3 + h * hd + e % hd;
                    k_tile[e] = f32::cast_from(qkv[at + c]);
                    v_tile[e] = f32::cast_from(qkv[at + 2 * c]);
                }
                e += CUBE_DIM_X as usize;
            }
            sync_cube();
            if active {
                let count = min(tile, n - j0);
                for jj in 0..count {
                    let mut s = f32::new(0.0);
                    let mut dp = f32::new(0.0);
                    for d in 0..hd {
                        s += qi[d] * k_tile[jj * hd + d];
                        dp += gi[d] * v_tile[jj * hd + d];
                    }
                    let p = (s * scale + f32::cast_from(bias[bias_row + j0 + jj]) - lse_i).exp();
                    let ds = p * (dp - delta_i);
                    for d in 0..hd {
                        dq[d] += ds * k_tile[jj * hd + d];
                    }
                    let at = part_row + j0 + jj;
                    bias_part[at] = F::cast_from(f32::cast_from(bias_part[at]) + ds);
                }
            }
            sync_cube();
        }
        if active {
            for d in 0..hd {
                dqkv[base + i * row3 + h * hd + d] = F::cast_from(dq[d] * scale);
            }
        }
    }
}

/// Backward, key side: `dk` and `dv` of one window and head, a unit per key row, the queries
/// (with their `dout`, `lse` and `delta`) streamed through shared memory.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn window_attention_backward_kv_kernel<F: Float>(
    qkv: &Tensor<F>,
    bias: &Tensor<F>,
    dout: &Tensor<F>,
    lse: &Tensor<F>,
    delta: &Tensor<F>,
    dqkv: &mut Tensor<F>,
    scale: f32,
    tokens: u32,
    heads: u32,
    windows: u32,
    bias_windows: u32,
    #[comptime] hd: usize,
    #[comptime] tile: usize,
    #[define(F)] _dtype: ElemType,
) {
    let n = tokens as usize;
    let nh = heads as usize;
    let pair = pair_index();
    let pair_ok = pair < nh * windows as usize;
    let h = pair % nh;
    let w = pair / nh;
    let c = nh * hd;
    let row3 = 3 * c;
    let base = w * n * row3;
    let j = (CUBE_POS_X * CUBE_DIM_X + UNIT_POS_X) as usize;
    let active = pair_ok && j < n;
    let bias_head = ((w % bias_windows as usize) * nh + h) * n * n;

    let mut kj = Array::<f32>::new(hd);
    let mut vj = Array::<f32>::new(hd);
    let mut dk = Array::<f32>::new(hd);
    let mut dv = Array::<f32>::new(hd);
    for d in 0..hd {
        kj[d] = 0.0;
        vj[d] = 0.0;
        dk[d] = 0.0;
        dv[d] = 0.0;
        if active {
            kj[d] = f32::cast_from(qkv[base + j * row3 + c + h * hd + d]);
            vj[d] = f32::cast_from(qkv[base + j * row3 + 2 * c + h * hd + d]);
        }
    }

    let mut q_tile = Shared::<[f32]>::new_slice(comptime!(tile * hd));
    let mut g_tile = Shared::<[f32]>::new_slice(comptime!(tile * hd));
    let mut lse_tile = Shared::<[f32]>::new_slice(tile);
    let mut delta_tile = Shared::<[f32]>::new_slice(tile);
    for t0 in 0..(n + tile - 1) / tile {
        let i0 = t0 * tile;
        let mut e = UNIT_POS_X as usize;
        while e < comptime!(tile * hd) {
            let i = i0 + e / hd;
            if pair_ok && i < n {
                q_tile[e] = f32::cast_from(qkv[base + i * row3 + h * hd + e % hd]);
                g_tile[e] = f32::cast_from(dout[(w * n + i) * c + h * hd + e % hd]);
            }
            e += CUBE_DIM_X as usize;
        }
        let mut r = UNIT_POS_X as usize;
        while r < tile {
            if pair_ok && i0 + r < n {
                lse_tile[r] = f32::cast_from(lse[(w * nh + h) * n + i0 + r]);
                delta_tile[r] = f32::cast_from(delta[(w * nh + h) * n + i0 + r]);
            }
            r += CUBE_DIM_X as usize;
        }
        sync_cube();
        if active {
            let count = min(tile, n - i0);
            for ii in 0..count {
                let mut s = f32::new(0.0);
                let mut dp = f32::new(0.0);
                for d in 0..hd {
                    s += q_tile[ii * hd + d] * kj[d];
                    dp += g_tile[ii * hd + d] * vj[d];
                }
                let b = f32::cast_from(bias[bias_head + (i0 + ii) * n + j]);
                let p = (s * scale + b - lse_tile[ii]).exp();
                let ds = p * (dp - delta_tile[ii]);
                for d in 0..hd {
                    dv[d] += p * g_tile[ii * hd + d];
                    dk[d] += ds * q_tile[ii * hd + d];
                }
            }
        }
        sync_cube();
    }

    if active {
        let at = base + j * row3 + h * hd;
        for d in 0..hd {
            dqkv[at + c + d] = F::cast_from(dk[d] * scale);
            dqkv[at + 2 * c + d] = F::cast_from(dv[d]);
        }
    }
}
