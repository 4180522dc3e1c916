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

use burn::optim::GradientsParams;

use super::distributed::data_parallel_gradients;
use super::loss::unicl_loss;
use super::step::{StepGradients, StepOptions};
use crate::data::ContrastiveBatch;
use crate::error::Result;
use crate::layers::DropPathNoise;
use crate::model::Florence;

/// Plain backpropagation through the whole batch at once. `model` must be in training mode on
/// the autodiff backend (`model.train()`, or built with `config.init(&device.autodiff())`).
pub fn full_batch_gradients(
    model: &Florence,
    batch: &ContrastiveBatch,
    max_scale: Option<f32>,
) -> Result<StepGradients> {
    full_batch_gradients_with(model, batch, StepOptions { max_scale, ..Default::default() })
}

/// [`full_batch_gradients`] with every option of a step (`chunk` is ignored): the loss weight
/// and the stochastic-depth seed.
pub fn full_batch_gradients_with(
    model: &Florence,
    batch: &ContrastiveBatch,
    opts: StepOptions,
) -> Result<StepGradients> {
    let n = batch.check()?;
    let noise = opts.drop_path_seed.map(|s| DropPathNoise::for_rows(s, 0..n));
    let u = model.encode_image_with_noise(batch.images.clone().autodiff(), noise.as_ref())?;
    let v = model.encode_text_with_noise(batch.ids.clone().autodiff(), noise.as_ref())?;
    let loss = unicl_loss(u, v, model.logit_scale.val(), &batch.labels, opts.max_scale)?.total;
    let value = loss.clone().into_scalar::<f32>();
    let grads = (loss * opts.loss_weight).backward();
    Ok(StepGradients { loss: value, grads: GradientsParams::from_grads(grads, model) })
}

/// The same gradients as [`full_batch_gradients`], computed `chunk` pairs at a time: the
/// single-replica case of [`super::distributed::data_parallel_gradients`], which implements the
/// three steps above (and runs them over several devices).
pub fn grad_cache_gradients(
    model: &Florence,
    batch: &ContrastiveBatch,
    chunk: usize,
    max_scale: Option<f32>,
) -> Result<StepGradients> {
    let opts = StepOptions { chunk: Some(chunk.max(1)), max_scale, ..Default::default() };
    data_parallel_gradients(std::slice::from_ref(model), batch, opts)
}
