//! The trainer end to end on a tiny model: mixed image-label and image-text data with a corrupt
//! file, gradient accumulation and the gradient cache; a run stopped and resumed reproduces the
//! uninterrupted run's parameters exactly; checkpoints, metrics and the plot are written.

use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use florence::data::SourceSpec;
use florence::progress::Recorder;
use florence::train::{OptimizerConfig, TrainConfig, Trainer, latest_checkpoint};
use florence::{Florence, FlorenceError};
use image::{Rgb, RgbImage};

const COLORS: [(&str, [u8; 3]); 4] =
    [("red", [220, 30, 30]), ("green", [30, 200, 40]), ("blue", [30, 40, 220]), ("yellow", [230, 220, 20])];

/// A small dataset: a class folder of coloured squares, a JSONL caption file, a CSV caption file
/// and one truncated PNG among the captions.
fn dataset(root: &Path) {
    let _ = std::fs::remove_dir_all(root);
    for (k, (name, rgb)) in COLORS.iter().enumerate() {
        let dir = root.join("classes").join(format!("{name} square"));
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..3u32 {
            let img = RgbImage::from_fn(40 + i * 7, 36, |x, y| {
                if (8..28).contains(&x) && (8..28).contains(&y) {
                    Rgb(*rgb)
                } else {
                    Rgb([(k as u8) * 20 + 90, 110, 120])
                }
            });
            img.save(dir.join(format!("{i}.png"))).unwrap();
        }
    }
    let caps = root.join("captions");
    std::fs::create_dir_all(caps.join("img")).unwrap();
    let mut jsonl = String::new();
    let mut csv = String::from("image,caption\n");
    for (k, (name, rgb)) in COLORS.iter().enumerate() {
        let img = RgbImage::from_fn(48, 48, |x, _| if x < 24 { Rgb(*rgb) } else { Rgb([128, 128, 128]) });
        img.save(caps.join("img").join(format!("{k}.png"))).unwrap();
        jsonl.push_str(&format!("{{\"image\": \"img/{k}.png\", \"caption\": \"a {name} half on the left\"}}\n"));
        csv.push_str(&format!("img/{k}.png,\"{name}, on the left\"\n"));
    }
    // A truncated file: skipped and counted, never fatal.
    let good = std::fs::read(caps.join("img").join("0.png")).unwrap();
    std::fs::write(caps.join("img").join("broken.png"), &good[..good.len() / 2]).unwrap();
    jsonl.push_str("{\"image\": \"img/broken.png\", \"caption\": \"a broken file\"}\n");
    std::fs::write(caps.join("captions.jsonl"), jsonl).unwrap();
    std::fs::write(caps.join("captions.csv"), csv).unwrap();
}

fn config(root: &Path, output: &str, total: usize) -> TrainConfig {
    let toml = format!(
        r#"
model = "tiny-clip"
output = "{output}"
batch_size = 6
accumulation = 2
grad_cache_chunk = 4
drop_path_rate = 0.3
text_drop_path_rate = 0.2
seed = 11
checkpoint_every = 2
keep_checkpoints = 2
templates = "simple"
workers = 2
[[data]]
kind = "folder"
path = "classes"
[[data]]
kind = "jsonl"
path = "captions/captions.jsonl"
[[data]]
kind = "csv"
path = "captions/captions.csv"
[augment]
scale = [0.5, 1.0]
hflip = 0.0
[optimizer]
lr = 2e-3
warmup_steps = 1
total_steps = {total}
weight_decay = 0.05
[eval]
folder = "classes"
every = 2
"#
    );
    let _ = root;
    TrainConfig::parse(&toml, true).unwrap()
}

fn params<M: Module>(model: &M) -> Vec<f32> {
    struct Flat(Vec<f32>);
    impl ModuleVisitor for Flat {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            self.0.extend(p.val().into_data().iter::<f32>());
        }
    }
    let mut f = Flat(Vec::new());
    model.visit(&mut f);
    f.0
}

