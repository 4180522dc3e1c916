//! Window geometry as pure functions over plain numbers, for maps of rank 2 (`H, W`: Swin) or 3
//! (`T, H, W`: Video Swin): convolution and padding arithmetic, the window clamp, the relative
//! position index and the cyclic-shift mask. No tensors and no configs here (the config-dependent
//! stage geometry is `ImageEncoderConfig::stage_resolutions` / `stage_window`).
//!
//! Tested against timm's `swin_transformer.py` in 2D (`tests/fixtures/window_ops.safetensors`)
//! and torchvision's `models/video/swin_transformer.py` in 3D
//! (`tests/fixtures/swin3d_geometry.safetensors`).
//!
//! Axes are listed outermost first everywhere (`[T, H, W]`, `[H, W]`), and windows are ordered
//! row-major over the map, tokens row-major inside a window, as `window_partition` orders them.

/// Output length of a convolution along one axis: `floor((n + 2p - k) / s) + 1` (0 if the
/// kernel does not fit).
pub fn conv_out(n: usize, kernel: usize, stride: usize, padding: usize) -> usize {
    let padded = n + 2 * padding;
    if padded < kernel { 0 } else { (padded - kernel) / stride + 1 }
}

/// Padding that brings `n` up to a multiple of `m`: `(m - n % m) % m`.
pub fn pad_to_multiple(n: usize, m: usize) -> usize {
    (m - n % m) % m
}

/// `size` padded at the end of every axis to a multiple of `window`.
pub fn padded_size<const R: usize>(size: [usize; R], window: [usize; R]) -> [usize; R] {
    std::array::from_fn(|i| size[i] + pad_to_multiple(size[i], window[i]))
}

/// Number of windows of a padded map: `∏ padded[i] / window[i]`.
pub fn num_windows<const R: usize>(padded: [usize; R], window: [usize; R]) -> usize {
    (0..R).map(|i| padded[i] / window[i]).product()
}

/// Tokens in a window: `∏ window[i]` (any rank: an array, a slice or a `Vec`).
pub fn window_len(window: impl AsRef<[usize]>) -> usize {
    window.as_ref().iter().product()
}

/// Feature-map size after one 2x downsampling (Swin patch merging pads odd sides by one and
/// halves; the CvT 3x3 stride-2 padding-1 conv gives `floor((h-1)/2)+1`; both are `ceil(h/2)`).
pub fn downsample_resolution((h, w): (usize, usize)) -> (usize, usize) {
    (h.div_ceil(2), w.div_ceil(2))
}

/// The window and shift actually used on a map of `size`: along an axis no larger than its
/// window, the window shrinks to the map and the shift is 0 (Video Swin's `get_window_size`,
/// torchvision's `_get_window_and_shift_size`, timm's `_calc_window_shift`).
pub fn clamp_window_and_shift<const R: usize>(
    size: [usize; R],
    window: [usize; R],
    shift: [usize; R],
) -> ([usize; R], [usize; R]) {
    let mut out = (window, shift);
    for i in 0..R {
        if size[i] <= window[i] {
            out.0[i] = size[i].max(1);
            out.1[i] = 0;
        }
    }
    out
}

/// The 2D clamp with Swin's default shift, `window // 2`: returns `((wh, ww), (sh, sw))`.
pub fn clamp_window((h, w): (usize, usize), window: usize) -> ((usize, usize), (usize, usize)) {
    let s = window / 2;
    let ([wh, ww], [sh, sw]) = clamp_window_and_shift([h, w], [window, window], [s, s]);
    ((wh, ww), (sh, sw))
}

/// Rows of the relative position bias table of a window: `∏ (2 wᵢ - 1)` (any rank).
pub fn relative_table_size(window: impl AsRef<[usize]>) -> usize {
    window.as_ref().iter().map(|&w| 2 * w - 1).product()
}

/// Coordinates of token `t` of a row-major window.
fn token_coords<const R: usize>(mut t: usize, window: [usize; R]) -> [i64; R] {
    let mut c = [0i64; R];
    for i in (0..R).rev() {
        c[i] = (t % window[i]) as i64;
        t /= window[i];
    }
    c
}

