//! Window geometry and window ops against timm in 2D (`tests/fixtures/window_ops.safetensors`)
//! and torchvision's Video Swin in 3D (`tests/fixtures/swin3d_geometry.safetensors`, written by
//! `scripts/reference/make_swin3d_fixtures.py` from `torchvision.models.video.swin_transformer`).

mod common;

use burn::prelude::*;
use common::*;
use florence::image::geometry::{
    clamp_window_and_shift, clamped_relative_position_index, num_windows, padded_size, relative_position_index,
    relative_table_size, shifted_window_mask, window_len,
};
use florence::image::window::{window_partition, window_partition_3d, window_reverse, window_reverse_3d};

#[test]
fn relative_position_index_matches_timm() {
    let io = load_fixture("window_ops.safetensors");
    for (key, wh, ww) in [("rel_index_4x4", 4, 4), ("rel_index_3x5", 3, 5), ("rel_index_7x7", 7, 7)] {
        let want: Vec<i64> = io[key].iter::<i64>().collect();
        assert_eq!(relative_position_index([wh, ww]), want, "{key}");
    }
}

#[test]
fn shifted_window_mask_matches_timm() {
    let io = load_fixture("window_ops.safetensors");
    // timm pads the 10x13 map to 12x16 before building the mask.
    for (key, hp, wp, win, shift) in [("mask_10x13_w4_s2", 12, 16, 4, 2), ("mask_28x28_w7_s3", 28, 28, 7, 3)] {
        let want: Vec<f32> = io[key].iter::<f32>().collect();
        let got = shifted_window_mask([hp, wp], [win, win], [shift, shift]);
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

fn triple(io: &std::collections::BTreeMap<String, TensorData>, key: &str) -> [usize; 3] {
    let v: Vec<i64> = io[key].iter::<i64>().collect();
    [v[0] as usize, v[1] as usize, v[2] as usize]
}

/// torchvision's `_get_window_and_shift_size`, padding, table size, relative position index (with
/// the `index[:N, :N]` slice of a clamped window), `_compute_attention_mask_3d` and the window
/// partition, on six shapes: the Video Swin default window, clamped T, clamped T and H, padded T,
/// everything clamped, everything padded.
#[test]
fn geometry_3d_matches_torchvision_swin3d() {
    let io = load_fixture("swin3d_geometry.safetensors");
    let dev = device();
    let (mut indices, mut masks) = (0, 0);
    for case in ["c0", "c1", "c2", "c3", "c4", "c5"] {
        let key = |k: &str| format!("{case}.{k}");
        let (size, window, shift) =
            (triple(&io, &key("size")), triple(&io, &key("window")), triple(&io, &key("shift")));
        let (used, used_shift) = clamp_window_and_shift(size, window, shift);
        assert_eq!(used, triple(&io, &key("window_used")), "{case} window");
        assert_eq!(used_shift, triple(&io, &key("shift_used")), "{case} shift");
        let padded = padded_size(size, used);
        assert_eq!(padded, triple(&io, &key("padded")), "{case} padded");
        assert_eq!(relative_table_size(window) as i64, io[&key("table_size")].iter::<i64>().next().unwrap(), "{case}");
        // The fixture drops an index equal to one already stored (see the script).
        if let Some(full) = io.get(&key("relative_position_index")) {
            assert_eq!(relative_position_index(window), full.iter::<i64>().collect::<Vec<_>>(), "{case} index");
            indices += 1;
        }
        let used_index =
            io.get(&key("relative_position_index_used")).or_else(|| io.get(&key("relative_position_index")));
        if let Some(want) = used_index.filter(|d| d.num_elements() == window_len(used).pow(2)) {
            assert_eq!(
                clamped_relative_position_index(window, used),
                want.iter::<i64>().collect::<Vec<_>>(),
                "{case} used"
            );
            indices += 1;
        }
        if let Some(want) = io.get(&key("attn_mask")) {
            let want: Vec<f32> = want.iter::<i64>().map(|v| v as f32).collect();
            assert_eq!(shifted_window_mask(padded, used, used_shift), want, "{case} mask");
            masks += 1;
        } else {
            assert_eq!(used_shift, [0, 0, 0], "{case}: torchvision builds a mask whenever a shift is left");
        }
        let x: Tensor<5> = float(&io, &key("x"), &dev);
        let [b, t, h, w, c] = x.dims();
        let xp = x.pad(
            [(0, padded[0] - t), (0, padded[1] - h), (0, padded[2] - w), (0, 0)],
            burn::tensor::ops::PadMode::Constant(0.0),
        );
        let windows = window_partition_3d(xp.clone(), used);
        assert_eq!(windows.dims(), [b * num_windows(padded, used), window_len(used), c]);
        assert_close(&format!("{case} partition"), windows.clone(), float(&io, &key("windows"), &dev), 0.0);
        assert_close(&format!("{case} reverse"), window_reverse_3d(windows, used, padded), xp, 0.0);
    }
    assert!(indices >= 8 && masks == 5, "{indices} indices, {masks} masks checked");
}

/// A block's attention branch with given torchvision weights (`qkv`, `proj`, bias table).
fn block_with(
    io: &std::collections::BTreeMap<String, TensorData>,
    case: &str,
    window: &[usize],
    shift: &[usize],
) -> florence::image::block::SwinBlock {
    use burn::module::Param;
    let dev = device();
    let key = |k: &str| format!("{case}.{k}");
    let lin = |w: &str, b: &str| burn::nn::Linear {
        weight: Param::from_tensor(float::<2>(io, &key(w), &dev).transpose()),
        bias: Some(Param::from_tensor(float::<1>(io, &key(b), &dev))),
    };
    let mut block = florence::image::block::SwinBlock::new(4, 2, window, shift, shift, 4.0, true, 1e-5, &dev);
    block.attn.qkv = lin("qkv_weight", "qkv_bias");
    block.attn.proj = lin("proj_weight", "proj_bias");
    block.attn.relative_position_bias_table = Param::from_tensor(float(io, &key("relative_position_bias_table"), &dev));
    block
}

/// The shared block in 3D against torchvision's `ShiftedWindowAttention3d.forward` (pad, then
/// roll; window and shift clamped per forward; a clamped window's bias from `index[:N, :N]`),
/// and in 2D against torchvision's `ShiftedWindowAttention` (pad, then roll), the order the
/// timm fixtures in tests/parity.rs do not cover.
#[test]
fn block_layouts_match_torchvision() {
    use florence::image::layout::{BlockLayout, PadOrder};
    let io = load_fixture("swin3d_geometry.safetensors");
    let dev = device();
    for case in ["c0", "c1", "c2", "c3", "c4", "c5"] {
        let key = |k: &str| format!("{case}.{k}");
        let (window, shift) = (triple(&io, &key("window")), triple(&io, &key("shift")));
        let mut block = block_with(&io, case, &window, &shift);
        block.layout = BlockLayout::video_swin();
        let got = block.window_attention_3d(float(&io, &key("x"), &dev), None);
        assert_close(&format!("{case} swin3d attention"), got, float(&io, &key("attn_out"), &dev), F32_TOL);
    }
    let mut block = block_with(&io, "tv2d", &[4, 4], &[2, 2]);
    block.layout = BlockLayout { order: PadOrder::PadThenRoll, ..BlockLayout::default() };
    let got = block.window_attention_2d(float(&io, "tv2d.x", &dev), None);
    assert_close("tv2d pad-then-roll attention", got, float(&io, "tv2d.attn_out", &dev), F32_TOL);
    // The other order gives a different result on this 9x11 map (timm's order is checked
    // against timm in tests/parity.rs).
    block.layout.order = PadOrder::RollThenPad;
    let other = block.window_attention_2d(float(&io, "tv2d.x", &dev), None);
    let want: Tensor<4> = float(&io, "tv2d.attn_out", &dev);
    assert!((other - want).abs().max().into_scalar::<f32>() > 1e-2);
}
