//! Fused window attention on a GPU: parity against the reference ops on the device, then
//! timings of the kernel (fused vs reference tensor ops vs Burn's built-in `attention`) at the
//! `unicl-swin-b` stage shapes and of the whole `unicl-swin-b` image tower. Prints a markdown
//! table and writes JSON lines; `scripts/gpu/run.sh` runs it next to PyTorch on the same card.
//!
//! ```sh
//! cargo run --release --no-default-features --features wgpu --example gpu_attention -- \
//!     --backend wgpu --batch 64 --iters 20 --json results.jsonl
//! ```
//! Exit status 1 when a parity check fails. A timing is a measurement, never an assertion.

use std::io::Write;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{DType, Distribution};
use florence::FlorenceConfig;
use florence::attention::{AttentionKind, combined_bias, window_attention, window_attention_reference};
use florence::ops::{merge_heads, split_qkv};

struct Args {
    backend: String,
    batch: usize,
    iters: usize,
    json: Option<String>,
}

fn args() -> Result<Args> {
    let mut a = Args { backend: "wgpu".into(), batch: 64, iters: 20, json: None };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().with_context(|| format!("{k} needs a value"));
        match k.as_str() {
            "--backend" => a.backend = v()?,
            "--batch" => a.batch = v()?.parse()?,
            "--iters" => a.iters = v()?.parse()?,
            "--json" => a.json = Some(v()?),
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(a)
}

fn max_rel(got: Tensor<3>, want: Tensor<3>) -> f32 {
    let a: Vec<f32> = got.into_data().convert::<f32>().iter::<f32>().collect();
    let b: Vec<f32> = want.into_data().convert::<f32>().iter::<f32>().collect();
    let scale = b.iter().fold(1.0f32, |m, x| m.max(x.abs()));
    a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max) / scale
}

/// `(qkv, bias)` for `bw` windows of `n` tokens, shifted form (bias plus an `nw`-window mask).
fn inputs(bw: usize, nw: usize, n: usize, heads: usize, hd: usize, device: &Device) -> (Tensor<3>, Tensor<4>) {
    let qkv = Tensor::<3>::random([bw, n, 3 * heads * hd], Distribution::Uniform(-1.0, 1.0), device);
    let rel = Tensor::<3>::random([heads, n, n], Distribution::Uniform(-2.0, 2.0), device);
    // Swin's mask: 0 or -100.
    let u = Tensor::<3>::random([nw, n, n], Distribution::Uniform(0.0, 1.0), device);
    let mask = u.zeros_like().mask_fill(u.lower_elem(0.3), -100.0);
    (qkv, combined_bias(rel, Some(mask)))
}

fn burn_builtin(qkv: Tensor<3>, bias: Tensor<4>, heads: usize, scale: f64) -> Tensor<3> {
    let [bw, n, _] = qkv.dims();
    let nwb = bias.dims()[0];
    let [q, k, v] = split_qkv(qkv, heads);
    let full = bias.unsqueeze_dim::<5>(0).expand([bw / nwb, nwb, heads, n, n]).reshape([bw, heads, n, n]);
    let opts = AttentionModuleOptions { scale: Some(scale), softcap: None, is_causal: false };
    merge_heads(attention(q, k, v, None, Some(full), opts))
}

