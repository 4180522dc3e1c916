//! Training throughput and peak memory of one configuration, on random data, in its own process
//! (peak resident memory is per process). `scripts/bench/train_throughput.sh` runs the matrix
//! recorded in BENCHMARKS.md.
//!
//! ```sh
//! cargo run --release --example train_throughput -- --preset tiny --batch 64 --steps 5
//! cargo run --release --example train_throughput -- --preset coswin-t --batch 16 --steps 3 --grad-cache 4 --checkpointing
//! ```
//!
//! A step is the whole optimiser step: forward, UniCL loss, backward (through the gradient cache
//! when `--grad-cache` is given), AdamW. Data is random (images N(0,1), token ids with a BOS/EOS
//! frame), so loading is not timed.

use std::time::Instant;

use burn::prelude::*;
use burn::tensor::Distribution;
use florence::FlorenceConfig;
use florence::train::{ContrastiveBatch, OptimizerConfig, StepOptions, data_parallel_gradients};

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn main() -> anyhow::Result<()> {
    let (mut preset, mut batch, mut steps, mut chunk, mut ckpt) = ("tiny".to_string(), 32usize, 5usize, None, false);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or_else(|| anyhow::anyhow!("{a} needs a value"));
        match a.as_str() {
            "--preset" => preset = value()?,
            "--batch" => batch = value()?.parse()?,
            "--steps" => steps = value()?.parse()?,
            "--grad-cache" => chunk = Some(value()?.parse()?),
            "--checkpointing" => ckpt = true,
            other => anyhow::bail!("unknown argument `{other}`"),
        }
    }
    let config = FlorenceConfig::preset(&preset)?;
    let plain = florence::device::default_device()?;
    let mut device = plain.clone().autodiff();
    if ckpt {
        device = device.gradient_checkpointing();
    }
    let model = florence::train::canonical_param_ids(config.init(&device)?).train();
    let opt = OptimizerConfig {
        lr: 1e-4,
        min_lr: 0.0,
        warmup_steps: 0,
        total_steps: steps + 1,
        weight_decay: 0.05,
        betas: (0.9, 0.999),
        eps: 1e-8,
        clip_grad_norm: None,
    };
    let mut optim = opt.init(&model)?;
    let s = config.image.image_size;
    let (l, vocab) = (config.text.context_length, config.text.vocab_size as i64);
    let mut ids = vec![vocab - 1; batch * l];
    for r in 0..batch {
        ids[r * l] = vocab - 2;
        for j in 1..(4 + r % 8).min(l - 1) {
            ids[r * l + j] = ((r * 31 + j * 17) as i64) % (vocab - 2);
        }
    }
    let data = ContrastiveBatch {
        images: Tensor::<4>::random([batch, 3, s, s], Distribution::Normal(0.0, 1.0), &plain),
        ids: Tensor::<2, Int>::from_data(TensorData::new(ids, [batch, l]), &plain),
        labels: (0..batch as u64).collect(),
    };
    let opts = StepOptions { chunk, max_scale: Some(100.0), ..Default::default() };
    let mut model = model;
    let mut times = Vec::new();
    for step in 0..=steps {
        let t0 = Instant::now();
        let g = data_parallel_gradients(&[model.clone()], &data, opts)?;
        model = optim.step(opt.lr_at(step), model, g.grads);
        let _ = model.scale_value(); // wait for the step to finish
        if step > 0 {
            times.push(t0.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "preset={preset} batch={batch} grad_cache={} checkpointing={ckpt} steps={steps}: median step {median:.3} s, {:.1} images/s, peak RSS {} MiB",
        chunk.map_or("off".to_string(), |c| c.to_string()),
        batch as f64 / median,
        peak_rss_mib().map_or("?".into(), |m| format!("{m:.0}"))
    );
    Ok(())
}
