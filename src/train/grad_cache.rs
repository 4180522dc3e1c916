//! Gradient cache (Gao et al., 2021, "Scaling Deep Contrastive Learning Batch Size under Memory
//! Limited Setup"; Florence §2.7): the exact gradient of a contrastive loss over a large batch,
//! with the activation memory of one sub-batch.
//!
//! 1. Embed every sub-batch without a graph (`Module::valid`), giving `U`, `V` for the whole
//!    batch.
//! 2. Compute the loss on the full `N x N` similarity matrix with `U`, `V` as leaves; backward
//!    gives `dL/dU`, `dL/dV` (and `dL/dlogit_scale`).
//! 3. Re-embed each sub-batch with a graph and backpropagate the surrogate
//!    `sum(u_k * dL/du_k) + sum(v_k * dL/dv_k)`, whose parameter gradient is sub-batch k's share
//!    of `dL/dθ` by the chain rule. The shares are summed.
//!
//! The result equals [`full_batch_gradients`] up to f32 summation order (tests/grad_cache.rs).

use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::prelude::*;

use super::loss::unicl_loss;
use crate::error::{FlorenceError, Result};
use crate::model::Florence;

/// Image-text pairs with one UniCL label per pair.
#[derive(Debug, Clone)]
pub struct ContrastiveBatch {
    /// `[N, 3, S, S]` preprocessed images.
    pub images: Tensor<4>,
    /// `[N, L]` token ids.
    pub ids: Tensor<2, Int>,
    /// `N` labels: class ids, or [`super::label_for_text`] of the captions.
    pub labels: Vec<u64>,
}

impl ContrastiveBatch {
    fn check(&self) -> Result<usize> {
        let n = self.images.dims()[0];
        if self.ids.dims()[0] != n || self.labels.len() != n || n == 0 {
            return Err(FlorenceError::Input(format!(
                "a batch needs as many images, token rows and labels as pairs: {} images, {} texts, {} labels",
                n,
                self.ids.dims()[0],
                self.labels.len()
            )));
        }
        Ok(n)
    }
}

/// The loss of a step and the parameter gradients to apply.
pub struct StepGradients {
    /// The UniCL loss of the whole batch.
    pub loss: f32,
    /// Gradients of every parameter of the model.
    pub grads: GradientsParams,
}

/// Plain backpropagation through the whole batch at once. `model` must be in training mode on
/// the autodiff backend (`model.train()`, or built with `config.init(&device.autodiff())`).
pub fn full_batch_gradients(model: &Florence, batch: &ContrastiveBatch, max_scale: Option<f32>) -> Result<StepGradients> {
    batch.check()?;
    let u = model.encode_image(batch.images.clone().autodiff())?;
    let v = model.encode_text(batch.ids.clone().autodiff())?;
    let loss = unicl_loss(u, v, model.logit_scale.val(), &batch.labels, max_scale)?.total;
    let value = loss.clone().into_scalar::<f32>();
    Ok(StepGradients { loss: value, grads: GradientsParams::from_grads(loss.backward(), model) })
}

/// The same gradients as [`full_batch_gradients`], computed `chunk` pairs at a time.
pub fn grad_cache_gradients(
    model: &Florence,
    batch: &ContrastiveBatch,
    chunk: usize,
    max_scale: Option<f32>,
) -> Result<StepGradients> {
    let n = batch.check()?;
    let chunk = chunk.max(1);
    let ranges: Vec<std::ops::Range<usize>> = (0..n).step_by(chunk).map(|s| s..(s + chunk).min(n)).collect();

    // 1. Embeddings of the whole batch, no graph.
    let frozen = model.valid();
    let mut us = Vec::with_capacity(ranges.len());
    let mut vs = Vec::with_capacity(ranges.len());
    for r in &ranges {
        us.push(frozen.encode_image(batch.images.clone().slice_dim(0, r.clone()).without_autodiff())?);
        vs.push(frozen.encode_text(batch.ids.clone().slice_dim(0, r.clone()).without_autodiff())?);
    }

    // 2. Loss on the full similarity matrix; gradients w.r.t. the embeddings (and logit_scale).
    let u_all = Tensor::cat(us, 0).autodiff().require_grad();
    let v_all = Tensor::cat(vs, 0).autodiff().require_grad();
    let loss = unicl_loss(u_all.clone(), v_all.clone(), model.logit_scale.val(), &batch.labels, max_scale)?.total;
    let value = loss.clone().into_scalar::<f32>();
    let mut grads = loss.backward();
    let missing = || FlorenceError::Input("the model is not in training mode on the autodiff backend: call `model.train()` first".into());
    let gu = u_all.grad_remove(&mut grads).ok_or_else(missing)?;
    let gv = v_all.grad_remove(&mut grads).ok_or_else(missing)?;
    let mut acc = GradientsAccumulator::<Florence>::new();
    acc.accumulate(model, GradientsParams::from_grads(grads, model)); // logit_scale

    // 3. Each sub-batch again, with its graph, backpropagating the cached embedding gradients.
    for r in &ranges {
        let u = model.encode_image(batch.images.clone().slice_dim(0, r.clone()).autodiff())?;
        let v = model.encode_text(batch.ids.clone().slice_dim(0, r.clone()).autodiff())?;
        let gu_k = gu.clone().slice_dim(0, r.clone()).detach();
        let gv_k = gv.clone().slice_dim(0, r.clone()).detach();
        let surrogate = (u * gu_k).sum() + (v * gv_k).sum();
        acc.accumulate(model, GradientsParams::from_grads(surrogate.backward(), model));
    }
    Ok(StepGradients { loss: value, grads: acc.grads() })
}
