//! The UniCL loss in image-label-description space (Florence, Yuan et al. 2021,
//! arXiv:2111.11432 §2.2 eqs. 1-3; UniCL, Yang et al. 2022, arXiv:2204.03610).
//!
//! Every pair in a batch carries a label `y`: a class id for image-label data, or, as Florence
//! does for image-text data, a hash of the exact caption (identical captions are one label; see
//! [`crate::data::label_for_text`]). All pairs with the same label are positives of each other:
//!
//! ```text
//! logits = exp(logit_scale) · U Vᵀ                       [N, N]
//! T      = [y_i == y_j]                                  (symmetric, diagonal 1)
//! L_i2t  = mean_i −Σ_k T_ik / Σ_k T_ik · log_softmax(logits, dim 1)_ik
//! L_t2i  = mean_j −Σ_k T_kj / Σ_k T_kj · log_softmax(logits, dim 0)_kj
//! L      = L_i2t + L_t2i
//! ```
//!
//! With all labels distinct this is exactly twice CLIP's symmetric InfoNCE (CLIP averages the two
//! directions). The public UniCL code has no training loss (microsoft/UniCL issue #6), so the
//! reference is a hand-written PyTorch version of the formula
//! (`scripts/reference/make_loss_fixtures.py`).

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

use crate::error::{FlorenceError, Result};

/// The two directions of the loss and their sum (scalars, shape `[1]`).
#[derive(Debug, Clone)]
pub struct UniclLoss {
    /// `L_i2t + L_t2i`: what training minimises.
    pub total: Tensor<1>,
    /// Image-to-text soft-target cross-entropy.
    pub image_to_text: Tensor<1>,
    /// Text-to-image soft-target cross-entropy.
    pub text_to_image: Tensor<1>,
}

/// UniCL's loss for L2-normalised embeddings `u: [N, D]` (images) and `v: [N, D]` (texts), the
/// raw learnable `logit_scale: [1]` (the scale applied is its exponential) and one label per pair.
///
/// `max_scale` optionally clamps `exp(logit_scale)` from above (CLIP clamps at 100; UniCL does not
/// clamp, so `None` is the reference behaviour). Gradients flow into `u`, `v` and `logit_scale`
/// when they are tracked.
pub fn unicl_loss(
    u: Tensor<2>,
    v: Tensor<2>,
    logit_scale: Tensor<1>,
    labels: &[u64],
    max_scale: Option<f32>,
) -> Result<UniclLoss> {
    let [n, d] = u.dims();
    if v.dims() != [n, d] {
        return Err(FlorenceError::Input(format!(
            "image embeddings are {:?} but text embeddings are {:?}; the loss pairs row i with row i",
            u.dims(),
            v.dims()
        )));
    }
    if labels.len() != n || n == 0 {
        return Err(FlorenceError::Input(format!(
            "{} labels for a batch of {n} pairs; give one label per pair",
            labels.len()
        )));
    }
    let (device, dtype) = (u.device(), u.dtype());
    let mut scale = logit_scale.exp();
    if let Some(m) = max_scale {
        scale = scale.clamp_max(m);
    }
    let logits = u.matmul(v.transpose()) * scale.unsqueeze_dim::<2>(0); // [N, N]

    // Targets: row-normalised positives. T is symmetric, so the column-normalised version used
    // by the text-to-image direction is the transpose of the row-normalised one.
    let mut t = vec![0.0f32; n * n];
    for i in 0..n {
        let positives = labels.iter().filter(|&&y| y == labels[i]).count() as f32;
        for j in 0..n {
            if labels[j] == labels[i] {
                t[i * n + j] = 1.0 / positives;
            }
        }
    }
    // In the embeddings' dtype: a device configured for half precision would otherwise create it
    // in f16 next to f32 logits.
    let rows = Tensor::<2>::from_data(TensorData::new(t, [n, n]), (&device, dtype));
    let cols = rows.clone().transpose();

    let i2t = (rows * log_softmax(logits.clone(), 1)).sum_dim(1).mean().neg();
    let t2i = (cols * log_softmax(logits, 0)).sum_dim(0).mean().neg();
    Ok(UniclLoss { total: i2t.clone() + t2i.clone(), image_to_text: i2t, text_to_image: t2i })
}
