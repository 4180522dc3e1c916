//! The fused window attention (`florence::attention`) against the reference tensor ops, forward
//! and gradients, on the device `FLORENCE_DEVICE` names (flex by default; CI also runs this
//! file on wgpu over lavapipe, where the CubeCL kernels run).
//!
//! Inputs are random and fresh each run (the seed is printed; `FLORENCE_TEST_SEED` replays one).
//!
//! Tolerances, relative to the largest magnitude of the expected tensor (outputs are O(1);
//! gradients reach O(10) on the 392-token window):
//! - f32: 1e-4, the project's f32 bound. The two paths differ in summation order only (the
//!   kernels accumulate one score at a time in f32, the reference goes through matmul), measured
//!   around 1e-6.
//! - f16: 1e-2. Storage rounds every input and output to 11 significant bits (relative 4.9e-4),
//!   the reference also rounds its `[.., N, N]` scores and probabilities, and softmax turns a
//!   score error `e` into an output error of about `e` times the value spread, so an f16 path
//!   lands at a few 1e-3 from the f32 answer; both f16 paths are checked against f32.

mod common;

use burn::prelude::*;
use burn::tensor::DType;
use common::device;
use florence::attention::{AttentionKind, combined_bias, window_attention, window_attention_reference};
use florence::data::Rng;
use florence::image::geometry::shifted_window_mask;

const F32_REL: f32 = 1e-4;
const F16_REL: f32 = 1e-2;

fn seed() -> u64 {
    let seed = std::env::var("FLORENCE_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
    });
    eprintln!("FLORENCE_TEST_SEED={seed}");
    seed
}

fn on_gpu_backend() -> bool {
    florence::device::default_name().map(|n| n != "flex" && n != "tch").unwrap_or(false)
}

fn random<const D: usize>(rng: &mut Rng, shape: [usize; D], amp: f32, device: &Device) -> Tensor<D> {
    let n = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.uniform(-amp, amp)).collect();
    Tensor::from_data(TensorData::new(v, shape), device)
}

/// Max |got - want| / max(1, max |want|).
fn rel_err<const D: usize>(label: &str, got: Tensor<D>, want: Tensor<D>, tol: f32) -> f32 {
    assert_eq!(got.dims(), want.dims(), "{label}: shape");
    let a: Vec<f32> = got.into_data().convert::<f32>().iter::<f32>().collect();
    let b: Vec<f32> = want.into_data().convert::<f32>().iter::<f32>().collect();
    let scale = b.iter().fold(1.0f32, |m, x| m.max(x.abs()));
    let err = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max) / scale;
    eprintln!("{label}: max relative error {err:.2e} (scale {scale:.2})");
    assert!(err.is_finite() && err <= tol, "{label}: {err:e} > {tol:e}");
    err
}

/// One configuration: `batch` images of `nw` windows of `wh x ww` tokens, `heads` heads of
/// `hd` dims, shifted (bias plus a real Swin mask) or not.
#[derive(Debug, Clone, Copy)]
struct Case {
    batch: usize,
    window: (usize, usize),
    /// Windows per image as (rows, cols) of windows.
    grid: (usize, usize),
    heads: usize,
    hd: usize,
    shifted: bool,
}

impl Case {
    fn tokens(&self) -> usize {
        self.window.0 * self.window.1
    }
    fn windows(&self) -> usize {
        self.batch * self.grid.0 * self.grid.1
    }
    /// `(qkv, bias)`: q/k/v uniform in +-1 (scores of O(1) after scaling), a bias like a trained
    /// table (+-2), and Swin's 0/-100 mask for a map of `grid x window`.
    fn inputs(&self, rng: &mut Rng, device: &Device) -> (Tensor<3>, Tensor<4>) {
        let (n, c) = (self.tokens(), self.heads * self.hd);
        let qkv = random(rng, [self.windows(), n, 3 * c], 1.0, device);
        let bias = random(rng, [self.heads, n, n], 2.0, device);
        let mask = self.shifted.then(|| {
            let (hp, wp) = (self.grid.0 * self.window.0, self.grid.1 * self.window.1);
            let m =
                shifted_window_mask([hp, wp], [self.window.0, self.window.1], [self.window.0 / 2, self.window.1 / 2]);
            Tensor::from_data(TensorData::new(m, [self.grid.0 * self.grid.1, n, n]), device)
        });
        (qkv, combined_bias(bias, mask))
    }
    fn scale(&self) -> f64 {
        (self.hd as f64).powf(-0.5)
    }
}

