//! UniCL's text `Transformer` (`model/text_encoder/transformer.py`): token + positional
//! embedding, pre-LN residual blocks under a causal mask, final LayerNorm; the pooled feature is
//! the hidden state at the end-of-text position, found as [`TextPooling`] says (UniCL's argmax of
//! the ids by default, or the first occurrence of a configured end-of-text id).

use burn::module::Param;
use burn::nn::{Embedding, EmbeddingConfig, Initializer, LayerNorm};
use burn::prelude::*;

use crate::layers::layer_norm;
use burn::tensor::DType;

use super::block::ResidualAttentionBlock;
use super::config::{TextEncoderConfig, TextPooling};
use crate::error::{FlorenceError, Result};
use crate::layers::drop_path::{DropPathNoise, check_noise, linear_rates, site};

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
    /// How the pooled position of each row is found ([`TextEncoderConfig::pooling`]).
    #[module(skip)]
    pub pooling: TextPooling,
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
            resblocks: linear_rates(self.drop_path_rate, self.layers)
                .into_iter()
                .enumerate()
                .map(|(i, rate)| {
                    let mut block = ResidualAttentionBlock::new(self.width, self.heads, self.layer_norm_eps, device);
                    block.drop_path = rate;
                    block.site = site::block(site::TEXT, i);
                    block.drop_path_per = self.drop_path_per;
                    block
                })
                .collect(),
            ln_final: layer_norm(self.width, self.layer_norm_eps, device),
            causal: self.causal,
            context_length: self.context_length,
            vocab_size: self.vocab_size,
            pooling: self.pooling,
        })
    }
}

/// Token ids of a batch, read back to the host once for validation and pooling.
pub(crate) struct HostIds {
    pub ids: Vec<i64>,
    pub len: usize,
}

impl HostIds {
    /// The pooled position of each row.
    ///
    /// * [`TextPooling::Argmax`]: the first occurrence of the row's largest id. With the CLIP
    ///   tokenizer the end-of-text token (49407) is the largest id and also the padding, so this
    ///   is the first EOS, exactly as UniCL's `input_ids.argmax(dim=-1)` picks it; a row of equal
    ///   ids (all zero padding, say) gives position 0, as `argmax` does.
    /// * [`TextPooling::EotId`]: the first occurrence of that id; a row without it is a
    ///   [`FlorenceError::Input`] naming the row.
    pub fn pooled_positions(&self, pooling: TextPooling) -> Result<Vec<usize>> {
        let rows = self.ids.chunks(self.len);
        match pooling {
            TextPooling::Argmax => Ok(rows
                .map(|row| {
                    let mut best = 0;
                    for (i, &v) in row.iter().enumerate() {
                        if v > row[best] {
                            best = i;
                        }
                    }
                    best
                })
                .collect()),
            TextPooling::EotId(eot) => rows
                .enumerate()
                .map(|(r, row)| {
                    row.iter().position(|&v| v == i64::from(eot)).ok_or_else(|| {
                        FlorenceError::Input(format!(
                            "text row {r} has no end-of-text token (id {eot}, the configured `text.pooling.eot_id`) \
                             among its {} ids; tokenize with the model's tokenizer, which ends every row with it",
                            self.len
                        ))
                    })
                })
                .collect(),
        }
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
        Ok(self.forward_unchecked(ids, None))
    }

    pub(crate) fn forward_unchecked(&self, ids: Tensor<2, Int>, noise: Option<&DropPathNoise>) -> Tensor<3> {
        let [_, len] = ids.dims();
        let device = ids.device();
        let pos = self.positional_embedding.val().slice_dim(0, 0..len).unsqueeze_dim::<3>(0);
        let mut x = self.token_embedding.forward(ids) + pos;
        let mask = self.causal.then(|| self.causal_mask(len, &device, x.dtype()));
        for blk in &self.resblocks {
            x = blk.forward_with_noise(x, mask.clone(), noise);
        }
        self.ln_final.forward(x)
    }

    /// `ids: [B, L]` -> pooled features `[B, W]` at each row's end-of-text position (chosen by
    /// [`TextEncoder::pooling`]). With [`TextPooling::EotId`], a row without that id is an error.
    pub fn forward_pooled(&self, ids: Tensor<2, Int>) -> Result<Tensor<2>> {
        self.forward_pooled_with_noise(ids, None)
    }

