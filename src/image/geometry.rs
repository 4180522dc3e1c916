//! Window geometry as pure functions: stage resolutions, window clamping, padding, the relative
//! position index and the shifted-window attention mask. No tensors here; everything is unit
//! tested against timm's `swin_transformer.py` (fixtures in `tests/fixtures/window_ops.safetensors`).

use crate::config::{EmbeddingKind, ImageEncoderConfig};

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

/// Feature-map size after the stem for an `h x w` image.
pub fn stem_resolution(cfg: &ImageEncoderConfig, (h, w): (usize, usize)) -> (usize, usize) {
    match cfg.embedding {
        // Conv2d(k=p, s=p): floor(h / p), as timm's PatchEmbed with dynamic_img_pad=False.
        EmbeddingKind::Patch => (h / cfg.patch_size, w / cfg.patch_size),
        // CvT stem Conv2d(k=7, s=4, p=2).
        EmbeddingKind::Conv => (conv_out(h, 7, 4, 2), conv_out(w, 7, 4, 2)),
    }
}

/// Feature-map size after one downsampling. Patch merging pads odd sides by one and halves
/// (timm `PatchMerging`); the CvT 3x3 stride-2 padding-1 conv gives `floor((h-1)/2)+1`. Both
/// are `ceil(h/2)`.
pub fn downsample_resolution((h, w): (usize, usize)) -> (usize, usize) {
    (h.div_ceil(2), w.div_ceil(2))
}

/// Feature-map size of every stage for an `h x w` input.
pub fn stage_resolutions(cfg: &ImageEncoderConfig, hw: (usize, usize)) -> Vec<(usize, usize)> {
    let mut r = stem_resolution(cfg, hw);
    let mut out = Vec::with_capacity(cfg.num_stages());
    for i in 0..cfg.num_stages() {
        if i > 0 {
            r = downsample_resolution(r);
        }
        out.push(r);
    }
    out
}

/// Window and shift of stage `i`, fixed at construction from the config's image size, per
/// dimension as timm's `_calc_window_shift`: where the feature map is no larger than the window,
/// the window shrinks to the map and the shift is 0. The shift is `window // 2` for the odd
/// (shifted) blocks. Returns `((wh, ww), (sh, sw))`.
pub fn stage_window(cfg: &ImageEncoderConfig, i: usize) -> ((usize, usize), (usize, usize)) {
    let (h, w) = stage_resolutions(cfg, (cfg.image_size, cfg.image_size))[i];
    clamp_window((h, w), cfg.window_size)
}

/// The clamping rule of [`stage_window`] for one feature map.
pub fn clamp_window((h, w): (usize, usize), window: usize) -> ((usize, usize), (usize, usize)) {
    let shift = window / 2;
    let one = |r: usize| if r <= window { (r.max(1), 0) } else { (window, shift) };
    let ((wh, sh), (ww, sw)) = (one(h), one(w));
    ((wh, ww), (sh, sw))
}

/// Relative position index of a `wh x ww` window, row-major `[N, N]` with `N = wh*ww`:
/// `index[i][j] = (h_i - h_j + wh - 1) * (2ww - 1) + (w_i - w_j + ww - 1)`, an index into the
/// `[(2wh-1)(2ww-1), heads]` bias table (timm `get_relative_position_index`).
pub fn relative_position_index(wh: usize, ww: usize) -> Vec<i64> {
    let n = wh * ww;
    let mut idx = Vec::with_capacity(n * n);
    for i in 0..n {
        let (hi, wi) = ((i / ww) as i64, (i % ww) as i64);
        for j in 0..n {
            let (hj, wj) = ((j / ww) as i64, (j % ww) as i64);
            idx.push((hi - hj + wh as i64 - 1) * (2 * ww as i64 - 1) + (wi - wj + ww as i64 - 1));
        }
    }
    idx
}