/// Windows of 49 (Swin, 7x7), 144 (12x12, Swin at 384) and 392 tokens (video, 8x7x7 as one
/// window), head dims of every preset (12, 16, 32), with and without the shift mask, batch
/// sizes that are not powers of two. wgpu (lavapipe in CI) runs a smaller set: each shape
/// JIT-compiles its kernels on a software rasteriser.
fn cases() -> Vec<Case> {
    let c = |batch, window, grid, heads, hd, shifted| Case { batch, window, grid, heads, hd, shifted };
    let mut v = vec![c(3, (7, 7), (2, 2), 3, 32, true), c(1, (12, 12), (1, 2), 2, 16, false)];
    if on_gpu_backend() {
        v.push(c(1, (8, 49), (1, 1), 1, 32, false));
    } else {
        v.extend([
            c(5, (7, 7), (1, 1), 4, 32, false),
            c(3, (4, 4), (2, 3), 2, 12, true),
            c(2, (12, 12), (2, 2), 1, 32, true),
            c(1, (8, 49), (1, 1), 2, 16, false),
        ]);
    }
    v
}

#[test]
fn fused_forward_matches_reference() {
    let dev = device();
    let mut rng = Rng::new(seed());
    for case in cases() {
        let (qkv, bias) = case.inputs(&mut rng, &dev);
        let want = window_attention_reference(qkv.clone(), bias.clone(), case.heads, case.scale());
        let got = window_attention(qkv, bias, case.heads, case.scale(), AttentionKind::Fused);
        rel_err(&format!("forward {case:?}"), got, want, F32_REL);
    }
}

/// Gradients of `sum(out * g)` for a random `g`, with respect to `qkv` and the (combined) bias:
/// the fused op's hand-written backward against autodiff through the reference ops. With
/// gradient checkpointing (Burn's balanced strategy) too, where the op is compute-bound and its
/// parents are retrieved from the checkpointer.
#[test]
fn fused_gradients_match_reference() {
    let plain = device();
    let mut rng = Rng::new(seed());
    let mut all = cases();
    if on_gpu_backend() {
        all.truncate(2);
    }
    for (i, case) in all.into_iter().enumerate() {
        let checkpointing = i % 2 == 1;
        let dev =
            if checkpointing { plain.clone().autodiff().gradient_checkpointing() } else { plain.clone().autodiff() };
        let (qkv, bias) = case.inputs(&mut rng, &dev);
        let upstream = random(&mut rng, [case.windows(), case.tokens(), case.heads * case.hd], 1.0, &dev);
        let grads = |kind: AttentionKind| {
            let qkv = qkv.clone().require_grad();
            let bias = bias.clone().require_grad();
            let out = window_attention(qkv.clone(), bias.clone(), case.heads, case.scale(), kind);
            let g = (out * upstream.clone()).sum().backward();
            (qkv.grad(&g).expect("qkv gradient"), bias.grad(&g).expect("bias gradient"))
        };
        let (fq, fb) = grads(AttentionKind::Fused);
        let (rq, rb) = grads(AttentionKind::Reference);
        let label = format!("{case:?} checkpointing={checkpointing}");
        rel_err(&format!("d qkv {label}"), fq, rq, F32_REL);
        rel_err(&format!("d bias {label}"), fb, rb, F32_REL);
    }
}

