//! bf16 training on flex (which stores and computes bf16 natively): parameters and activations
//! are bf16, the loss is computed in f32, and a few steps run with finite losses and write bf16
//! checkpoints. bf16 keeps f32's exponent range, so AdamW's default epsilon (1e-8) is valid.

mod half;

use burn::tensor::DType;

#[test]
fn bf16_training_runs_with_an_f32_loss() {
    half::train("bf16", DType::BF16, safetensors::Dtype::BF16, 1e-8);
}
