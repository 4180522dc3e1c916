//! Window partition and reverse on channels-last tensors (Swin §3.2, Video Swin §3.2): windows
//! are ordered row-major over the map with the batch outermost, tokens row-major inside a window.

use burn::prelude::*;

/// `[B, H, W, C] -> [B * nW, wh * ww, C]`. H and W must be multiples of the window.
pub fn window_partition(x: Tensor<4>, (wh, ww): (usize, usize)) -> Tensor<3> {
    let [b, h, w, c] = x.dims();
    x.reshape([b, h / wh, wh, w / ww, ww, c]).permute([0, 1, 3, 2, 4, 5]).reshape([b * (h / wh) * (w / ww), wh * ww, c])
}

/// `[B * nW, wh * ww, C] -> [B, H, W, C]`, the inverse of [`window_partition`].
pub fn window_reverse(windows: Tensor<3>, (wh, ww): (usize, usize), h: usize, w: usize) -> Tensor<4> {
    let [bn, _, c] = windows.dims();
    let b = bn / ((h / wh) * (w / ww));
    windows.reshape([b, h / wh, w / ww, wh, ww, c]).permute([0, 1, 3, 2, 4, 5]).reshape([b, h, w, c])
}

/// `[B, T, H, W, C] -> [B * nW, wd * wh * ww, C]` (torchvision `shifted_window_attention_3d`'s
/// view and `permute(0, 1, 3, 5, 2, 4, 6, 7)`). T, H and W must be multiples of the window.
pub fn window_partition_3d(x: Tensor<5>, [wd, wh, ww]: [usize; 3]) -> Tensor<3> {
    let [b, t, h, w, c] = x.dims();
    let nw = (t / wd) * (h / wh) * (w / ww);
    x.reshape([b, t / wd, wd, h / wh, wh, w / ww, ww, c]).permute([0, 1, 3, 5, 2, 4, 6, 7]).reshape([
        b * nw,
        wd * wh * ww,
        c,
    ])
}

/// `[B * nW, wd * wh * ww, C] -> [B, T, H, W, C]`, the inverse of [`window_partition_3d`].
pub fn window_reverse_3d(windows: Tensor<3>, [wd, wh, ww]: [usize; 3], [t, h, w]: [usize; 3]) -> Tensor<5> {
    let [bn, _, c] = windows.dims();
    let b = bn / ((t / wd) * (h / wh) * (w / ww));
    windows
        .reshape([b, t / wd, h / wh, w / ww, wd, wh, ww, c])
        .permute([0, 1, 4, 2, 5, 3, 6, 7])
        .reshape([b, t, h, w, c])
}
