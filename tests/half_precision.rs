//! Half-precision training on flex: the device is configured for f16 before any tensor exists
//! (its own test binary, since the setting is per process and device), parameters and
//! activations are f16, the loss is computed in f32, and a few steps run with finite losses and
//! write f16 checkpoints.

use burn::module::Module;
use burn::tensor::DType;
use florence::data::synthetic::{Layout, Split, SyntheticConfig, write_dataset};
use florence::progress::Recorder;
use florence::train::{TrainConfig, Trainer};

#[test]
fn f16_training_runs_with_an_f32_loss() {
    let root = std::env::temp_dir().join(format!("florence-f16-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let synth = SyntheticConfig { size: 32, ..SyntheticConfig::default() };
    write_dataset(&synth, Split::Train, 24, &root.join("data"), Layout::Captions, &mut |_, _| {}).unwrap();
    let cfg = TrainConfig::parse(
        r#"
model = "tiny-clip"
output = "run"
batch_size = 8
seed = 3
precision = "f16"
checkpoint_every = 3
[[data]]
kind = "jsonl"
path = "data/captions.jsonl"
[augment]
enabled = false
[optimizer]
lr = 1e-3
eps = 1e-4
total_steps = 3
"#,
        true,
    )
    .unwrap();
    // AdamW's default epsilon (1e-8) is 0 in f16: refused with a message saying what to set.
    let mut bad = cfg.clone();
    bad.optimizer.eps = 1e-8;
    assert!(bad.validate().unwrap_err().to_string().contains("eps"));
    let mut t = Trainer::new(cfg, &root).unwrap();
    assert_eq!(t.model().logit_scale.val().dtype(), DType::F16);
    let s = t.run(None, &mut Recorder::default()).unwrap();
    assert_eq!(s.step, 3);
    let lines = florence::train::metrics::read_metrics(&root.join("run").join("metrics.jsonl")).unwrap();
    eprintln!("f16 metrics: {lines:?}");
    assert!(lines.iter().all(|l| l.loss.is_some_and(f32::is_finite)));
    let devices = t.model().devices();
    assert!(devices[0].is_autodiff());
    // The checkpoint keeps the model's dtype.
    let st = std::fs::read(root.join("run").join("final.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&st).unwrap();
    assert!(st.tensors().iter().any(|(_, v)| v.dtype() == safetensors::Dtype::F16));
    std::fs::remove_dir_all(&root).ok();
}