/// Fresh models draw their initial weights from the device's seeded RNG, which every test in this
/// binary shares: the tests take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn root(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("florence-trainer-{name}-{}", std::process::id()))
}

#[test]
fn resume_reproduces_an_uninterrupted_run() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let root = root("resume");
    dataset(&root);

    // Uninterrupted: 4 optimiser steps of 2 accumulated batches of 6.
    let mut a = Trainer::new(config(&root, "run-a", 4), &root).unwrap();
    // Stochastic depth is on in this run, so its draws must replay on resume too.
    assert_eq!((a.model_config().image.drop_path_rate, a.model_config().text.drop_path_rate), (0.3, 0.2));
    let mut rec = Recorder::default();
    let summary = a.run(None, &mut rec).unwrap();
    assert_eq!(summary.step, 4);
    assert!(summary.eval.is_some());
    assert_eq!(rec.done, 4);
    let full = params(a.model());

    // Interrupted after step 2 (a checkpoint step), then resumed in a new trainer.
    let mut b = Trainer::new(config(&root, "run-b", 4), &root).unwrap();
    assert_eq!(
        params(b.model()),
        params(&Trainer::new(config(&root, "run-c", 4), &root).unwrap().model().clone()),
        "same seed, same initial weights"
    );
    b.run(Some(2), &mut Recorder::default()).unwrap();
    drop(b);
    let mut b = Trainer::resume(config(&root, "run-b", 4), &root).unwrap();
    assert_eq!(b.step(), 2);
    b.run(None, &mut Recorder::default()).unwrap();
    let resumed = params(b.model());
    assert_eq!(full.len(), resumed.len());
    let worst = full.iter().zip(&resumed).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    eprintln!("resumed vs uninterrupted: max abs parameter difference {worst:e} over {} values", full.len());
    assert_eq!(worst, 0.0, "a resumed run must reproduce the uninterrupted one bit for bit");

    // The run folder: pruned checkpoints, metrics for every step, a plot, the final weights.
    let out = root.join("run-a");
    let ckpts: Vec<_> = std::fs::read_dir(out.join("checkpoints"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .collect();
    assert_eq!(ckpts.len(), 2, "keep_checkpoints = 2");
    assert!(latest_checkpoint(&out).unwrap().unwrap().ends_with("step-0000004"));
    let lines = florence::train::metrics::read_metrics(&out.join("metrics.jsonl")).unwrap();
    assert_eq!(lines.iter().map(|l| l.step).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    assert!(lines.iter().all(|l| l.loss.is_some_and(f32::is_finite)));
    assert!(lines.iter().filter(|l| l.zero_shot_top1.is_some()).count() == 2);
    // The broken file is drawn in some batch of the 8 and counted.
    assert!(lines.iter().map(|l| l.skipped.unwrap()).sum::<usize>() >= 1);
    assert!(rec.warnings.iter().any(|w| w.contains("broken.png")));
    let png = image::open(out.join("metrics.png")).unwrap();
    assert_eq!(png.width(), 960);
    let final_model =
        Florence::load(a.model_config(), out.join("final.safetensors"), &florence::device::default_device().unwrap())
            .unwrap();
    let reloaded = params(&final_model);
    assert!(reloaded.iter().zip(&full).all(|(x, y)| x == y));
    let b_lines = florence::train::metrics::read_metrics(&root.join("run-b").join("metrics.jsonl")).unwrap();
    assert_eq!(b_lines.iter().map(|l| l.step).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn bad_runs_are_typed_errors() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let root = root("errors");
    dataset(&root);
    let mut t = Trainer::new(config(&root, "run", 2), &root).unwrap();
    t.run(Some(2), &mut Recorder::default()).unwrap();
    // Starting over in a folder with a run in it.
    assert!(matches!(Trainer::new(config(&root, "run", 2), &root), Err(FlorenceError::Config(_))));
    // Resuming with a different config.
    let mut other = config(&root, "run", 2);
    other.batch_size = 4;
    let e = Trainer::resume(other, &root).err().unwrap().to_string();
    assert!(e.contains("on resume only `optimizer.total_steps`"), "{e}");
    // Logging and cadence settings may change on resume.
    let mut relaxed = config(&root, "run", 3);
    relaxed.eval = None;
    relaxed.checkpoint_every = 1;
    assert_eq!(Trainer::resume(relaxed, &root).unwrap().step(), 2);
    // Resuming where nothing was saved.
    assert!(Trainer::resume(config(&root, "nothing-here", 2), &root).is_err());
    // Missing data.
    let mut c = config(&root, "run2", 2);
    c.data = vec![SourceSpec::Jsonl { path: "nope.jsonl".into() }];
    assert!(Trainer::new(c, &root).is_err());
    // Config checks.
    for bad in ["batch_size = 1", "accumulation = 0", "grad_cache_chunk = 0", "unknown_field = 1"] {
        let text = format!(
            "model = \"tiny-clip\"\noutput = \"o\"\nbatch_size = 4\n{bad}\n[[data]]\nkind = \"folder\"\npath = \"x\"\n[optimizer]\nlr = 1e-3\ntotal_steps = 2\n"
        );
        let text = text.replacen("batch_size = 4\nbatch_size = 1", "batch_size = 1", 1);
        assert!(TrainConfig::parse(&text, true).is_err(), "{bad}");
    }
    let _ = OptimizerConfig::validate;
    std::fs::remove_dir_all(&root).ok();
}

/// The trainer with two replicas (data parallel over flex's one device) and gradient
/// checkpointing follows the single-device run: step 1 starts from the same weights, so its loss
/// is the same up to summation order; step 2's loss stays close (AdamW amplifies noise-level
/// gradient differences in the sign of near-zero components, so parameters are not compared).
#[test]
fn data_parallel_and_checkpointing_follow_the_single_device_run() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let root = root("dp");
    dataset(&root);
    let mut single = config(&root, "single", 2);
    single.eval = None;
    let mut dp = config(&root, "dp", 2);
    dp.eval = None;
    dp.devices = vec!["flex".into(), "flex".into()];
    dp.gradient_checkpointing = true;
    for c in [single, dp] {
        Trainer::new(c, &root).unwrap().run(None, &mut Recorder::default()).unwrap();
    }
    let losses = |run: &str| -> Vec<f32> {
        florence::train::metrics::read_metrics(&root.join(run).join("metrics.jsonl"))
            .unwrap()
            .iter()
            .map(|l| l.loss.unwrap())
            .collect()
    };
    let (a, b) = (losses("single"), losses("dp"));
    eprintln!("single device {a:?}, two replicas + checkpointing {b:?}");
    assert!((a[0] - b[0]).abs() < 1e-4 && (a[1] - b[1]).abs() < 1e-3, "{a:?} vs {b:?}");
    std::fs::remove_dir_all(&root).ok();
}

/// A task that is not UniCL, to show the trainer is generic: least-squares regression of
/// `y = 2x - 1` by one `Linear(1, 1)`, its batches a pure function of their index.
struct Regression;

impl florence::train::Task for Regression {
    type Model = burn::nn::Linear;
    type Batch = Vec<(f32, f32)>;
    type Eval = f32;

    fn init_model(&self, device: &Device) -> florence::Result<burn::nn::Linear> {
        Ok(burn::nn::LinearConfig::new(1, 1).init(device))
    }
    fn load_weights(&self, model: &mut burn::nn::Linear, path: &Path) -> florence::Result<()> {
        florence::checkpoint::loader::load_module(model, path, &florence::checkpoint::loader::KeyMap::default())
            .map(|_| ())
    }
    fn save_weights(&self, model: &burn::nn::Linear, path: &Path, _: burn::tensor::DType) -> florence::Result<()> {
        use burn::store::{ModuleSnapshot, SafetensorsStore};
        let mut store = SafetensorsStore::from_file(path);
        model.save_into(&mut store).map_err(|e| FlorenceError::Input(e.to_string()))
    }
    fn dataset_len(&self) -> usize {
        1000
    }
    fn load_batch(&self, index: u64) -> florence::Result<Vec<(f32, f32)>> {
        Ok((0..8).map(|i| ((index * 8 + i) % 17) as f32 / 8.0 - 1.0).map(|x| (x, 2.0 * x - 1.0)).collect())
    }
    fn batch_examples<'a>(&self, batch: &'a Vec<(f32, f32)>) -> (usize, &'a [florence::files::Skipped]) {
        (batch.len(), &[])
    }
    fn gradients(
        &self,
        replicas: &[burn::nn::Linear],
        batch: &Vec<(f32, f32)>,
        ctx: florence::train::BatchContext,
    ) -> florence::Result<florence::train::StepGradients> {
        let w = ctx.loss_weight;
        let m = &replicas[0];
        let dev = m.weight.val().device();
        let x = Tensor::<2>::from_data(
            TensorData::new(batch.iter().map(|p| p.0).collect::<Vec<_>>(), [batch.len(), 1]),
            &dev,
        );
        let y = Tensor::<2>::from_data(
            TensorData::new(batch.iter().map(|p| p.1).collect::<Vec<_>>(), [batch.len(), 1]),
            &dev,
        );
        let loss = (m.forward(x) - y).powi_scalar(2).mean();
        let value = loss.clone().into_scalar::<f32>();
        let grads = burn::optim::GradientsParams::from_grads((loss * w).backward(), m);
        Ok(florence::train::StepGradients { loss: value, grads })
    }
    fn eval_every(&self) -> Option<usize> {
        Some(3)
    }
    fn evaluate(
        &self,
        model: &burn::nn::Linear,
        _: &mut dyn florence::progress::Progress,
    ) -> florence::Result<Option<f32>> {
        Ok(Some((model.weight.val().into_scalar::<f32>() - 2.0).abs()))
    }
}

#[test]
fn the_trainer_runs_any_task_with_exact_resume() {
    let root = std::env::temp_dir().join(format!("florence-generic-task-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let cfg = |out: &str| {
        TrainConfig::parse(
            &format!(
                "model = \"-\"\noutput = \"{out}\"\ndata = []\nbatch_size = 8\naccumulation = 2\ncheckpoint_every = 2\nseed = 5\n[optimizer]\nlr = 0.3\nweight_decay = 0.0\nwarmup_steps = 0\ntotal_steps = 6\n"
            ),
            true,
        )
        .unwrap()
    };
    let mut a = florence::train::Trainer::with_task(cfg("a"), &root, Regression).unwrap();
    let sa = a.run(None, &mut Recorder::default()).unwrap();
    assert_eq!(sa.step, 6);
    assert!(sa.eval.is_some(), "evaluated every 3 steps");
    let lines = std::fs::read_to_string(root.join("a/metrics.jsonl")).unwrap();
    let losses: Vec<f64> = lines
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"].as_f64().unwrap())
        .collect();
    assert!(losses[5] < 0.5 * losses[0], "{losses:?}");
    assert!(root.join("a/final.safetensors").exists() && root.join("a/metrics.png").exists());

    let mut b = florence::train::Trainer::with_task(cfg("b"), &root, Regression).unwrap();
    b.run(Some(2), &mut Recorder::default()).unwrap();
    drop(b);
    let mut b = florence::train::Trainer::resume_task(cfg("b"), &root, Regression).unwrap();
    assert_eq!(b.step(), 2);
    b.run(None, &mut Recorder::default()).unwrap();
    assert_eq!(params(a.weights()), params(b.weights()), "stopped at 2 and resumed = uninterrupted");
    std::fs::remove_dir_all(&root).ok();
}
