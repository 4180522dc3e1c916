//! The text tower's configuration: UniCL's CLIP-style text transformer
//! (https://github.com/microsoft/UniCL/blob/9983bf8/model/text_encoder/transformer.py).

use serde::{Deserialize, Serialize};

use crate::error::{FlorenceError, Result};

/// The CLIP-style text transformer of UniCL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextEncoderConfig {
    /// Vocabulary size (49,408 for the CLIP BPE tokenizer).
    pub vocab_size: usize,
    /// Maximum sequence length, including start and end tokens (77).
    pub context_length: usize,
    /// Model width.
    pub width: usize,
    /// Attention heads.
    pub heads: usize,
    /// Residual blocks.
    pub layers: usize,
    /// Causal (autoregressive) attention mask; UniCL's `AUTOGRESSIVE`, true for the Swin checkpoints.
    #[serde(default = "default_true")]
    pub causal: bool,
    /// LayerNorm epsilon. UniCL's "TF-style" LayerNorm uses 1e-12 (not CLIP's 1e-5).
    #[serde(default = "default_text_eps")]
    pub layer_norm_eps: f64,
    /// Which position of each token row is the pooled text feature (see [`TextPooling`]).
    /// JSON `"argmax"` (the default, UniCL's; omitted when default) or `{"eot_id": 49407}` (the
    /// first occurrence of that end-of-text id; a row without it is an input error). For CLIP-BPE
    /// rows (end-of-text 49407, the largest id, padding with zeros or with 49407) both pick the
    /// same position; `eot_id` is for tokenizers whose end-of-text id is not the largest.
    #[serde(default, skip_serializing_if = "is_default_pooling")]
    pub pooling: TextPooling,
    /// Stochastic depth: the drop-path rate of the last block, rising linearly from 0 (UniCL's
    /// text `Transformer(drop_path=...)`, `torch.linspace(0, drop_path, layers)`). Used only in
    /// training; omitted when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub drop_path_rate: f64,
    /// What one stochastic-depth draw covers: `position` (the default, UniCL's: its blocks run
    /// on `[L, B, W]` tensors, so timm's per-"sample" draw is per token position, shared across
    /// the batch) or `sample` (one draw per text, as in the image tower). Omitted when default.
    #[serde(default, skip_serializing_if = "is_default_unit")]
    pub drop_path_per: DropPathUnit,
}

/// What one stochastic-depth draw of the text tower covers (see
/// [`TextEncoderConfig::drop_path_per`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropPathUnit {
    /// One draw per token position, shared by every text of the batch (UniCL).
    #[default]
    Position,
    /// One draw per text.
    Sample,
}

fn is_default_unit(unit: &DropPathUnit) -> bool {
    *unit == DropPathUnit::default()
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

/// How the text tower picks the pooled position of each token row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextPooling {
    /// The first position holding the row's largest id: UniCL's and CLIP's
    /// `x[arange(B), text.argmax(-1)]`, which finds the end-of-text token because CLIP's
    /// (49407) is the largest id. The default: the UniCL checkpoints were trained with it. A row
    /// of equal ids (all padding, say) pools at position 0, as `argmax` does.
    #[default]
    Argmax,
    /// The first occurrence of this end-of-text id (`< vocab_size`). A row without it is a
    /// [`FlorenceError::Input`] naming the row.
    EotId(u32),
}

fn is_default_pooling(pooling: &TextPooling) -> bool {
    *pooling == TextPooling::default()
}

fn default_true() -> bool {
    true
}
fn default_text_eps() -> f64 {
    1e-12
}

impl TextEncoderConfig {
    /// The UniCL Swin-T/B text tower: CLIP BPE vocabulary, 77 tokens, width 512, 8 heads, 12 layers.
    pub fn unicl() -> Self {
        Self {
            vocab_size: 49_408,
            context_length: 77,
            width: 512,
            heads: 8,
            layers: 12,
            causal: true,
            layer_norm_eps: 1e-12,
            pooling: TextPooling::Argmax,
            drop_path_rate: 0.0,
            drop_path_per: DropPathUnit::Position,
        }
    }

    /// Checks that the config describes a buildable encoder.
    pub fn validate(&self) -> Result<()> {
        let err = |m: String| Err(FlorenceError::Config(format!("text: {m}")));
        if self.vocab_size < 2 || self.context_length < 2 || self.width == 0 || self.layers == 0 {
            return err("vocab_size and context_length must be at least 2, width and layers positive".into());
        }
        if self.heads == 0 || !self.width.is_multiple_of(self.heads) {
            return err(format!("width {} is not divisible by {} heads", self.width, self.heads));
        }
        if self.layer_norm_eps.is_nan() || self.layer_norm_eps <= 0.0 {
            return err("layer_norm_eps must be positive".into());
        }
        if !(0.0..1.0).contains(&self.drop_path_rate) {
            return err(format!("drop_path_rate must be in [0, 1), got {}", self.drop_path_rate));
        }
        if let TextPooling::EotId(id) = self.pooling
            && id as usize >= self.vocab_size
        {
            return err(format!(
                "`text.pooling.eot_id` {id} is outside the vocabulary of {} tokens (ids 0..{})",
                self.vocab_size, self.vocab_size
            ));
        }
        let limits = crate::limits::get();
        use crate::limits::check;
        let vocab = limits.max_model_vocab as u64;
        check("`text.vocab_size`", self.vocab_size as u64, vocab, "max_model_vocab")?;
        check("`text.context_length`", self.context_length as u64, vocab, "max_model_vocab")?;
        let width = limits.max_model_width as u64;
        check("`text.width`", self.width as u64, width, "max_model_width")?;
        check("`text.heads`", self.heads as u64, width, "max_model_width")?;
        check("`text.layers`", self.layers as u64, limits.max_model_depth as u64, "max_model_depth")?;
        check(
            "the text tower's parameter count",
            self.num_params() as u64,
            limits.max_model_params,
            "max_model_params",
        )?;
        Ok(())
    }

    /// Parameter count.
    pub fn num_params(&self) -> usize {
        let w = self.width;
        let block = 2 * w + (3 * w * w + 3 * w) + (w * w + w) + 2 * w + (4 * w * w + 4 * w) + (4 * w * w + w);
        self.vocab_size * w + self.context_length * w + self.layers * block + 2 * w
    }
}