/// Region label of every position of an `hp x wp` map after a cyclic shift: three slices per
/// axis, `[0, hp-wh)`, `[hp-wh, hp-sh)`, `[hp-sh, hp)`, numbered h-major (Swin's `img_mask`).
pub fn shift_region_labels(hp: usize, wp: usize, (wh, ww): (usize, usize), (sh, sw): (usize, usize)) -> Vec<u8> {
    let band = |x: usize, n: usize, win: usize, s: usize| -> u8 {
        if x < n.saturating_sub(win) {
            0
        } else if x < n - s {
            1
        } else {
            2
        }
    };
    let mut labels = Vec::with_capacity(hp * wp);
    for y in 0..hp {
        for x in 0..wp {
            labels.push(band(y, hp, wh, sh) * 3 + band(x, wp, ww, sw));
        }
    }
    labels
}

/// The additive shifted-window mask for a padded `hp x wp` map: `[nW, N, N]` row-major, with
/// `0` where two tokens of a window came from the same region and `-100` elsewhere (Swin uses
/// -100, not -inf). Windows are ordered row-major over the map, as `window_partition` orders them.
pub fn shifted_window_mask(hp: usize, wp: usize, win: (usize, usize), shift: (usize, usize)) -> Vec<f32> {
    let (wh, ww) = win;
    let labels = shift_region_labels(hp, wp, win, shift);
    let (nh, nw, n) = (hp / wh, wp / ww, wh * ww);
    let mut mask = Vec::with_capacity(nh * nw * n * n);
    let mut tok = vec![0u8; n];
    for by in 0..nh {
        for bx in 0..nw {
            for (t, l) in tok.iter_mut().enumerate() {
                *l = labels[(by * wh + t / ww) * wp + bx * ww + t % ww];
            }
            for i in 0..n {
                for j in 0..n {
                    mask.push(if tok[i] == tok[j] { 0.0 } else { -100.0 });
                }
            }
        }
    }
    mask
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FlorenceConfig;

    #[test]
    fn conv_and_padding_arithmetic() {
        assert_eq!(conv_out(224, 7, 4, 2), 56);
        assert_eq!(conv_out(56, 3, 2, 1), 28);
        assert_eq!(conv_out(7, 3, 2, 1), 4);
        assert_eq!(conv_out(2, 7, 4, 0), 0);
        assert_eq!(pad_to_multiple(56, 7), 0);
        assert_eq!(pad_to_multiple(18, 4), 2);
        assert_eq!(downsample_resolution((9, 11)), (5, 6));
    }

    #[test]
    fn swin_t_stage_geometry() {
        let c = FlorenceConfig::preset("unicl-swin-t").unwrap().image;
        assert_eq!(stage_resolutions(&c, (224, 224)), vec![(56, 56), (28, 28), (14, 14), (7, 7)]);
        assert_eq!(stage_window(&c, 0), ((7, 7), (3, 3)));
        // Stage 3 is 7x7: the window covers it and the shift is dropped (no attn_mask buffer there).
        assert_eq!(stage_window(&c, 3), ((7, 7), (0, 0)));
        let t = FlorenceConfig::preset("tiny").unwrap().image;
        assert_eq!(stage_resolutions(&t, (72, 88)), vec![(18, 22), (9, 11), (5, 6), (3, 3)]);
        assert_eq!(stage_window(&t, 3), ((2, 2), (0, 0)));
        let co = FlorenceConfig::preset("coswin-t").unwrap().image;
        assert_eq!(stage_resolutions(&co, (384, 384)), vec![(96, 96), (48, 48), (24, 24), (12, 12)]);
    }

    #[test]
    fn relative_index_corners() {
        let idx = relative_position_index(7, 7);
        assert_eq!(idx.len(), 49 * 49);
        assert_eq!(idx[0], 6 * 13 + 6); // same token: the table's centre
        assert_eq!(idx[48], 0); // (0,0) vs (6,6)
        assert_eq!(idx[48 * 49], 168); // (6,6) vs (0,0): the last row of the 169-entry table
    }

    #[test]
    fn unshifted_map_has_one_region_per_window() {
        let m = shifted_window_mask(8, 8, (4, 4), (2, 2));
        assert_eq!(m.len(), 4 * 16 * 16);
        // The top-left window never straddles the shift boundary.
        assert!(m[..256].iter().all(|&v| v == 0.0));
        // The bottom-right window mixes four regions.
        assert_eq!(m[3 * 256..].iter().filter(|&&v| v == -100.0).count(), 256 - 4 * 16);
    }
}