/// Relative position index of a window, row-major `[N, N]` with `N = ∏ wᵢ`: for tokens `p`, `q`,
/// the mixed-radix number with digits `p_i - q_i + w_i - 1` in radices `2 w_i - 1`, an index into
/// the `[∏(2wᵢ-1), heads]` bias table. In 2D, `(h_p - h_q + wh - 1) (2ww - 1) + (w_p - w_q + ww - 1)`
/// (timm `get_relative_position_index`); in 3D, Video Swin's / torchvision's
/// `define_relative_position_index`.
pub fn relative_position_index<const R: usize>(window: [usize; R]) -> Vec<i64> {
    let n = window_len(window);
    let coords: Vec<[i64; R]> = (0..n).map(|t| token_coords(t, window)).collect();
    let mut idx = Vec::with_capacity(n * n);
    for p in &coords {
        for q in &coords {
            let mut v = 0i64;
            for i in 0..R {
                v = v * (2 * window[i] as i64 - 1) + (p[i] - q[i] + window[i] as i64 - 1);
            }
            idx.push(v);
        }
    }
    idx
}

/// The index a clamped window uses in Video Swin and torchvision: the top-left `[n, n]` block of
/// the *configured* window's index, `index[:n, :n]` with `n = ∏ used`, not the index of the
/// smaller window. The two agree only when the clamped axes are the outermost ones (e.g. only
/// `T` clamped); the bias table keeps the configured window's rows either way.
pub fn clamped_relative_position_index<const R: usize>(configured: [usize; R], used: [usize; R]) -> Vec<i64> {
    let full = relative_position_index(configured);
    let (nf, n) = (window_len(configured), window_len(used).min(window_len(configured)));
    (0..n).flat_map(|i| full[i * nf..i * nf + n].iter().copied()).collect()
}

/// Region label of every position of a padded map after a cyclic shift (Swin's `img_mask`):
/// along each shifted axis three slices, `[0, n-w)`, `[n-w, n-s)`, `[n-s, n)`, and the label is
/// their base-3 number, outermost axis first (9 regions in 2D, 27 in 3D). An axis whose shift is
/// 0 does not split (its slices `(-w, -0)` and `(-0, None)` make it one region in the
/// references).
pub fn shift_region_labels<const R: usize>(padded: [usize; R], window: [usize; R], shift: [usize; R]) -> Vec<u8> {
    let band = |x: usize, i: usize| -> u8 {
        if shift[i] == 0 || x < padded[i].saturating_sub(window[i]) {
            0
        } else if x < padded[i] - shift[i] {
            1
        } else {
            2
        }
    };
    let total: usize = padded.iter().product();
    (0..total)
        .map(|mut flat| {
            let mut label = 0u8;
            let mut weight = 1u8;
            for i in (0..R).rev() {
                label += weight * band(flat % padded[i], i);
                flat /= padded[i];
                weight *= 3;
            }
            label
        })
        .collect()
}

