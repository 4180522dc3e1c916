//! Window partition and reverse on NHWC tensors (Swin §3.2): windows are ordered row-major over
//! the map with the batch outermost, tokens row-major inside a window.

use burn::prelude::*;

/// `[B, H, W, C] -> [B * nW, wh * ww, C]`. H and W must be multiples of the window.
pub fn window_partition(x: Tensor<4>, (wh, ww): (usize, usize)) -> Tensor<3> {
    let [b, h, w, c] = x.dims();
    x.reshape([b, h / wh, wh, w / ww, ww, c])
        .permute([0, 1, 3, 2, 4, 5])
        .reshape([b * (h / wh) * (w / ww), wh * ww, c])
}

/// `[B * nW, wh * ww, C] -> [B, H, W, C]`, the inverse of [`window_partition`].
pub fn window_reverse(windows: Tensor<3>, (wh, ww): (usize, usize), h: usize, w: usize) -> Tensor<4> {
    let [bn, _, c] = windows.dims();
    let b = bn / ((h / wh) * (w / ww));
    windows
        .reshape([b, h / wh, w / ww, wh, ww, c])
        .permute([0, 1, 3, 2, 4, 5])
        .reshape([b, h, w, c])
}
