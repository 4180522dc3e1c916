//! Several devices at once: data parallelism with one similarity matrix over the whole batch.
//!
//! Burn 0.22 implements collectives only for CUDA through NCCL (`burn::tensor::distributed`, in
//! burn-cubecl's NCCL path; flex, tch and wgpu have none), and has
//! no all-gather at all. This module builds both from device-to-device copies, so they work on
//! every backend, flex and wgpu included:
//!
//! - [`all_reduce_sum`]: every device's tensor summed, the sum returned on every device.
//! - [`all_gather`]: every device's rows, concatenated in device order, returned on every
//!   device. Built as the issue suggests, from an all-reduce over zero-padded buffers: device r
//!   writes its rows into a zero `[N_total, D]` buffer at its offset, and the sum of the buffers
//!   is the concatenation.
//!
//! [`data_parallel_gradients`] is the training step: each replica embeds its shard without a
//! graph, the features are all-gathered into the full `N x N` UniCL loss on the first device,
//! each replica re-runs its shard with its graph and backpropagates its slice of the embedding
//! gradients (the gradient-cache construction, so the sub-batch size is free too), and the
//! parameter gradients are all-reduced onto the first device. The result is the full-batch
//! gradient, whatever the number of replicas (tests/grad_cache.rs).

use std::ops::Range;

use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::prelude::*;
use burn::tensor::DType;

use super::loss::unicl_loss;
use super::step::{StepGradients, StepOptions};
use crate::data::ContrastiveBatch;
use crate::error::{FlorenceError, Result};
use crate::layers::DropPathNoise;
use crate::model::Florence;

/// Sum of `parts` (one tensor per device, same shape), returned on each part's device.
pub fn all_reduce_sum<const D: usize>(parts: Vec<Tensor<D>>) -> Result<Vec<Tensor<D>>> {
    let Some(first) = parts.first() else {
        return Err(FlorenceError::Input("all_reduce_sum needs at least one tensor".into()));
    };
    let (shape, root) = (first.dims(), first.device());
    if let Some(p) = parts.iter().find(|p| p.dims() != shape) {
        return Err(FlorenceError::Input(format!("all_reduce_sum: shapes differ, {:?} and {:?}", shape, p.dims())));
    }
    let devices: Vec<Device> = parts.iter().map(Tensor::device).collect();
    // Reduce onto the first device, then broadcast: 2(R-1) copies, as a tree-less ring would need.
    let sum = parts.into_iter().map(|p| p.to_device(&root)).reduce(|a, b| a + b).expect("non-empty");
    Ok(devices.iter().map(|d| sum.clone().to_device(d)).collect())
}

/// Rows of every part (`[n_r, D]`, one per device), concatenated in order, returned on each
/// part's device: `[Σ n_r, D]`. Built from [`all_reduce_sum`] over zero-padded buffers.
pub fn all_gather(parts: Vec<Tensor<2>>) -> Result<Vec<Tensor<2>>> {
    let Some(first) = parts.first() else {
        return Err(FlorenceError::Input("all_gather needs at least one tensor".into()));
    };
    let d = first.dims()[1];
    if let Some(p) = parts.iter().find(|p| p.dims()[1] != d) {
        return Err(FlorenceError::Input(format!("all_gather: widths differ, {d} and {}", p.dims()[1])));
    }
    let total: usize = parts.iter().map(|p| p.dims()[0]).sum();
    let mut offset = 0;
    let padded = parts
        .into_iter()
        .map(|p| {
            let n = p.dims()[0];
            let buf =
                Tensor::<2>::zeros([total, d], (&p.device(), p.dtype())).slice_assign([offset..offset + n, 0..d], p);
            offset += n;
            buf
        })
        .collect();
    all_reduce_sum(padded)
}

/// Contiguous shards of `n` rows over `parts` replicas, the first `n % parts` one row larger.
pub fn shard_ranges(n: usize, parts: usize) -> Vec<Range<usize>> {
    let parts = parts.max(1);
    let (base, extra) = (n / parts, n % parts);
    let mut start = 0;
    (0..parts)
        .map(|r| {
            let len = base + usize::from(r < extra);
            let range = start..start + len;
            start += len;
            range
        })
        .collect()
}

/// The gradient-checkpointing strategy of `model`'s parameters (`None` off the autodiff graph).
fn strategy(model: &Florence) -> Option<burn::tensor::GradientCheckpointingStrategy> {
    model.logit_scale.val().gradient_checkpointing_strategy()
}

/// Puts `t` on the autodiff graph with the same strategy as `model`'s parameters (operands of
/// one op must share a strategy). `like_model_ids` is the same for token ids.
fn like_model<const D: usize>(model: &Florence, t: Tensor<D>) -> Tensor<D> {
    match strategy(model) {
        Some(s) => t.autodiff().with_gradient_checkpointing_strategy(s),
        None => t.autodiff(),
    }
}

fn like_model_ids(model: &Florence, t: Tensor<2, Int>) -> Tensor<2, Int> {
    match strategy(model) {
        Some(s) => t.autodiff().with_gradient_checkpointing_strategy(s),
        None => t.autodiff(),
    }
}