    /// [`Self::forward_pooled`] in training: stochastic depth (the config's `drop_path_rate`)
    /// drawn from `noise`, which needs one row per token row.
    pub fn forward_pooled_with_noise(&self, ids: Tensor<2, Int>, noise: Option<&DropPathNoise>) -> Result<Tensor<2>> {
        let host = self.check_ids(&ids)?;
        check_noise(noise, ids.dims()[0])?;
        let positions = host.pooled_positions(self.pooling)?;
        let hidden = self.forward_unchecked(ids, noise);
        Ok(pool_at(hidden, &positions))
    }
}

/// Gathers `hidden[b, pos[b], :]` -> `[B, W]`.
pub(crate) fn pool_at(hidden: Tensor<3>, pos: &[usize]) -> Tensor<2> {
    let [b, l, w] = hidden.dims();
    let rows: Vec<i64> = pos.iter().enumerate().map(|(i, &p)| (i * l + p) as i64).collect();
    let idx = Tensor::<1, Int>::from_data(TensorData::new(rows, [b]), &hidden.device());
    hidden.reshape([b * l, w]).select(0, idx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(rows: &[&[i64]]) -> HostIds {
        HostIds { ids: rows.concat(), len: rows[0].len() }
    }

    #[test]
    fn argmax_pools_at_the_first_largest_id() {
        // CLIP rows with zero and with EOS padding, a repeated maximum, and an all-padding row.
        let h = host(&[
            &[49406, 320, 1929, 49407, 0, 0],
            &[49406, 320, 49407, 49407, 49407, 49407],
            &[5, 9, 2, 9, 9, 1],
            &[0, 0, 0, 0, 0, 0],
        ]);
        assert_eq!(h.pooled_positions(TextPooling::Argmax).unwrap(), [3, 2, 1, 0]);
    }

    #[test]
    fn eot_id_pools_at_its_first_occurrence() {
        // EOT 3 is not the largest id: argmax would pick the 9s.
        let h = host(&[&[1, 9, 3, 0, 0], &[1, 3, 3, 3, 3], &[3, 9, 9, 9, 9], &[1, 4, 5, 9, 3]]);
        assert_eq!(h.pooled_positions(TextPooling::EotId(3)).unwrap(), [2, 1, 0, 4]);
        assert_eq!(h.pooled_positions(TextPooling::Argmax).unwrap(), [1, 1, 1, 3]);
        // With CLIP rows, the configured 49407 and argmax agree.
        let clip = host(&[&[49406, 320, 1929, 49407, 0, 0], &[49406, 320, 49407, 49407, 49407, 49407]]);
        assert_eq!(
            clip.pooled_positions(TextPooling::EotId(49407)).unwrap(),
            clip.pooled_positions(TextPooling::Argmax).unwrap()
        );
    }

    #[test]
    fn a_row_without_the_eot_id_is_an_input_error_naming_it() {
        let h = host(&[&[1, 3, 0], &[1, 2, 0], &[1, 2, 3]]);
        let e = h.pooled_positions(TextPooling::EotId(3)).unwrap_err();
        assert!(matches!(e, FlorenceError::Input(_)), "{e}");
        let msg = e.to_string();
        assert!(msg.contains("text row 1 ") && msg.contains("id 3"), "{msg}");
        let zeros = host(&[&[0, 0, 0, 0]]);
        assert!(matches!(zeros.pooled_positions(TextPooling::EotId(7)), Err(FlorenceError::Input(_))));
    }

    #[test]
    fn forward_pooled_uses_the_configured_pooling() {
        let device = crate::device::default_device().unwrap();
        let mut cfg = crate::config::FlorenceConfig::preset("tiny").unwrap().text;
        cfg.width = 8;
        cfg.heads = 2;
        cfg.layers = 1;
        cfg.context_length = 5;
        let argmax = cfg.init(&device).unwrap();
        let eot = TextEncoder { pooling: TextPooling::EotId(3), ..argmax.clone() };
        let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![1i64, 9, 3, 0, 0, 1, 3, 9, 9, 3], [2, 5]), &device);
        let hidden = argmax.forward(ids.clone()).unwrap();
        let rows = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(rows(argmax.forward_pooled(ids.clone()).unwrap()), rows(pool_at(hidden.clone(), &[1, 2])));
        assert_eq!(rows(eot.forward_pooled(ids).unwrap()), rows(pool_at(hidden, &[2, 1])));
        let missing = Tensor::<2, Int>::from_data(TensorData::new(vec![1i64, 9, 4, 0, 0], [1, 5]), &device);
        let e = eot.forward_pooled(missing).unwrap_err();
        assert!(e.to_string().contains("text row 0 "), "{e}");
    }
}
