//! LayerNorm as the towers and adapters use it: Burn's `LayerNorm` (keys `weight`/`bias` map to
//! its `gamma`/`beta` in the loader), built with the epsilon of the model it reproduces.
//!
//! **The variants of the references, and which one this is.** PyTorch models carry three:
//! `nn.LayerNorm` (computes in the input's dtype), CLIP's and UniCL's `LayerNorm` subclass and
//! open_clip's `LayerNormFp32` (both compute in f32 and cast back to the input's dtype: "Subclass
//! torch's LayerNorm to handle fp16", https://github.com/openai/CLIP/blob/a1d0717/clip/model.py#L157,
//! https://github.com/mlfoundations/open_clip/blob/v3.2.0/src/open_clip/transformer.py#L19),
//! and UniCL's "TF-style" epsilon of 1e-12. In f32 they agree. In half precision, Burn 0.22.1's
//! `LayerNorm::forward` widens f16 inputs to f32 (with the parameters) and narrows the result
//! back on every backend, which is the fp32-cast variant; bf16 goes to the backend's op as it is
//! (its parameters must be bf16 too, as the trainer's working copy has them), and flex computes
//! that op in f32 internally (`layer_norm_via_f32` in burn-flex), so on flex both half types give
//! the fp32-cast result; GPU kernels may accumulate bf16 differently. So one module serves, and
//! the variants differ in epsilon only ([`TORCH_EPS`], [`TF_EPS`]). The tests below pin this, so
//! a Burn upgrade that changed it fails here rather than shifting half-precision results.

use burn::nn::{LayerNorm, LayerNormConfig};
use burn::prelude::*;

/// PyTorch's default epsilon (`nn.LayerNorm`): Swin, CvT, ViT, torchvision, timm.
pub const TORCH_EPS: f64 = 1e-5;

/// The "TF-style" epsilon: UniCL's text `LayerNorm`, BERT and RoBERTa (METER's text encoder).
pub const TF_EPS: f64 = 1e-12;

/// A LayerNorm over the last axis of width `dim` with epsilon `eps`, gain 1 and bias 0 (as
/// `nn.LayerNorm` initialises them). Half-precision inputs are normalised in f32 and cast back.
pub fn layer_norm(dim: usize, eps: f64, device: &Device) -> LayerNorm {
    LayerNormConfig::new(dim).with_epsilon(eps).init(device)
}

#[cfg(test)]
mod tests {
    use burn::tensor::{DType, Distribution};

    use super::*;

    /// CLIP's fp16 `LayerNorm`: `F.layer_norm(x.float(), ...).to(x.dtype)`, here computed by
    /// hand in f32 from the half inputs and compared with Burn's module on the half tensor.
    #[test]
    fn half_inputs_are_normalised_in_f32_and_cast_back() {
        let device = Device::default();
        let mut f32_norm = layer_norm(16, TF_EPS, &device);
        f32_norm.gamma = f32_norm.gamma.map(|g| g.random_like(Distribution::Normal(1.0, 0.2)));
        let x = Tensor::<3>::random([2, 3, 16], Distribution::Normal(3.0, 2.0), &device);
        for dtype in [DType::F16, DType::BF16] {
            // f16 keeps f32 parameters (Burn widens them); bf16 needs bf16 ones.
            let mut norm = f32_norm.clone();
            if dtype == DType::BF16 {
                norm.gamma = norm.gamma.map(|g| g.cast(dtype));
                norm.beta = norm.beta.map(|b| b.map(|b| b.cast(dtype)));
            }
            let half = x.clone().cast(dtype);
            let got = norm.forward(half.clone());
            assert_eq!(got.dtype(), dtype, "cast back to the input's dtype");
            let xf = half.cast(DType::F32);
            let mean = xf.clone().mean_dim(2);
            let var = (xf.clone() - mean.clone()).powi_scalar(2).mean_dim(2);
            let gamma = norm.gamma.val().cast(dtype).cast(DType::F32).reshape([1, 1, 16]);
            let want = ((xf - mean) / (var + TF_EPS).sqrt() * gamma).cast(dtype);
            let got: Vec<f32> = got.cast(DType::F32).into_data().iter::<f32>().collect();
            let want: Vec<f32> = want.cast(DType::F32).into_data().iter::<f32>().collect();
            // Equal up to one rounding of the half output (the f32 sums may differ in order).
            let ulp = if dtype == DType::F16 { 2f32.powi(-10) } else { 2f32.powi(-7) };
            for (a, b) in got.iter().zip(&want) {
                assert!((a - b).abs() <= ulp * b.abs().max(1.0), "{dtype:?}: {a} vs {b}");
            }
        }
    }
}
