//! One row of the CPU table of `scripts/bench/cpu_table.py`, timed in this process and printed as
//! one JSON line. The script runs the same row in PyTorch on the same weights, inputs and
//! threads, alternating the two, and prints the ratios; run it rather than this.
//!
//! ```sh
//! cargo build --release --example bench_cpu
//! target/release/examples/bench_cpu image --preset unicl-swin-t --weights W.safetensors --inputs IN.safetensors --batch 8
//! ```
//!
//! Rows (all after `--warmup` untimed runs, `--iters` timed ones; the median is reported):
//! * `image`: `encode_image` of `--batch` images of `inputs["images"]`.
//! * `text`: `encode_text` of the `inputs[--ids]` token rows; `--no-cut` runs every row at its
//!   full length (the reference's work), else the default end-of-text cut.
//! * `zeroshot`: `ZeroShotClassifier::build` for the first `--classes` ImageNet names with CLIP's
//!   7 templates, tokenizer included.
//! * `load`: `Florence::load` of `--weights` (time and the process's peak RSS after it).
//! * `train`: one optimiser step (forward, UniCL loss, backward, AdamW) of `--preset` on
//!   `inputs["images"]` and `inputs[--ids]`, random initial weights.
//!
//! A timing is a measurement, never a test assertion.

use std::time::Instant;

use burn::prelude::*;
use florence::train::{ContrastiveBatch, OptimizerConfig, StepOptions, data_parallel_gradients};
use florence::zeroshot::{Templates, ZeroShotClassifier, imagenet_classes};
use florence::{Florence, FlorenceConfig};

struct Args {
    row: String,
    preset: String,
    weights: Option<String>,
    inputs: Option<String>,
    ids: String,
    batch: usize,
    classes: usize,
    iters: usize,
    warmup: usize,
    cut: bool,
}

fn parse() -> anyhow::Result<Args> {
    let mut it = std::env::args().skip(1);
    let row = it.next().ok_or_else(|| anyhow::anyhow!("usage: bench_cpu ROW [options]"))?;
    let mut a = Args {
        row,
        preset: "unicl-swin-t".into(),
        weights: None,
        inputs: None,
        ids: "ids_short".into(),
        batch: 8,
        classes: 1000,
        iters: 5,
        warmup: 1,
        cut: true,
    };
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| anyhow::anyhow!("{flag} needs a value"));
        match flag.as_str() {
            "--preset" => a.preset = value()?,
            "--weights" => a.weights = Some(value()?),
            "--inputs" => a.inputs = Some(value()?),
            "--ids" => a.ids = value()?,
            "--batch" => a.batch = value()?.parse()?,
            "--classes" => a.classes = value()?.parse()?,
            "--iters" => a.iters = value()?.parse()?,
            "--warmup" => a.warmup = value()?.parse()?,
            "--no-cut" => a.cut = false,
            other => anyhow::bail!("unknown argument `{other}`"),
        }
    }
    Ok(a)
}

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<f64>().ok()? / 1024.0)
}

fn input<const D: usize>(path: &str, key: &str) -> anyhow::Result<TensorData> {
    let bytes = std::fs::read(path)?;
    let st = safetensors::SafeTensors::deserialize(&bytes)?;
    let t = st.tensor(key)?;
    let shape = t.shape().to_vec();
    anyhow::ensure!(shape.len() == D, "`{key}` has rank {}, not {D}", shape.len());
    Ok(match t.dtype() {
        safetensors::Dtype::F32 => TensorData::new(
            t.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect(),
            shape,
        ),
        safetensors::Dtype::I64 => TensorData::new(
            t.data().chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap())).collect(),
            shape,
        ),
        other => anyhow::bail!("`{key}`: unsupported dtype {other:?}"),
    })
}

/// Runs `f` `warmup` times untimed and `iters` times timed; the sorted times.
fn time(warmup: usize, iters: usize, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<Vec<f64>> {
    for _ in 0..warmup {
        f()?;
    }
    let mut ts = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        f()?;
        ts.push(t.elapsed().as_secs_f64());
    }
    ts.sort_by(f64::total_cmp);
    Ok(ts)
}

