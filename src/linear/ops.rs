//! The backend extension: `x @ weight + bias` as one backend operation on flex.
//!
//! Burn 0.22.1's flex computes a linear layer as `matmul` then `add`
//! (`burn-backend-0.22.1/src/backend/ops/modules/linear.rs`). Its matmul allocates the output
//! with `FlexTensor::empty`, which zero-fills a `Vec<u8>` and then copies it into a new buffer to
//! reach the runtime alignment (`Bytes::from_bytes_vec`), single-threaded, before the
//! multi-threaded gemm runs; the bias is a further pass. For the MLP's `[B * L, 4C]` hidden tensor
//! that is three extra sweeps of the largest tensor of the block. Here the output starts as the
//! bias broadcast over the rows (written once, in parallel) and gemm accumulates `x @ weight`
//! into it (`read_dst`), with the same gemm kernels and the same parallelism threshold as flex.
//!
//! Listed for `Flex` only: [`super::linear`] sends nothing else here (not autodiff tensors,
//! whose backward Burn's own linear provides).

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, backend_extension};

/// `x: [..., K]`, `weight: [K, N]`, `bias: [N]` -> `[..., N]`.
#[backend_extension(Flex: cfg(feature = "flex"))]
pub trait LinearOps: Backend {
    /// `x @ weight + bias` over the last axis of `x`.
    fn fused_linear(x: FloatTensor<Self>, weight: FloatTensor<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self>;
    /// `x @ weight` over the last axis of `x` (a layer without bias).
    fn fused_linear_no_bias(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self>;
}

#[cfg(feature = "flex")]
mod flex {
    use burn::backend::flex::FlexTensor;
    use burn::backend::{DType, TensorMetadata};
    use burn::tensor::Shape;

    use super::LinearOps;
    use crate::kernels::flex::{contiguous, from_vec, values};

    /// flex's threshold for a multi-threaded gemm (`burn-flex-0.22.1/src/ops/matmul.rs`).
    const PARALLEL_THRESHOLD: usize = 192 * 192 * 192;
    /// Rows of the output that one task fills with the bias.
    const FILL_ROWS: usize = 512;

    /// A view with non-negative strides (contiguous otherwise).
    fn positive(t: FlexTensor) -> FlexTensor {
        if t.layout().strides().iter().all(|&s| s >= 0) { t } else { t.to_contiguous() }
    }

    impl LinearOps for burn::backend::Flex {
        fn fused_linear(x: FlexTensor, weight: FlexTensor, bias: FlexTensor) -> FlexTensor {
            linear(x, weight, Some(bias))
        }
        fn fused_linear_no_bias(x: FlexTensor, weight: FlexTensor) -> FlexTensor {
            linear(x, weight, None)
        }
    }

    fn linear(x: FlexTensor, weight: FlexTensor, bias: Option<FlexTensor>) -> FlexTensor {
        use rayon::prelude::*;
        assert!(x.dtype() == DType::F32 && weight.dtype() == DType::F32, "fused linear runs on f32 only");
        let shape = x.shape();
        let rank = shape.num_dims();
        let k = shape[rank - 1];
        let wshape = weight.shape();
        assert_eq!(wshape.num_dims(), 2, "linear weight must be [K, N]");
        assert_eq!(wshape[0], k, "linear weight [K, N] against an input of {k} features");
        let n = wshape[1];
        // The rows are the product of the leading axes (not elements / k, which is 0 for k = 0).
        let m: usize = (0..rank - 1).map(|i| shape[i]).product();
        let mut out_dims: Vec<usize> = (0..rank - 1).map(|i| shape[i]).collect();
        out_dims.push(n);

        // The input as [M, K] rows: contiguous, so that the rows are evenly strided.
        let x = contiguous(x);
        let xs = values(&x);
        let weight = positive(weight);
        let (w_rs, w_cs) = (weight.layout().strides()[0], weight.layout().strides()[1]);
        let wdata = weight.storage::<f32>();

        let mut out: Vec<f32> = Vec::with_capacity(m * n);
        let read_dst = match &bias {
            Some(b) => {
                let b = contiguous(b.clone());
                let bs = values(&b);
                assert_eq!(bs.len(), n, "linear bias has {} values for {n} outputs", bs.len());
                let spare = &mut out.spare_capacity_mut()[..m * n];
                let fill = |rows: &mut [std::mem::MaybeUninit<f32>]| {
                    for row in rows.chunks_mut(n.max(1)) {
                        for (d, &v) in row.iter_mut().zip(bs) {
                            d.write(v);
                        }
                    }
                };
                // In parallel only when there is enough to share (a small layer should not start
                // rayon's pool for nothing).
                if m > FILL_ROWS {
                    spare.par_chunks_mut(FILL_ROWS * n.max(1)).for_each(fill);
                } else {
                    fill(spare);
                }
                // SAFETY: every one of the m * n elements was written just above.
                unsafe { out.set_len(m * n) };
                true
            }
            None => {
                out.resize(m * n, 0.0);
                false
            }
        };
        if m > 0 && n > 0 && k > 0 {
            let parallelism = if m.saturating_mul(n).saturating_mul(k) >= PARALLEL_THRESHOLD {
                gemm::Parallelism::Rayon(0)
            } else {
                gemm::Parallelism::None
            };
            // SAFETY: `out` holds m x n row-major values; `xs` m x k row-major; the weight
            // pointer and its (non-negative) strides address `K x N` elements of its storage
            // from its start offset, as flex's own 2D matmul uses them.
            unsafe {
                let w_ptr = wdata.as_ptr().add(weight.layout().start_offset());
                gemm::gemm(
                    m,
                    n,
                    k,
                    out.as_mut_ptr(),
                    1,
                    n as isize,
                    read_dst,
                    xs.as_ptr(),
                    1,
                    k as isize,
                    w_ptr,
                    w_cs,
                    w_rs,
                    1.0f32,
                    1.0f32,
                    false,
                    false,
                    false,
                    parallelism,
                );
            }
        }
        from_vec(out, Shape::from(out_dims))
    }
}
