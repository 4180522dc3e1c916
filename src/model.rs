//! The two-tower model (UniCL `model/model.py` `UniCLModel`): image and text towers, bias-free
//! `[in, out]` projections, L2 normalisation and the learnable logit scale.

use burn::module::Param;
use burn::nn::Initializer;
use burn::prelude::*;

use crate::config::FlorenceConfig;
use crate::error::{FlorenceError, Result};
use crate::image::ImageEncoder;
use crate::layers::DropPathNoise;
use crate::text::TextEncoder;

/// Florence / UniCL two-tower model. Field names are the checkpoint keys.
#[derive(Module, Debug)]
pub struct Florence {
    /// Swin or CoSwin image tower.
    pub image_encoder: ImageEncoder,
    /// Text transformer.
    pub text_encoder: TextEncoder,
    /// `[C_img, D]`, applied as `x @ W` (not an `nn.Linear`).
    pub image_projection: Param<Tensor<2>>,
    /// `[W_text, D]`, applied as `x @ W`.
    pub text_projection: Param<Tensor<2>>,
    /// Learnable log-scale; logits are `exp(logit_scale) * u . v`. Stored as `[1]` (0-D in PyTorch).
    pub logit_scale: Param<Tensor<1>>,
}

/// Similarity logits in both directions.
#[derive(Debug, Clone)]
pub struct Logits {
    /// `[images, texts]`: `exp(logit_scale) * U V^T`.
    pub per_image: Tensor<2>,
    /// `[texts, images]`: the transpose.
    pub per_text: Tensor<2>,
}

impl FlorenceConfig {
    /// Builds a model with freshly initialised weights (use [`Florence::load`] for a checkpoint).
    pub fn init(&self, device: &Device) -> Result<Florence> {
        self.validate()?;
        let proj = Initializer::Normal { mean: 0.0, std: 0.02 };
        Ok(Florence {
            image_encoder: self.image.init(device)?,
            text_encoder: self.text.init(device)?,
            image_projection: proj.init([self.image.num_features(), self.projection_dim], device),
            text_projection: proj.init([self.text.width, self.projection_dim], device),
            logit_scale: Initializer::Constant { value: self.logit_scale_init }.init([1], device),
        })
    }
}

fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    // UniCL divides by the norm without an epsilon; a zero vector cannot come out of a trained
    // projection, and dividing by zero would be the reference's behaviour too.
    let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt();
    x / norm
}

impl Florence {
    /// `images: [B, 3, H, W]` (normalised) -> `[B, D]` L2-normalised image embeddings.
    pub fn encode_image(&self, images: Tensor<4>) -> Result<Tensor<2>> {
        Ok(l2_normalize(self.encode_image_unnormalized(images)?))
    }

    /// Image embeddings before normalisation (`forward_features @ image_projection`).
    pub fn encode_image_unnormalized(&self, images: Tensor<4>) -> Result<Tensor<2>> {
        Ok(self.image_encoder.forward_features(images)?.matmul(self.image_projection.val()))
    }

    /// [`Self::encode_image`] in training, with stochastic depth drawn from `noise` (one row per
    /// image); with `None`, the same as inference.
    pub fn encode_image_with_noise(&self, images: Tensor<4>, noise: Option<&DropPathNoise>) -> Result<Tensor<2>> {
        let u = self.image_encoder.forward_features_with_noise(images, noise)?;
        Ok(l2_normalize(u.matmul(self.image_projection.val())))
    }

    /// `ids: [T, L]` token ids (CLIP tokenizer: BOS ... EOS, padded with EOS) -> `[T, D]`
    /// L2-normalised text embeddings, pooled at each row's first end-of-text token.
    pub fn encode_text(&self, ids: Tensor<2, Int>) -> Result<Tensor<2>> {
        Ok(l2_normalize(self.encode_text_unnormalized(ids)?))
    }

    /// Text embeddings before normalisation.
    pub fn encode_text_unnormalized(&self, ids: Tensor<2, Int>) -> Result<Tensor<2>> {
        Ok(self.text_encoder.forward_pooled(ids)?.matmul(self.text_projection.val()))
    }

    /// [`Self::encode_text`] in training, with stochastic depth drawn from `noise` (one row per
    /// token row); with `None`, the same as inference.
    pub fn encode_text_with_noise(&self, ids: Tensor<2, Int>, noise: Option<&DropPathNoise>) -> Result<Tensor<2>> {
        let v = self.text_encoder.forward_pooled_with_noise(ids, noise)?;
        Ok(l2_normalize(v.matmul(self.text_projection.val())))
    }

    /// `exp(logit_scale)`, shape `[1]` (UniCL's `T`).
    pub fn scale(&self) -> Tensor<1> {
        self.logit_scale.val().exp()
    }

    /// The scale as a number.
    pub fn scale_value(&self) -> f32 {
        self.scale().into_scalar::<f32>()
    }

    /// Scaled cosine similarities of already-normalised embeddings: `u: [B, D]`, `v: [T, D]`.
    pub fn logits_from_embeddings(&self, u: Tensor<2>, v: Tensor<2>) -> Result<Logits> {
        let (du, dv) = (u.dims()[1], v.dims()[1]);
        if du != dv {
            return Err(FlorenceError::Input(format!("embedding widths differ: {du} vs {dv}")));
        }
        let per_image = u.matmul(v.transpose()) * self.scale().unsqueeze_dim::<2>(0);
        Ok(Logits { per_text: per_image.clone().transpose(), per_image })
    }

    /// Encodes both and returns the logits in both directions, as UniCL computes them.
    pub fn logits(&self, images: Tensor<4>, ids: Tensor<2, Int>) -> Result<Logits> {
        let u = self.encode_image(images)?;
        let v = self.encode_text(ids)?;
        self.logits_from_embeddings(u, v)
    }

    /// UniCL's `forward`: `(image embeddings, text embeddings, exp(logit_scale))`.
    pub fn forward(&self, images: Tensor<4>, ids: Tensor<2, Int>) -> Result<(Tensor<2>, Tensor<2>, Tensor<1>)> {
        Ok((self.encode_image(images)?, self.encode_text(ids)?, self.scale()))
    }
}
