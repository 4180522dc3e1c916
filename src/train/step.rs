//! What one contrastive training step computes and returns, shared by the gradient cache
//! ([`super::grad_cache`]) and data parallelism ([`super::distributed`]).

use burn::optim::GradientsParams;

/// How a contrastive step is computed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepOptions {
    /// Sub-batch size of the gradient cache per replica (`None`: a replica's whole shard at once).
    pub chunk: Option<usize>,
    /// Upper clamp of `exp(logit_scale)` (see [`super::unicl_loss`]).
    pub max_scale: Option<f32>,
    /// The loss is multiplied by this before differentiation (1 / accumulation steps).
    pub loss_weight: f32,
    /// The step's seed for stochastic depth (`None`: no drop path, whatever the model's
    /// rates). Row `i` of the batch draws the same masks in every sub-batch and replica, in the
    /// gradient cache's first and second forward, and after a resume.
    pub drop_path_seed: Option<u64>,
}

impl Default for StepOptions {
    fn default() -> Self {
        Self { chunk: None, max_scale: None, loss_weight: 1.0, drop_path_seed: None }
    }
}

/// The loss of a step and the parameter gradients to apply.
pub struct StepGradients {
    /// The UniCL loss of the whole batch.
    pub loss: f32,
    /// Gradients of every parameter of the model.
    pub grads: GradientsParams,
}
