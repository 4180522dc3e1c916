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
    /// How [`TextEncoder::forward_pooled`] shortens causal batches (see [`LengthCut`]).
    #[module(skip)]
    pub cut: LengthCut,
}

/// How a causal text tower skips the positions after each row's end-of-text token.
///
/// Under the causal mask the hidden state at position `p` depends only on positions `0..=p`, so
/// the pooled feature of a row is the same whether the row is run at its full length or cut to
/// `p + 1` (exactly, in real arithmetic; in f32 the attention sums run over fewer zero terms,
/// which leaves the result bit for bit equal in practice: `tests/parity.rs` holds it to 1e-6).
/// Typical prompts pool at position 5 to 20 of 77. A non-causal tower is never cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LengthCut {
    /// Cut each batch (or bucket) to its longest pooled position + 1. Off: every row runs at
    /// the length it was given (the reference's work, for benchmarks).
    pub enabled: bool,
    /// Batches of more rows than this are sorted by pooled position and run in buckets of this
    /// many rows, each cut to its own longest row, then put back in order (as Hugging Face's
    /// text-embeddings-inference batches by length). 0: one bucket, in the given order.
    pub bucket_rows: usize,
}

impl Default for LengthCut {
    fn default() -> Self {
        Self { enabled: true, bucket_rows: 64 }
    }
}

/// The rows of a batch grouped for the length cut: each group's rows (indices into the batch)
/// and the length to run them at. One group in the given order when the batch fits in a
/// bucket; otherwise rows sorted by pooled position (stably), `bucket` at a time.
pub fn length_buckets(positions: &[usize], bucket: usize) -> Vec<(Vec<usize>, usize)> {
    let longest = |rows: &[usize]| rows.iter().map(|&r| positions[r] + 1).max().unwrap_or(1);
    if bucket == 0 || positions.len() <= bucket {
        let rows: Vec<usize> = (0..positions.len()).collect();
        let len = longest(&rows);
        return vec![(rows, len)];
    }
    let mut order: Vec<usize> = (0..positions.len()).collect();
    order.sort_by_key(|&r| positions[r]);
    order
        .chunks(bucket)
        .map(|rows| {
            let len = longest(rows);
            (rows.to_vec(), len)
        })
        .collect()
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
            cut: LengthCut::default(),
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
        let [batch, len] = ids.dims();
        check_noise(noise, batch)?;
        let positions = host.pooled_positions(self.pooling)?;
        if !(self.causal && self.cut.enabled) {
            return Ok(pool_at(self.forward_unchecked(ids, noise), &positions));
        }
        let buckets = length_buckets(&positions, self.cut.bucket_rows);
        if let [(_, cut)] = buckets.as_slice() {
            // One bucket in the given order: only the cut.
            let ids = if *cut < len { ids.slice_dim(1, 0..*cut) } else { ids };
            return Ok(pool_at(self.forward_unchecked(ids, noise), &positions));
        }
        let device = ids.device();
        let index = |rows: &[usize]| {
            let rows: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
            Tensor::<1, Int>::from_data(TensorData::new(rows.clone(), [rows.len()]), &device)
        };
        let mut parts = Vec::with_capacity(buckets.len());
        let mut order = Vec::with_capacity(batch);
        for (rows, cut) in &buckets {
            let part = ids.clone().select(0, index(rows)).slice_dim(1, 0..*cut);
            let noise = noise.map(|n| n.select(rows));
            let pos: Vec<usize> = rows.iter().map(|&r| positions[r]).collect();
            parts.push(pool_at(self.forward_unchecked(part, noise.as_ref()), &pos));
            order.extend_from_slice(rows);
        }
        // Row `order[k]` of the batch is row k of the concatenation: invert the permutation.
        let mut inverse = vec![0usize; batch];
        for (k, &r) in order.iter().enumerate() {
            inverse[r] = k;
        }
        Ok(Tensor::cat(parts, 0).select(0, index(&inverse)))
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

    #[test]
    fn length_buckets_group_similar_rows_and_cover_the_batch() {
        let pos = [4, 0, 9, 2, 2, 7, 1];
        assert_eq!(length_buckets(&pos, 0), vec![((0..7).collect(), 10)]);
        assert_eq!(length_buckets(&pos, 7), vec![((0..7).collect(), 10)]);
        let b = length_buckets(&pos, 3);
        assert_eq!(b, vec![(vec![1, 6, 3], 3), (vec![4, 0, 5], 8), (vec![2], 10)]);
        let mut all: Vec<usize> = b.iter().flat_map(|(r, _)| r.clone()).collect();
        all.sort();
        assert_eq!(all, (0..7).collect::<Vec<_>>());
    }

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
