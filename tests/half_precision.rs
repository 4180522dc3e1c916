//! f16 training on flex: the device is configured for f16 before any tensor exists, parameters
//! and activations are f16, the loss is computed in f32, and a few steps run with finite losses
//! and write f16 checkpoints. (bf16: `bf16_training.rs`.)

mod half;

use burn::tensor::DType;
use florence::train::TrainConfig;

#[test]
fn f16_training_runs_with_an_f32_loss() {
    // AdamW's default epsilon (1e-8) is 0 in f16: refused with a message saying what to set.
    let no_eps = r#"
model = "tiny-clip"
output = "run"
batch_size = 8
precision = "f16"
data = [{ kind = "jsonl", path = "x.jsonl" }]
optimizer = { lr = 1e-3, total_steps = 3 }
"#;
    let e = TrainConfig::parse(no_eps, true).unwrap_err().to_string();
    assert!(e.contains("`optimizer.eps` must be at least 1e-4"), "{e}");
    assert!(TrainConfig::parse(&no_eps.replace("f16", "bf16"), true).is_ok());
    half::train("f16", DType::F16, safetensors::Dtype::F16, 1e-4);
}