/// Median seconds of `iters` runs of `f` after 3 warm-ups, the device synchronised around each.
fn time(device: &Device, iters: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..3 {
        f();
    }
    device.sync().ok();
    let mut t: Vec<f64> = (0..iters)
        .map(|_| {
            let start = Instant::now();
            f();
            device.sync().ok();
            start.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn main() -> Result<()> {
    let args = args()?;
    let device = florence::device::device_by_name(&args.backend)?;
    let mut json = match &args.json {
        Some(p) => Some(std::fs::File::create(p)?),
        None => None,
    };
    let mut record = |line: String| {
        println!("{line}");
        if let Some(f) = json.as_mut() {
            writeln!(f, "{line}").ok();
        }
    };

    // 1. Parity on this device: 7x7 (Swin), 12x12 (Swin at 384) and 8x7x7 (video) windows.
    let mut failed = false;
    let ad = device.clone().autodiff();
    for (bw, nw, n, heads, hd) in [(12usize, 4usize, 49usize, 4usize, 32usize), (6, 2, 144, 3, 32), (2, 1, 392, 2, 32)]
    {
        let scale = (hd as f64).powf(-0.5);
        let (qkv, bias) = inputs(bw, nw, n, heads, hd, &device);
        let want = window_attention_reference(qkv.clone(), bias.clone(), heads, scale);
        let fwd =
            max_rel(window_attention(qkv.clone(), bias.clone(), heads, scale, AttentionKind::Fused), want.clone());
        let f16 = if device.supports_dtype(DType::F16) {
            let got = window_attention(
                qkv.clone().cast(DType::F16),
                bias.clone().cast(DType::F16),
                heads,
                scale,
                AttentionKind::Fused,
            );
            max_rel(got.cast(DType::F32), want)
        } else {
            f32::NAN
        };
        let qkv_ad = Tensor::<3>::from_data(qkv.to_data(), &ad);
        let bias_ad = Tensor::<4>::from_data(bias.to_data(), &ad);
        let up = Tensor::<3>::random([bw, n, heads * hd], Distribution::Uniform(-1.0, 1.0), &ad);
        let grads = |kind| {
            let x = qkv_ad.clone().require_grad();
            let b = bias_ad.clone().require_grad();
            let g = (window_attention(x.clone(), b.clone(), heads, scale, kind) * up.clone()).sum().backward();
            (x.grad(&g).unwrap(), b.grad(&g).unwrap().reshape([nw, heads, n * n]))
        };
        let (fq, fb) = grads(AttentionKind::Fused);
        let (rq, rb) = grads(AttentionKind::Reference);
        let (dq, db) = (max_rel(fq, rq), max_rel(fb, rb));
        let ok = fwd <= 1e-4 && dq <= 1e-4 && db <= 1e-4 && (f16.is_nan() || f16 <= 1e-2);
        failed |= !ok;
        record(format!(
            r#"{{"kind":"parity","backend":"{}","windows":{bw},"tokens":{n},"heads":{heads},"hd":{hd},"forward_f32":{fwd:e},"forward_f16":{},"grad_qkv":{dq:e},"grad_bias":{db:e},"ok":{ok}}}"#,
            args.backend,
            if f16.is_nan() { "null".to_string() } else { format!("{f16:e}") }
        ));
    }

    // 2. The kernel at the unicl-swin-b stage shapes (batch `--batch`, 224x224, shifted form).
    let scale = 32f64.powf(-0.5);
    for (stage, nw, heads) in [(1usize, 64usize, 4usize), (2, 16, 8), (3, 4, 16), (4, 1, 32)] {
        let bw = args.batch * nw;
        let (qkv, bias) = inputs(bw, nw, 49, heads, 32, &device);
        let qkv_ad = Tensor::<3>::from_data(qkv.to_data(), &ad);
        let bias_ad = Tensor::<4>::from_data(bias.to_data(), &ad);
        let up = Tensor::<3>::random([bw, 49, heads * 32], Distribution::Uniform(-1.0, 1.0), &ad);
        for name in ["fused", "reference", "burn"] {
            let run = |q: Tensor<3>, b: Tensor<4>| match name {
                "fused" => window_attention(q, b, heads, scale, AttentionKind::Fused),
                "reference" => window_attention(q, b, heads, scale, AttentionKind::Reference),
                _ => burn_builtin(q, b, heads, scale),
            };
            let fwd = time(&device, args.iters, || {
                let _ = run(qkv.clone(), bias.clone());
            });
            let bwd = time(&device, args.iters, || {
                let x = qkv_ad.clone().require_grad();
                let g = (run(x.clone(), bias_ad.clone().require_grad()) * up.clone()).sum().backward();
                let _ = x.grad(&g);
            });
            record(format!(
                r#"{{"kind":"kernel","backend":"{}","model":"unicl-swin-b","stage":{stage},"batch":{},"windows":{bw},"heads":{heads},"impl":"{name}","forward_ms":{:.4},"forward_backward_ms":{:.4}}}"#,
                args.backend,
                args.batch,
                fwd * 1e3,
                bwd * 1e3
            ));
        }
    }

    // 3. The whole unicl-swin-b image tower (random weights), forward.
    let config = FlorenceConfig::preset("unicl-swin-b")?;
    let tower = config.image.init(&device)?;
    let images = Tensor::<4>::random([args.batch, 3, 224, 224], Distribution::Normal(0.0, 1.0), &device);
    for kind in [AttentionKind::Fused, AttentionKind::Reference] {
        let t = tower.clone().with_attention(kind);
        let secs = time(&device, args.iters.min(10), || {
            let _ = t.forward_features(images.clone()).expect("forward");
        });
        record(format!(
            r#"{{"kind":"tower","backend":"{}","model":"unicl-swin-b","batch":{},"attention":"{kind:?}","forward_ms":{:.3},"images_per_s":{:.1}}}"#,
            args.backend,
            args.batch,
            secs * 1e3,
            args.batch as f64 / secs
        ));
    }
    if failed {
        bail!("a parity check failed (see the parity lines above)");
    }
    Ok(())
}