/// The bias gradient reaches the relative position table through the gather (`select`) in
/// `WindowAttention::relative_position_bias`, and the mask (a constant) gets none.
#[test]
fn bias_gradient_flows_to_the_table() {
    if on_gpu_backend() {
        // A property of the module's autodiff graph, not of the kernels (covered above);
        // it costs a minute of shader compilation on lavapipe.
        eprintln!("skipped on a GPU backend");
        return;
    }
    let dev = device().autodiff();
    let mut rng = Rng::new(seed());
    let case = Case { batch: 2, window: (4, 4), grid: (1, 2), heads: 2, hd: 16, shifted: true };
    let attn = florence::image::attention::WindowAttention::new(32, 2, &[4, 4], true, &dev);
    let x = random(&mut rng, [case.windows(), 16, 32], 1.0, &dev);
    let mask: Tensor<3> =
        Tensor::from_data(TensorData::new(shifted_window_mask([4, 8], [4, 4], [2, 2]), [2, 16, 16]), &dev);
    let grads = |kind: AttentionKind| {
        let mut a = attn.clone();
        a.attention = kind;
        let g = a.forward(x.clone(), Some(mask.clone())).sum().backward();
        a.relative_position_bias_table.val().grad(&g).expect("table gradient")
    };
    rel_err("d table", grads(AttentionKind::Fused), grads(AttentionKind::Reference), F32_REL);
}

/// f16 storage: both paths against the f32 answer (where the backend has f16).
#[test]
fn fused_forward_in_f16() {
    let dev = device();
    if !dev.supports_dtype(DType::F16) {
        eprintln!("skipped: this device has no f16");
        return;
    }
    let mut rng = Rng::new(seed());
    for case in cases().into_iter().take(if on_gpu_backend() { 1 } else { 2 }) {
        let (qkv, bias) = case.inputs(&mut rng, &dev);
        let want = window_attention_reference(qkv.clone(), bias.clone(), case.heads, case.scale());
        let (qkv16, bias16) = (qkv.cast(DType::F16), bias.cast(DType::F16));
        for kind in [AttentionKind::Fused, AttentionKind::Reference] {
            let got = window_attention(qkv16.clone(), bias16.clone(), case.heads, case.scale(), kind);
            assert_eq!(got.dtype(), DType::F16);
            rel_err(&format!("f16 {kind:?} {case:?}"), got.cast(DType::F32), want.clone(), F16_REL);
        }
    }
}

/// f16 gradients: both paths' gradients in f16 against the f32 reference gradients.
#[test]
fn fused_gradients_in_f16() {
    let plain = device();
    if !plain.supports_dtype(DType::F16) {
        eprintln!("skipped: this device has no f16");
        return;
    }
    let dev = plain.autodiff();
    let mut rng = Rng::new(seed());
    let case = cases()[0];
    let (qkv, bias) = case.inputs(&mut rng, &dev);
    let upstream = random(&mut rng, [case.windows(), case.tokens(), case.heads * case.hd], 1.0, &dev);
    let grads = |kind: AttentionKind, dtype: DType| {
        let x = qkv.clone().cast(dtype).require_grad();
        let b = bias.clone().cast(dtype).require_grad();
        let out = window_attention(x.clone(), b.clone(), case.heads, case.scale(), kind);
        let g = (out.cast(DType::F32) * upstream.clone()).sum().backward();
        (x.grad(&g).expect("qkv gradient").cast(DType::F32), b.grad(&g).expect("bias gradient").cast(DType::F32))
    };
    let (wq, wb) = grads(AttentionKind::Reference, DType::F32);
    for kind in [AttentionKind::Fused, AttentionKind::Reference] {
        let (q, b) = grads(kind, DType::F16);
        rel_err(&format!("f16 d qkv {kind:?}"), q, wq.clone(), F16_REL);
        rel_err(&format!("f16 d bias {kind:?}"), b, wb.clone(), F16_REL);
    }
}

/// A whole tiny CoSwin image tower gives the same embeddings with the fused and the reference
/// attention (shifted and unshifted blocks, windows clamped at the last stage).
#[test]
fn whole_tower_fused_equals_reference() {
    let dev = device();
    let config = florence::config::FlorenceConfig::preset("tiny-coswin").unwrap();
    let fused = config.image.init(&dev).unwrap();
    let reference = fused.clone().with_attention(AttentionKind::Reference);
    let mut rng = Rng::new(seed());
    let images = random(&mut rng, [3, 3, 64, 64], 2.0, &dev);
    let a = fused.forward_features(images.clone()).unwrap();
    let b = reference.forward_features(images).unwrap();
    rel_err("tiny-coswin image features", a, b, F32_REL);
}