fn main() -> anyhow::Result<()> {
    let a = parse()?;
    let device = florence::device::default_device()?;
    let config = FlorenceConfig::preset(&a.preset)?;
    let load = |device: &Device| -> anyhow::Result<Florence> {
        Ok(match &a.weights {
            Some(w) => Florence::load(&config, w, device)?,
            None => config.init(device)?,
        })
    };
    let inputs = || a.inputs.as_deref().ok_or_else(|| anyhow::anyhow!("--inputs is needed for `{}`", a.row));
    let mut extra = serde_json::Map::new();
    let times = match a.row.as_str() {
        "image" => {
            let model = load(&device)?;
            let images = Tensor::<4>::from_data(input::<4>(inputs()?, "images")?, &device);
            let images = images.slice_dim(0, 0..a.batch);
            time(a.warmup, a.iters, || {
                model.encode_image(images.clone())?.into_data();
                Ok(())
            })?
        }
        "text" => {
            let mut model = load(&device)?;
            model.text_encoder.cut.enabled = a.cut;
            let ids = Tensor::<2, Int>::from_data(input::<2>(inputs()?, &a.ids)?, &device);
            time(a.warmup, a.iters, || {
                model.encode_text(ids.clone())?.into_data();
                Ok(())
            })?
        }
        "zeroshot" => {
            let mut model = load(&device)?;
            model.text_encoder.cut.enabled = a.cut;
            let tokenizer = florence::text::Tokenizer::clip()?.with_context_length(config.text.context_length);
            let labels: Vec<String> = imagenet_classes().into_iter().take(a.classes).collect();
            time(a.warmup, a.iters, || {
                let c = ZeroShotClassifier::build(
                    &model,
                    &tokenizer,
                    &labels,
                    &Templates::Simple,
                    256,
                    &mut florence::progress::Silent,
                )?;
                c.embeddings().clone().into_data();
                Ok(())
            })?
        }
        "load" => {
            let t = Instant::now();
            let model = load(&device)?;
            let s = t.elapsed().as_secs_f64();
            extra.insert("peak_rss_mib".into(), peak_rss_mib().into());
            extra.insert("params".into(), config.num_params().into());
            drop(model);
            vec![s]
        }
        "train" => {
            let plain = device.clone();
            let model = florence::train::canonical_param_ids(config.init(&plain.clone().autodiff())?).train();
            let images = Tensor::<4>::from_data(input::<4>(inputs()?, "train_images")?, &plain);
            let ids = Tensor::<2, Int>::from_data(input::<2>(inputs()?, &a.ids)?, &plain);
            let n = images.dims()[0];
            let ids = ids.slice_dim(0, 0..n);
            let data = ContrastiveBatch { images, ids, labels: (0..n as u64).collect() };
            let opt = OptimizerConfig {
                lr: 1e-4,
                min_lr: 0.0,
                warmup_steps: 0,
                total_steps: 1000,
                weight_decay: 0.05,
                betas: (0.9, 0.999),
                eps: 1e-8,
                clip_grad_norm: None,
            };
            let mut optim = opt.init(&model)?;
            let mut model = Some(model);
            let opts = StepOptions { max_scale: None, ..Default::default() };
            time(a.warmup, a.iters, || {
                let m = model.take().expect("model");
                let g = data_parallel_gradients(std::slice::from_ref(&m), &data, opts)?;
                let m = optim.step(1e-4, m, g.grads);
                let _ = m.scale_value();
                model = Some(m);
                Ok(())
            })?
        }
        other => anyhow::bail!("unknown row `{other}`"),
    };
    let median = times[times.len() / 2];
    let mut line = serde_json::Map::new();
    line.insert("row".into(), a.row.clone().into());
    line.insert("median_s".into(), median.into());
    line.insert("times_s".into(), times.into());
    line.extend(extra);
    println!("{}", serde_json::Value::Object(line));
    Ok(())
}