/// The UniCL loss of `batch` and the gradients of every parameter, on `replicas[0]`'s device,
/// with the batch split over the replicas (one per device; all must be copies of one model in
/// training mode, e.g. `model.clone().fork(&device)`). Equal to full-batch backpropagation up to
/// summation order, for any number of replicas and any `chunk`.
pub fn data_parallel_gradients(
    replicas: &[Florence],
    batch: &ContrastiveBatch,
    opts: StepOptions,
) -> Result<StepGradients> {
    if replicas.is_empty() {
        return Err(FlorenceError::Input("data-parallel training needs at least one replica".into()));
    }
    let n = batch.check()?;
    let shards: Vec<(usize, Range<usize>)> =
        shard_ranges(n, replicas.len()).into_iter().enumerate().filter(|(_, r)| !r.is_empty()).collect();
    let chunks = |r: &Range<usize>| -> Vec<Range<usize>> {
        let c = opts.chunk.unwrap_or(r.len()).max(1);
        (r.start..r.end).step_by(c).map(|s| s..(s + c).min(r.end)).collect()
    };
    let main = replicas[0].devices().into_iter().next().unwrap_or_default();

    // 1. Each replica embeds its shard without a graph, in parallel.
    let embedded: Vec<Result<(Tensor<2>, Tensor<2>)>> = std::thread::scope(|s| {
        let handles: Vec<_> = shards
            .iter()
            .map(|(r, range)| {
                let model = &replicas[*r];
                let chunks = chunks(range);
                s.spawn(move || -> Result<(Tensor<2>, Tensor<2>)> {
                    let frozen = model.valid();
                    let device = frozen.devices().into_iter().next().unwrap_or_default();
                    let (mut us, mut vs) = (Vec::new(), Vec::new());
                    for c in chunks {
                        let noise = opts.drop_path_seed.map(|s| DropPathNoise::for_rows(s, c.clone()));
                        let x = batch.images.clone().slice_dim(0, c.clone()).without_autodiff().to_device(&device);
                        let t = batch.ids.clone().slice_dim(0, c).without_autodiff().to_device(&device);
                        us.push(frozen.encode_image_with_noise(x, noise.as_ref())?);
                        vs.push(frozen.encode_text_with_noise(t, noise.as_ref())?);
                    }
                    Ok((Tensor::cat(us, 0), Tensor::cat(vs, 0)))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    });
    let (us, vs): (Vec<_>, Vec<_>) = embedded.into_iter().collect::<Result<Vec<_>>>()?.into_iter().unzip();

    // 2. All-gather, and the loss on the full similarity matrix on the first device.
    let u_all = all_gather(us)?.swap_remove(0).without_autodiff().to_device(&main);
    let v_all = all_gather(vs)?.swap_remove(0).without_autodiff().to_device(&main);
    // The loss is computed in f32 whatever the model's precision (half-precision training).
    let u_all = like_model(&replicas[0], u_all.cast(DType::F32)).require_grad();
    let v_all = like_model(&replicas[0], v_all.cast(DType::F32)).require_grad();
    let scale = replicas[0].logit_scale.val();
    let scale = if scale.dtype() == DType::F32 { scale } else { scale.cast(DType::F32) };
    let loss = unicl_loss(u_all.clone(), v_all.clone(), scale, &batch.labels, opts.max_scale)?.total;
    let value = loss.clone().into_scalar::<f32>();
    let mut grads = (loss * opts.loss_weight).backward();
    let missing = || {
        FlorenceError::Input(
            "the model is not in training mode on the autodiff backend: call `model.train()` first".into(),
        )
    };
    let gu = u_all.grad_remove(&mut grads).ok_or_else(missing)?;
    let gv = v_all.grad_remove(&mut grads).ok_or_else(missing)?;
    let mut acc = GradientsAccumulator::<Florence>::new();
    acc.accumulate(&replicas[0], GradientsParams::from_grads(grads, &replicas[0])); // logit_scale

    // 3. Each replica re-runs its shard with its graph and backpropagates its slice of dL/dU,
    //    dL/dV; 4. the parameter gradients are reduced onto the first device.
    let shard_grads: Vec<Result<GradientsParams>> = std::thread::scope(|s| {
        let handles: Vec<_> = shards
            .iter()
            .map(|(r, range)| {
                let model = &replicas[*r];
                let chunks = chunks(range);
                let (gu, gv, main) = (&gu, &gv, &main);
                s.spawn(move || -> Result<GradientsParams> {
                    let device = model.devices().into_iter().next().unwrap_or_default();
                    let mut acc = GradientsAccumulator::<Florence>::new();
                    for c in chunks {
                        // The same rows draw the same stochastic-depth masks as in step 1.
                        let noise = opts.drop_path_seed.map(|s| DropPathNoise::for_rows(s, c.clone()));
                        let x = like_model(
                            model,
                            batch.images.clone().slice_dim(0, c.clone()).without_autodiff().to_device(&device),
                        );
                        let t = like_model_ids(
                            model,
                            batch.ids.clone().slice_dim(0, c.clone()).without_autodiff().to_device(&device),
                        );
                        let u = model.encode_image_with_noise(x, noise.as_ref())?;
                        let v = model.encode_text_with_noise(t, noise.as_ref())?;
                        let gu_k = gu.clone().slice_dim(0, c.clone()).detach().to_device(&device).cast(u.dtype());
                        let gv_k = gv.clone().slice_dim(0, c).detach().to_device(&device).cast(v.dtype());
                        let surrogate = (u * gu_k).sum() + (v * gv_k).sum();
                        acc.accumulate(model, GradientsParams::from_grads(surrogate.backward(), model));
                    }
                    Ok(acc.grads().to_device(main, model))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    });
    for g in shard_grads {
        acc.accumulate(&replicas[0], g?);
    }
    Ok(StepGradients { loss: value, grads: acc.grads() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_the_batch() {
        assert_eq!(shard_ranges(7, 3), vec![0..3, 3..5, 5..7]);
        assert_eq!(shard_ranges(2, 3), vec![0..1, 1..2, 2..2]);
        assert_eq!(shard_ranges(4, 1), vec![0..4]);
    }
}
