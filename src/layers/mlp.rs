//! The transformer MLP, `fc2(act(fc1(x)))`, with the activations of the model family.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::gelu_approximate;

use crate::activation::gelu;
use crate::linear;

/// The MLP's nonlinearity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// Exact GELU, `x Φ(x)` with the erf (`nn.GELU()`; Swin, BERT, METER).
    #[default]
    Gelu,
    /// The tanh approximation (`nn.GELU(approximate="tanh")`; Hugging Face's `gelu_new`).
    GeluTanh,
    /// CLIP's `x * sigmoid(1.702 x)` (UniCL's and OpenAI CLIP's text towers).
    QuickGelu,
}

impl Activation {
    /// Applies the activation elementwise.
    pub fn forward<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Self::Gelu => gelu(x),
            Self::GeluTanh => gelu_approximate(x),
            Self::QuickGelu => quick_gelu(x),
        }
    }
}

pub use crate::activation::quick_gelu;

/// `fc2(act(fc1(x)))`. Keys `fc1.*`, `fc2.*` (timm's `Mlp`).
#[derive(Module, Debug)]
pub struct Mlp {
    /// `Linear(D, hidden)`.
    pub fc1: Linear,
    /// `Linear(hidden, D)`.
    pub fc2: Linear,
    /// The nonlinearity (a setting, not a weight).
    #[module(skip)]
    pub act: Activation,
}

impl Mlp {
    /// Builds the MLP.
    pub fn new(dim: usize, hidden: usize, act: Activation, device: &Device) -> Self {
        Self { fc1: LinearConfig::new(dim, hidden).init(device), fc2: LinearConfig::new(hidden, dim).init(device), act }
    }

    /// `[..., D] -> [..., D]`.
    pub fn forward<const R: usize>(&self, x: Tensor<R>) -> Tensor<R> {
        linear::forward(&self.fc2, self.act.forward(linear::forward(&self.fc1, x)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activations_match_their_formulas() {
        let dev = Default::default();
        let x = Tensor::<1>::from_floats([-2.0, -0.5, 0.0, 0.7, 3.0], &dev);
        let v = |t: Tensor<1>| t.into_data().iter::<f32>().collect::<Vec<_>>();
        let xs = [-2.0f32, -0.5, 0.0, 0.7, 3.0];
        // The definitions in f64: 0.5 x (1 + erf(x / sqrt 2)) and
        // 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))), as F.gelu computes them.
        let exact = [-0.045_500_264, -0.154_268_77, 0.0, 0.530_625_44, 2.995_950_3];
        let tanh = [-0.045_402_306, -0.154_286, 0.0, 0.530_570_13, 2.996_362_6];
        for (got, want) in v(Activation::Gelu.forward(x.clone())).iter().zip(exact) {
            assert!((got - want).abs() < 1e-6, "{got} {want}");
        }
        for (got, want) in v(Activation::GeluTanh.forward(x.clone())).iter().zip(tanh) {
            assert!((got - want).abs() < 1e-6, "{got} {want}");
        }
        for (got, x) in v(Activation::QuickGelu.forward(x)).iter().zip(xs) {
            let want = x / (1.0 + (-1.702 * x).exp());
            assert!((got - want).abs() < 1e-6, "{got} {want}");
        }
    }
}
