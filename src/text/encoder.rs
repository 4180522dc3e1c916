//! UniCL's text `Transformer` (`model/text_encoder/transformer.py`): token + positional
//! embedding, pre-LN residual blocks under a causal mask, final LayerNorm; the pooled feature is
//! the hidden state at the end-of-text position.

use burn::module::Param;
use burn::nn::{Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig};
use burn::prelude::*;
use burn::tensor::DType;

use super::block::ResidualAttentionBlock;
use crate::config::TextEncoderConfig;
use crate::error::{FlorenceError, Result};

/// The text tower. Keys: `token_embedding.weight`, `positional_embedding`, `resblocks.{i}.*`,
/// `ln_final.*`.
#[derive(Module, Debug)]
pub struct TextEncoder {
    /// `[vocab, W]`.
    pub token_embedding: Embedding,
    /// `[context_length, W]`.
    pub positional_embedding: Param<Tensor<2>>,
    /// The residual blocks.
    pub resblocks: Vec<ResidualAttentionBlock>,
    /// Final LayerNorm.
    pub ln_final: LayerNorm,
    /// Causal attention (UniCL `AUTOGRESSIVE`).
    pub causal: bool,
    /// Maximum sequence length.
    pub context_length: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
}

impl TextEncoderConfig {
    /// Builds the encoder with freshly initialised weights.
    pub fn init(&self, device: &Device) -> Result<TextEncoder> {
        self.validate()?;
        Ok(TextEncoder {
            token_embedding: EmbeddingConfig::new(self.vocab_size, self.width)
                .with_initializer(Initializer::Normal { mean: 0.0, std: 0.02 })
                .init(device),
            positional_embedding: Initializer::Normal { mean: 0.0, std: 0.01 }
                .init([self.context_length, self.width], device),
            resblocks: (0..self.layers)
                .map(|_| ResidualAttentionBlock::new(self.width, self.heads, self.layer_norm_eps, device))
                .collect(),
            ln_final: LayerNormConfig::new(self.width).with_epsilon(self.layer_norm_eps).init(device),
            causal: self.causal,
            context_length: self.context_length,
            vocab_size: self.vocab_size,
        })
    }
}

/// Token ids of a batch, read back to the host once for validation and pooling.
pub(crate) struct HostIds {
    pub ids: Vec<i64>,
    pub len: usize,
}

impl HostIds {
    /// The pooled position of each row: the first occurrence of the row's largest id. With the
    /// CLIP tokenizer the end-of-text token (49407) is the largest id and also the padding, so
    /// this is the first EOS, exactly as UniCL's `input_ids.argmax(dim=-1)` picks it.
    pub fn eos_positions(&self) -> Vec<usize> {
        self.ids
            .chunks(self.len)
            .map(|row| {
                let mut best = 0;
                for (i, &v) in row.iter().enumerate() {
                    if v > row[best] {
                        best = i;
                    }
                }
                best
            })
            .collect()
    }
}

impl TextEncoder {
    pub(crate) fn check_ids(&self, ids: &Tensor<2, Int>) -> Result<HostIds> {
        let [batch, len] = ids.dims();
        if batch == 0 {
            return Err(FlorenceError::Input("empty text batch".into()));
        }
        if len == 0 || len > self.context_length {
            return Err(FlorenceError::Input(format!(
                "token sequences must have 1 to {} ids (the context length), got {len}; tokenize with truncation",
                self.context_length
            )));
        }
        let ids: Vec<i64> = ids
            .to_data()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .map_err(|e| FlorenceError::Input(format!("cannot read token ids: {e:?}")))?;
        if let Some(bad) = ids.iter().find(|&&v| v < 0 || v as usize >= self.vocab_size) {
            return Err(FlorenceError::Input(format!(
                "token id {bad} is outside the vocabulary of {} tokens",
                self.vocab_size
            )));
        }
        Ok(HostIds { ids, len })
    }

    fn causal_mask(&self, len: usize, device: &Device, dtype: DType) -> Tensor<2> {
        // UniCL `build_attention_mask`: -inf strictly above the diagonal, added to the scores.
        let mask: Vec<f32> = (0..len * len).map(|k| if k % len > k / len { f32::NEG_INFINITY } else { 0.0 }).collect();
        Tensor::from_data(TensorData::new(mask, [len, len]), (device, dtype))
    }

    /// `ids: [B, L]` (L <= context length) -> last hidden state `[B, L, W]` after `ln_final`.
    ///
    /// Shorter sequences than the context length use the first L positional embeddings; under the
    /// causal mask this gives the same hidden states as padding to the full length.
    pub fn forward(&self, ids: Tensor<2, Int>) -> Result<Tensor<3>> {
        self.check_ids(&ids)?;
        Ok(self.forward_unchecked(ids))
    }

    pub(crate) fn forward_unchecked(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let [_, len] = ids.dims();
        let device = ids.device();
        let pos = self.positional_embedding.val().slice_dim(0, 0..len).unsqueeze_dim::<3>(0);
        let mut x = self.token_embedding.forward(ids) + pos;
        let mask = self.causal.then(|| self.causal_mask(len, &device, x.dtype()));
        for blk in &self.resblocks {
            x = blk.forward(x, mask.clone());
        }
        self.ln_final.forward(x)
    }

    /// `ids: [B, L]` -> pooled features `[B, W]` at each row's end-of-text position.
    pub fn forward_pooled(&self, ids: Tensor<2, Int>) -> Result<Tensor<2>> {
        let host = self.check_ids(&ids)?;
        let hidden = self.forward_unchecked(ids);
        Ok(pool_at(hidden, &host.eos_positions()))
    }
}

/// Gathers `hidden[b, pos[b], :]` -> `[B, W]`.
pub(crate) fn pool_at(hidden: Tensor<3>, pos: &[usize]) -> Tensor<2> {
    let [b, l, w] = hidden.dims();
    let rows: Vec<i64> = pos.iter().enumerate().map(|(i, &p)| (i * l + p) as i64).collect();
    let idx = Tensor::<1, Int>::from_data(TensorData::new(rows, [b]), &hidden.device());
    hidden.reshape([b * l, w]).select(0, idx)
}
