//! The CLIP BPE tokenizer, id for id equal to open_clip's `SimpleTokenizer` /
//! `open_clip.tokenize` (open_clip 3.2.0 `tokenizer.py`).
//!
//! Pipeline of [`Tokenizer::encode`]:
//! 1. [`clean_text`]: open_clip's `_clean_lower` (ftfy, `html.unescape` twice, whitespace
//!    folding, lower-casing);
//! 2. BPE through Hugging Face's `tokenizers` with the bundled `assets/tokenizer/clip_bpe.json`
//!    (built by `scripts/reference/make_tokenizer.py` from open_clip's
//!    `bpe_simple_vocab_16e6.txt.gz`: 49,408 ids, byte-level alphabet, `</w>` word ends,
//!    open_clip's split regex); a word that is literally `<start_of_text>` / `<end_of_text>`
//!    becomes the special id, as in `SimpleTokenizer.bpe`'s cache;
//! 3. `[sot] + ids + [eot]`, cut to the context length with the last id set to `eot`
//!    (`SimpleTokenizer.__call__`: `tokens = tokens[:context_length]; tokens[-1] = eot`).
//!
//! [`Tokenizer::encode_batch`] and [`Tokenizer::tokenize`] then pad to the context length with
//! the chosen [`Padding`].
//!
//! The ids are those of the CLIP vocabulary: a text tower with a smaller vocabulary (e.g. the
//! `tiny` test config, vocab 1000, context 16) cannot take them; tokenizing for such a model is
//! the caller's business (the model rejects out-of-vocabulary ids with a typed error).

use std::fmt;
use std::path::Path;

use burn::prelude::*;

use super::clean::clean_text;
use crate::error::{FlorenceError, Result};

/// The bundled tokenizer file (see `scripts/reference/make_tokenizer.py`).
const CLIP_BPE_JSON: &[u8] = include_bytes!("../../assets/tokenizer/clip_bpe.json");

/// CLIP's context length (open_clip `DEFAULT_CONTEXT_LENGTH`).
pub const DEFAULT_CONTEXT_LENGTH: usize = 77;
/// The start-of-text token (id 49406 in CLIP's vocabulary).
pub const SOT_TOKEN: &str = "<|startoftext|>";
/// The end-of-text token (id 49407 in CLIP's vocabulary).
pub const EOT_TOKEN: &str = "<|endoftext|>";

/// How [`Tokenizer::encode_batch`] / [`Tokenizer::tokenize`] fill a row after its `eot`.
///
/// Both give the same text embedding with a causal text tower that pools at the first maximal
/// id (UniCL, CLIP): `eot` is the largest id, so the pooled position is the real `eot` either
/// way, and the causal mask hides what follows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Padding {
    /// Zeros, as `open_clip.tokenize` (`torch.zeros(...)`).
    Zero,
    /// `<|endoftext|>` (49407), as UniCL's training (Hugging Face `CLIPTokenizer` with
    /// `padding='max_length'`, whose pad token is `<|endoftext|>`). The default, because the
    /// UniCL checkpoints florence loads were trained on these rows (and UniCL's
    /// non-causal mode masks `id == 0` keys, which this padding never triggers).
    #[default]
    Eos,
}

/// The CLIP BPE tokenizer with open_clip's clean-up. Cheap to clone.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    sot: u32,
    eot: u32,
    context_length: usize,
    padding: Padding,
}

impl fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("sot", &self.sot)
            .field("eot", &self.eot)
            .field("context_length", &self.context_length)
            .field("padding", &self.padding)
            .finish()
    }
}

impl Tokenizer {
    /// The bundled CLIP tokenizer (`assets/tokenizer/clip_bpe.json`), context length 77,
    /// [`Padding::Eos`].
    pub fn clip() -> Result<Tokenizer> {
        Self::from_bytes(CLIP_BPE_JSON, "the bundled clip_bpe.json")
    }

