//! Window attention at the stage shapes of `unicl-swin-t` and `unicl-swin-b` (224x224 input:
//! 56/28/14/7 maps in 7x7 windows, 64/16/4/1 windows per image, head dim 32, every odd block
//! shifted), forward and forward+backward, three implementations on the default device
//! (`FLORENCE_DEVICE`):
//! - `fused`: `florence::attention` (CubeCL kernels on wgpu/vulkan/metal/cuda; on flex the
//!   reference math on primitives, with the hand-written backward);
//! - `reference`: plain tensor ops (`matmul`, bias add, `softmax`, `matmul`);
//! - `burn`: Burn's built-in `attention(q, k, v, None, Some(bias), scale)` with the bias expanded
//!   to `[B * nW, H, N, N]` (the unfused fallback on CubeCL backends whenever a bias is present).
//!
//! The shifted-block form (bias plus mask, `[nW, H, N, N]`) is timed; it is the costlier one.
//! Batch: `FLORENCE_BENCH_BATCH` (default 8). A timing is a measurement, never a test assertion.
//!
//! ```sh
//! cargo bench --bench window_attention
//! FLORENCE_DEVICE=wgpu cargo bench --no-default-features --features wgpu --bench window_attention
//! ```

use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use florence::attention::{AttentionKind, combined_bias, window_attention};
use florence::ops::split_qkv;

/// `(model, stage, windows per image, heads)` at 224x224, window 7.
const SHAPES: &[(&str, usize, usize, usize)] = &[
    ("swin-t", 1, 64, 3),
    ("swin-t", 2, 16, 6),
    ("swin-t", 3, 4, 12),
    ("swin-t", 4, 1, 24),
    ("swin-b", 1, 64, 4),
    ("swin-b", 2, 16, 8),
    ("swin-b", 3, 4, 16),
    ("swin-b", 4, 1, 32),
];
const N: usize = 49;
const HD: usize = 32;

#[derive(Clone, Copy)]
enum Impl {
    Fused,
    Reference,
    Burn,
}

fn run(kind: Impl, qkv: Tensor<3>, bias: Tensor<4>, heads: usize) -> Tensor<3> {
    let scale = (HD as f64).powf(-0.5);
    match kind {
        Impl::Fused => window_attention(qkv, bias, heads, scale, AttentionKind::Fused),
        Impl::Reference => window_attention(qkv, bias, heads, scale, AttentionKind::Reference),
        Impl::Burn => {
            let [bw, n, _] = qkv.dims();
            let nwb = bias.dims()[0];
            let [q, k, v] = split_qkv(qkv, heads);
            let full = bias.unsqueeze_dim::<5>(0).expand([bw / nwb, nwb, heads, n, n]).reshape([bw, heads, n, n]);
            let opts = AttentionModuleOptions { scale: Some(scale), softcap: None, is_causal: false };
            florence::ops::merge_heads(attention(q, k, v, None, Some(full), opts))
        }
    }
}

fn bench(c: &mut Criterion) {
    let device = florence::device::default_device().expect("device");
    let batch: usize = std::env::var("FLORENCE_BENCH_BATCH").ok().and_then(|s| s.parse().ok()).unwrap_or(8);
    let mut g = c.benchmark_group(format!("window_attention_b{batch}"));
    g.sample_size(10);
    for &(model, stage, nw, heads) in SHAPES {
        let bw = batch * nw;
        let qkv = Tensor::<3>::random([bw, N, 3 * heads * HD], Distribution::Normal(0.0, 1.0), &device);
        let rel = Tensor::<3>::random([heads, N, N], Distribution::Normal(0.0, 1.0), &device);
        let mask = Tensor::<3>::random([nw, N, N], Distribution::Uniform(-1.0, 0.0), &device);
        let bias = combined_bias(rel, Some(mask));
        let id = format!("{model}-s{stage}");
        for (name, kind) in [("fused", Impl::Fused), ("reference", Impl::Reference), ("burn", Impl::Burn)] {
            g.bench_with_input(BenchmarkId::new(format!("forward/{name}"), &id), &(), |b, _| {
                b.iter(|| run(kind, qkv.clone(), bias.clone(), heads).into_data())
            });
            let ad = device.clone().autodiff();
            let qkv_ad = Tensor::<3>::from_data(qkv.to_data(), &ad);
            let bias_ad = Tensor::<4>::from_data(bias.to_data(), &ad);
            let upstream = Tensor::<3>::random([bw, N, heads * HD], Distribution::Normal(0.0, 1.0), &ad);
            g.bench_with_input(BenchmarkId::new(format!("forward_backward/{name}"), &id), &(), |b, _| {
                b.iter(|| {
                    let x = qkv_ad.clone().require_grad();
                    let out = run(kind, x.clone(), bias_ad.clone().require_grad(), heads);
                    let grads = (out * upstream.clone()).sum().backward();
                    x.grad(&grads).expect("gradient").into_data()
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
