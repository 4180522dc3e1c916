//! Window geometry and window ops against timm (`tests/fixtures/window_ops.safetensors`).

mod common;

use burn::prelude::*;
use common::*;
use florence::image::geometry::{relative_position_index, shifted_window_mask};
use florence::image::window::{window_partition, window_reverse};

#[test]
fn relative_position_index_matches_timm() {
    let io = load_fixture("window_ops.safetensors");
    for (key, wh, ww) in [("rel_index_4x4", 4, 4), ("rel_index_3x5", 3, 5), ("rel_index_7x7", 7, 7)] {
        let want: Vec<i64> = io[key].iter::<i64>().collect();
        assert_eq!(relative_position_index(wh, ww), want, "{key}");
    }
}

#[test]
fn shifted_window_mask_matches_timm() {
    let io = load_fixture("window_ops.safetensors");
    // timm pads the 10x13 map to 12x16 before building the mask.
    for (key, hp, wp, win, shift) in [("mask_10x13_w4_s2", 12, 16, 4, 2), ("mask_28x28_w7_s3", 28, 28, 7, 3)] {
        let want: Vec<f32> = io[key].iter::<f32>().collect();
        let got = shifted_window_mask(hp, wp, (win, win), (shift, shift));
        assert_eq!(got, want, "{key}");
    }
}

#[test]
fn partition_and_reverse_match_timm() {
    let io = load_fixture("window_ops.safetensors");
    let dev = device();
    let x: Tensor<4> = float(&io, "x", &dev);
    let p44 = window_partition(x.clone(), (4, 4));
    let want44: Tensor<4> = float(&io, "partition_4x4", &dev);
    assert_close("partition 4x4", p44.clone(), want44.reshape([12, 16, 3]), 0.0);
    let p23 = window_partition(x.clone(), (2, 3));
    let want23: Tensor<4> = float(&io, "partition_2x3", &dev);
    assert_close("partition 2x3", p23, want23.reshape([32, 6, 3]), 0.0);
    assert_close("reverse 4x4", window_reverse(p44, (4, 4), 8, 12), float(&io, "reverse_4x4", &dev), 0.0);
}