    /// A tokenizer from a `tokenizers` JSON file with `<|startoftext|>` and `<|endoftext|>` in
    /// its vocabulary (e.g. one written by `scripts/reference/make_tokenizer.py`). Its own
    /// truncation and padding settings are ignored; the text still goes through
    /// [`clean_text`] first.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Tokenizer> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| FlorenceError::Io { path: path.to_path_buf(), source })?;
        Self::from_bytes(&bytes, &path.display().to_string())
    }

    fn from_bytes(bytes: &[u8], name: &str) -> Result<Tokenizer> {
        let mut inner = tokenizers::Tokenizer::from_bytes(bytes).map_err(|e| {
            FlorenceError::Tokenizer(format!(
                "cannot load {name}: {e}. Expected a Hugging Face `tokenizers` JSON file \
                 (see scripts/reference/make_tokenizer.py)"
            ))
        })?;
        let id = |token: &str| {
            inner.token_to_id(token).ok_or_else(|| {
                FlorenceError::Tokenizer(format!("{name} has no `{token}` token; florence needs a CLIP BPE tokenizer"))
            })
        };
        let (sot, eot) = (id(SOT_TOKEN)?, id(EOT_TOKEN)?);
        // A literal "<|endoftext|>" in the text is ordinary text for open_clip.
        inner.set_encode_special_tokens(true);
        inner.with_truncation(None).map_err(|e| FlorenceError::Tokenizer(format!("{name}: {e}")))?;
        inner.with_padding(None);
        Ok(Tokenizer { inner, sot, eot, context_length: DEFAULT_CONTEXT_LENGTH, padding: Padding::default() })
    }

    /// Sets the context length (77 for CLIP/UniCL). Must be at least 2 to hold `sot` and `eot`;
    /// [`Tokenizer::encode`] fails otherwise.
    pub fn with_context_length(mut self, n: usize) -> Self {
        self.context_length = n;
        self
    }

    /// Sets what pads rows in [`Tokenizer::encode_batch`] and [`Tokenizer::tokenize`].
    pub fn with_padding(mut self, p: Padding) -> Self {
        self.padding = p;
        self
    }

    /// The context length rows are cut and padded to.
    pub fn context_length(&self) -> usize {
        self.context_length
    }

    /// The padding mode.
    pub fn padding(&self) -> Padding {
        self.padding
    }

    /// The number of ids (49,408 for CLIP).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The start-of-text id (49406 for CLIP).
    pub fn sot(&self) -> u32 {
        self.sot
    }

    /// The end-of-text id (49407 for CLIP).
    pub fn eot(&self) -> u32 {
        self.eot
    }

    /// `[sot] + BPE(clean_text(text)) + [eot]`, cut to the context length with the last id set
    /// to `eot`; not padded. The empty string gives `[sot, eot]`.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        if self.context_length < 2 {
            return Err(FlorenceError::Tokenizer(format!(
                "context length {} cannot hold the start and end tokens; use at least 2",
                self.context_length
            )));
        }
        let limit = crate::limits::get().max_text_bytes as u64;
        crate::limits::check_bytes("a text to encode", text.len() as u64, limit, "max_text_bytes")?;
        let cleaned = clean_text(text);
        let mut ids = Vec::with_capacity(self.context_length);
        ids.push(self.sot);
        self.bpe(&cleaned, &mut ids)?;
        ids.push(self.eot);
        if ids.len() > self.context_length {
            ids.truncate(self.context_length);
            ids[self.context_length - 1] = self.eot;
        }
        Ok(ids)
    }

    /// BPE ids of already cleaned text, appended to `out` (open_clip `SimpleTokenizer.encode`
    /// after its `clean_fn`).
    fn bpe(&self, cleaned: &str, out: &mut Vec<u32>) -> Result<()> {
        if cleaned.is_empty() {
            return Ok(());
        }
        let enc = self
            .inner
            .encode(cleaned, false)
            .map_err(|e| FlorenceError::Tokenizer(format!("cannot encode {cleaned:?}: {e}")))?;
        let (ids, tokens, words) = (enc.get_ids(), enc.get_tokens(), enc.get_word_ids());
        let mut i = 0;
        while i < ids.len() {
            // the tokens of one pre-tokenized word
            let mut j = i + 1;
            while j < ids.len() && words[j] == words[i] {
                j += 1;
            }
            // open_clip's split regex isolates `<start_of_text>` / `<end_of_text>` and its BPE
            // cache maps them to the special ids; the word's tokens spell it (ASCII is
            // byte-level identity) followed by `</w>`.
            let word: String = tokens[i..j].concat();
            match word.as_str() {
                "<start_of_text></w>" => out.push(self.sot),
                "<end_of_text></w>" => out.push(self.eot),
                _ => out.extend_from_slice(&ids[i..j]),
            }
            i = j;
        }
        Ok(())
    }

    /// [`Tokenizer::encode`] for each text, each row padded to the context length.
    pub fn encode_batch(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        let pad = match self.padding {
            Padding::Zero => 0,
            Padding::Eos => self.eot,
        };
        texts
            .iter()
            .map(|text| {
                let mut ids = self.encode(text)?;
                ids.resize(self.context_length, pad);
                Ok(ids)
            })
            .collect()
    }

    /// The padded ids of `texts` as an `Int` tensor.
    ///
    /// # Shapes
    /// - output: `[B, context_length]`, `B = texts.len()` (at least 1).
    pub fn tokenize(&self, texts: &[&str], device: &Device) -> Result<Tensor<2, Int>> {
        if texts.is_empty() {
            return Err(FlorenceError::Input("tokenize needs at least one text".into()));
        }
        let rows = self.encode_batch(texts)?;
        let flat: Vec<i64> = rows.iter().flatten().map(|&id| i64::from(id)).collect();
        Ok(Tensor::from_data(TensorData::new(flat, [texts.len(), self.context_length]), device))
    }
}
