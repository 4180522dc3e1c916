//! Linear layers, fast on the CPU: [`forward`] is `Linear::forward` with a fused flex kernel.
//!
//! On flex, for f32 tensors without autodiff, a backend extension (`LinearOps`, see `ops.rs`)
//! writes the bias into the output and lets gemm accumulate `x @ weight` into it, which spares
//! flex's zero-fill, alignment copy and separate bias pass. Everywhere else (autodiff, CubeCL
//! backends, LibTorch, other dtypes) it is `Linear::forward`. The results are the same gemm sums
//! with the bias added in another order (within an ulp of the sum, far inside every parity
//! tolerance; `tests` below compare the two).

mod ops;

use burn::backend::Dispatch;
use burn::nn::Linear;
use burn::prelude::*;

use ops::LinearOps;

/// Whether `x` through `layer` takes the fused kernel: input, weight and bias f32, on flex, not
/// tracked by autodiff.
fn fast_path<const D: usize>(layer: &Linear, x: &Tensor<D>) -> bool {
    use burn::tensor::DType;
    crate::kernels::on_flex_f32(x)
        && !x.device().is_autodiff()
        && layer.weight.val().dtype() == DType::F32
        && layer.bias.as_ref().is_none_or(|b| b.val().dtype() == DType::F32)
}

/// `layer.forward(x)`: `[..., d_input] -> [..., d_output]`.
pub fn forward<const D: usize>(layer: &Linear, x: Tensor<D>) -> Tensor<D> {
    if !fast_path(layer, &x) {
        return layer.forward(x);
    }
    let weight = layer.weight.val().into_dispatch();
    Tensor::from_dispatch(match &layer.bias {
        Some(b) => <Dispatch as LinearOps>::fused_linear(x.into_dispatch(), weight, b.val().into_dispatch()),
        None => <Dispatch as LinearOps>::fused_linear_no_bias(x.into_dispatch(), weight),
    })
}

#[cfg(test)]
mod tests {
    use burn::nn::LinearConfig;

    use super::*;

    /// The fused kernel against `Linear::forward` (flex's matmul + add), with and without bias,
    /// on 2D, 3D and non-contiguous inputs, small and above the parallel threshold.
    #[test]
    fn fused_linear_matches_burn() {
        let dev = Device::default();
        for (rows, k, n, bias) in [(3, 5, 4, true), (3, 5, 4, false), (1000, 96, 384, true), (700, 384, 96, false)] {
            let layer = LinearConfig::new(k, n).with_bias(bias).init(&dev);
            let x = Tensor::<3>::random([2, rows, k], burn::tensor::Distribution::Normal(0.0, 1.0), &dev);
            let cases = [x.clone(), x.clone().swap_dims(0, 1).swap_dims(0, 1) /* a view */];
            for x in cases {
                let want = layer.forward(x.clone()).into_data();
                let got = forward(&layer, x.clone()).into_data();
                got.assert_approx_eq::<f32>(&want, burn::tensor::Tolerance::absolute(1e-5));
            }
            // A transposed (strided) input.
            let xt =
                Tensor::<3>::random([2, k, rows], burn::tensor::Distribution::Normal(0.0, 1.0), &dev).swap_dims(1, 2);
            let want = layer.forward(xt.clone()).into_data();
            forward(&layer, xt).into_data().assert_approx_eq::<f32>(&want, burn::tensor::Tolerance::absolute(1e-5));
            let x2 = Tensor::<2>::random([rows, k], burn::tensor::Distribution::Normal(0.0, 1.0), &dev);
            let empty = Tensor::<3>::zeros([2, 0, k], &dev);
            assert_eq!(forward(&layer, empty).dims(), [2, 0, n]);
            let want = layer.forward(x2.clone()).into_data();
            forward(&layer, x2).into_data().assert_approx_eq::<f32>(&want, burn::tensor::Tolerance::absolute(1e-5));
        }
    }

    /// Zero input features (`Linear(0, n)`): the output is the bias on every row, as in Burn.
    #[test]
    fn fused_linear_with_no_input_features_gives_the_bias() {
        let dev = Device::default();
        let layer = LinearConfig::new(0, 4).with_initializer(burn::nn::Initializer::Constant { value: 0.5 }).init(&dev);
        let x = Tensor::<3>::zeros([2, 3, 0], &dev);
        let got = forward(&layer, x.clone());
        assert_eq!(got.dims(), [2, 3, 4]);
        got.into_data().assert_approx_eq::<f32>(&layer.forward(x).into_data(), burn::tensor::Tolerance::absolute(0.0));
    }
}