/// The additive shifted-window mask for a padded map: `[nW, N, N]` row-major, with `0` where two
/// tokens of a window came from the same region and `-100` elsewhere (Swin and Video Swin use
/// -100, not -inf).
pub fn shifted_window_mask<const R: usize>(padded: [usize; R], window: [usize; R], shift: [usize; R]) -> Vec<f32> {
    let labels = shift_region_labels(padded, window, shift);
    let (nw, n) = (num_windows(padded, window), window_len(window));
    let counts: [usize; R] = std::array::from_fn(|i| padded[i] / window[i]);
    let mut mask = Vec::with_capacity(nw * n * n);
    let mut tok = vec![0u8; n];
    for w in 0..nw {
        let wc = token_coords(w, counts);
        for (t, l) in tok.iter_mut().enumerate() {
            let tc = token_coords(t, window);
            let flat = (0..R).fold(0usize, |acc, i| acc * padded[i] + wc[i] as usize * window[i] + tc[i] as usize);
            *l = labels[flat];
        }
        for a in &tok {
            for b in &tok {
                mask.push(if a == b { 0.0 } else { -100.0 });
            }
        }
    }
    mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conv_and_padding_arithmetic() {
        assert_eq!(conv_out(224, 7, 4, 2), 56);
        assert_eq!(conv_out(56, 3, 2, 1), 28);
        assert_eq!(conv_out(7, 3, 2, 1), 4);
        assert_eq!(conv_out(2, 7, 4, 0), 0);
        assert_eq!(pad_to_multiple(56, 7), 0);
        assert_eq!(pad_to_multiple(18, 4), 2);
        assert_eq!(downsample_resolution((9, 11)), (5, 6));
        assert_eq!(padded_size([5, 9, 6], [2, 4, 4]), [6, 12, 8]);
        assert_eq!(num_windows([6, 12, 8], [2, 4, 4]), 18);
        assert_eq!(window_len([8, 7, 7]), 392);
    }

    #[test]
    fn window_clamp_in_2d_and_3d() {
        assert_eq!(clamp_window((56, 56), 7), ((7, 7), (3, 3)));
        // A 7x7 map: the window covers it and the shift is dropped.
        assert_eq!(clamp_window((7, 7), 7), ((7, 7), (0, 0)));
        assert_eq!(clamp_window((3, 9), 4), ((3, 4), (0, 2)));
        // Video Swin: T = 8 equals its window, so T is not shifted.
        assert_eq!(clamp_window_and_shift([8, 14, 14], [8, 7, 7], [4, 3, 3]), ([8, 7, 7], [0, 3, 3]));
        assert_eq!(clamp_window_and_shift([2, 5, 12], [2, 7, 7], [1, 3, 3]), ([2, 5, 7], [0, 0, 3]));
    }

    #[test]
    fn relative_index_corners() {
        let idx = relative_position_index([7, 7]);
        assert_eq!(idx.len(), 49 * 49);
        assert_eq!(idx[0], 6 * 13 + 6); // same token: the table's centre
        assert_eq!(idx[48], 0); // (0,0) vs (6,6)
        assert_eq!(idx[48 * 49], 168); // (6,6) vs (0,0): the last row of the 169-entry table
        assert_eq!(relative_table_size([7, 7]), 169);
        assert_eq!(relative_table_size([8, 7, 7]), 2535);
        let idx3 = relative_position_index([2, 3, 3]);
        assert_eq!(idx3[0], (relative_table_size([2, 3, 3]) / 2) as i64);
        assert_eq!(*idx3.iter().max().unwrap() as usize, relative_table_size([2, 3, 3]) - 1);
    }

    #[test]
    fn clamped_index_is_the_top_left_block() {
        // Only T clamped: the block is the smaller window's own index, re-based on the full table.
        let full = relative_position_index([4, 2, 2]);
        let top = clamped_relative_position_index([4, 2, 2], [2, 2, 2]);
        assert_eq!(top.len(), 64);
        assert_eq!(top[..8], full[..8]);
        assert_eq!(clamped_relative_position_index([2, 2], [2, 2]), relative_position_index([2, 2]));
    }

    #[test]
    fn unshifted_map_has_one_region_per_window() {
        let m = shifted_window_mask([8, 8], [4, 4], [2, 2]);
        assert_eq!(m.len(), 4 * 16 * 16);
        // The top-left window never straddles the shift boundary.
        assert!(m[..256].iter().all(|&v| v == 0.0));
        // The bottom-right window mixes four regions.
        assert_eq!(m[3 * 256..].iter().filter(|&&v| v == -100.0).count(), 256 - 4 * 16);
        // 27 regions in 3D.
        let labels = shift_region_labels([8, 8, 8], [4, 4, 4], [2, 2, 2]);
        let distinct: std::collections::BTreeSet<u8> = labels.into_iter().collect();
        assert_eq!(distinct.len(), 27);
        // An axis with shift 0 adds no split.
        let one_axis = shift_region_labels([4, 8], [2, 4], [0, 2]);
        assert_eq!(one_axis.iter().collect::<std::collections::BTreeSet<_>>().len(), 3);
    }
}
