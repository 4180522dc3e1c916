//! Model configuration: serde structs with `init(&device)`, named presets and JSON I/O.
//!
//! Field meanings and values follow the public sources: Swin (Liu et al. 2021; timm's
//! `swin_transformer.py`), CvT convolutional embedding (`lib/models/cls_cvt.py` of microsoft/CvT),
//! and UniCL's text transformer and two-tower head
//! (https://github.com/microsoft/UniCL/blob/9983bf8/model/text_encoder/transformer.py,
//! `model/model.py`).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::attention::AttentionKind;
use crate::error::{FlorenceError, Result};

/// How the image is turned into tokens and how stages are downsampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmbeddingKind {
    /// Swin: a `patch_size` x `patch_size` stride-`patch_size` conv stem and 2x2 patch merging
    /// (LayerNorm(4C) then a bias-free Linear(4C, 2C)) between stages.
    Patch,
    /// CoSwin: CvT convolutional embeddings, a 7x7 stride-4 padding-2 conv stem and 3x3
    /// stride-2 padding-1 convs between stages, each followed by a LayerNorm.
    Conv,
}

/// The hierarchical (Swin / CoSwin) image encoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageEncoderConfig {
    /// The square image size the weights were built for. Window sizes are clamped and shifts
    /// disabled where a stage's feature map at this size is no larger than the window (as timm
    /// and the original Swin do); other input sizes still work (see `ImageEncoder`).
    pub image_size: usize,
    /// Stem stride for `patch` embedding (4 for every Swin). Ignored by `conv` embedding, whose
    /// stem is fixed at kernel 7, stride 4, padding 2 (CvT).
    #[serde(default = "default_patch_size")]
    pub patch_size: usize,
    /// Input channels.
    #[serde(default = "default_in_chans")]
    pub in_chans: usize,
    /// Channels of the first stage, C; stage i has C * 2^i.
    pub embed_dim: usize,
    /// Blocks per stage.
    pub depths: Vec<usize>,
    /// Attention heads per stage.
    pub num_heads: Vec<usize>,
    /// Window side length (7 for the UniCL checkpoints).
    pub window_size: usize,
    /// MLP hidden width as a multiple of the stage width.
    #[serde(default = "default_mlp_ratio")]
    pub mlp_ratio: f64,
    /// Bias on the packed q/k/v projection.
    #[serde(default = "default_true")]
    pub qkv_bias: bool,
    /// `patch` (Swin) or `conv` (CoSwin).
    pub embedding: EmbeddingKind,
    /// LayerNorm epsilon (PyTorch's default, 1e-5, in Swin and CvT).
    #[serde(default = "default_image_eps")]
    pub layer_norm_eps: f64,
    /// Window attention implementation: `fused` (default; CubeCL kernels on GPU backends) or
    /// `reference` (plain tensor ops). Not a property of the weights; omitted when default.
    #[serde(default, skip_serializing_if = "is_default_attention")]
    pub attention: AttentionKind,
    /// How blocks pad, shift and choose their windows (see `image::layout`). The default is
    /// timm's: roll then pad, windows fixed at `image_size`, as the UniCL checkpoints were
    /// trained; detection backbones use `{"order": "pad_then_roll", "mode": "runtime"}`. Not a
    /// property of the weights' shapes; omitted when default.
    #[serde(default, skip_serializing_if = "is_default_layout")]
    pub layout: crate::image::layout::BlockLayout,
}

fn is_default_layout(layout: &crate::image::layout::BlockLayout) -> bool {
    *layout == crate::image::layout::BlockLayout::default()
}

fn is_default_attention(kind: &AttentionKind) -> bool {
    *kind == AttentionKind::default()
}

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

/// A whole two-tower model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlorenceConfig {
    /// The image tower.
    pub image: ImageEncoderConfig,
    /// The text tower.
    pub text: TextEncoderConfig,
    /// Width of the shared embedding space (512 in every UniCL config).
    pub projection_dim: usize,
    /// Initial value of the learnable `logit_scale` (logits are `exp(logit_scale) * cos`).
    /// UniCL initialises it to 1.0; loaded checkpoints overwrite it.
    #[serde(default = "default_logit_scale")]
    pub logit_scale_init: f64,
    /// How images are prepared for these weights. Absent: UniCL's eval transform for
    /// `image.image_size` (see [`FlorenceConfig::preprocess`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preprocess: Option<crate::preprocess::PreprocessConfig>,
}

fn default_patch_size() -> usize {
    4
}
fn default_in_chans() -> usize {
    3
}
fn default_mlp_ratio() -> f64 {
    4.0
}
fn default_true() -> bool {
    true
}
fn default_image_eps() -> f64 {
    1e-5
}
fn default_text_eps() -> f64 {
    1e-12
}
fn default_logit_scale() -> f64 {
    1.0
}

/// Names accepted by [`FlorenceConfig::preset`].
pub const PRESETS: &[&str] =
    &["unicl-swin-t", "unicl-swin-b", "coswin-t", "florence-coswin-h", "tiny", "tiny-coswin", "tiny-clip"];

impl ImageEncoderConfig {
    /// Swin-T (UniCL `configs/unicl_swin_tiny.yaml`): C=96, depths `[2, 2, 6, 2]`, heads `[3, 6, 12, 24]`, window 7, 224.
    pub fn swin_t() -> Self {
        Self {
            image_size: 224,
            patch_size: 4,
            in_chans: 3,
            embed_dim: 96,
            depths: vec![2, 2, 6, 2],
            num_heads: vec![3, 6, 12, 24],
            window_size: 7,
            mlp_ratio: 4.0,
            qkv_bias: true,
            embedding: EmbeddingKind::Patch,
            layer_norm_eps: 1e-5,
            attention: AttentionKind::Fused,
            layout: Default::default(),
        }
    }

    /// Swin-B (UniCL `configs/unicl_swin_base.yaml`): C=128, depths `[2, 2, 18, 2]`, heads `[4, 8, 16, 32]`, window 7, 224.
    pub fn swin_b() -> Self {
        Self { embed_dim: 128, depths: vec![2, 2, 18, 2], num_heads: vec![4, 8, 16, 32], ..Self::swin_t() }
    }

    /// Number of stages.
    pub fn num_stages(&self) -> usize {
        self.depths.len()
    }

    /// Channels of stage `i`.
    pub fn stage_dim(&self, i: usize) -> usize {
        self.embed_dim << i
    }

    /// Feature-map size after the stem for an `h x w` image.
    pub fn stem_resolution(&self, (h, w): (usize, usize)) -> (usize, usize) {
        use crate::image::geometry::conv_out;
        match self.embedding {
            // Conv2d(k=p, s=p): floor(h / p), as timm's PatchEmbed with dynamic_img_pad=False.
            EmbeddingKind::Patch => (h / self.patch_size, w / self.patch_size),
            // CvT stem Conv2d(k=7, s=4, p=2).
            EmbeddingKind::Conv => (conv_out(h, 7, 4, 2), conv_out(w, 7, 4, 2)),
        }
    }

    /// Feature-map size of every stage for an `h x w` input.
    pub fn stage_resolutions(&self, hw: (usize, usize)) -> Vec<(usize, usize)> {
        let mut r = self.stem_resolution(hw);
        let mut out = Vec::with_capacity(self.num_stages());
        for i in 0..self.num_stages() {
            if i > 0 {
                r = crate::image::geometry::downsample_resolution(r);
            }
            out.push(r);
        }
        out
    }

    /// Window and shift of stage `i`, fixed at construction from the config's image size, per
    /// dimension as timm's `_calc_window_shift`: where the feature map is no larger than the
    /// window, the window shrinks to the map and the shift is 0. The shift is `window // 2` for
    /// the odd (shifted) blocks. Returns `((wh, ww), (sh, sw))`.
    pub fn stage_window(&self, i: usize) -> ((usize, usize), (usize, usize)) {
        let hw = self.stage_resolutions((self.image_size, self.image_size))[i];
        crate::image::geometry::clamp_window(hw, self.window_size)
    }

    /// Channels of the pooled feature (the last stage).
    pub fn num_features(&self) -> usize {
        self.stage_dim(self.num_stages().saturating_sub(1))
    }

    /// Checks that the config describes a buildable encoder.
    pub fn validate(&self) -> Result<()> {
        let err = |m: String| Err(FlorenceError::Config(format!("image: {m}")));
        if self.image_size == 0 || self.embed_dim == 0 || self.window_size == 0 || self.in_chans == 0 {
            return err("image_size, embed_dim, window_size and in_chans must be positive".into());
        }
        if self.embedding == EmbeddingKind::Patch && self.patch_size == 0 {
            return err("patch_size must be positive".into());
        }
        if self.depths.is_empty() {
            return err("depths must list at least one stage".into());
        }
        if self.depths.len() != self.num_heads.len() {
            return err(format!("depths has {} stages but num_heads has {}", self.depths.len(), self.num_heads.len()));
        }
        if self.depths.len() > 8 {
            return err(format!("{} stages is more than the 8 supported", self.depths.len()));
        }
        for (i, &h) in self.num_heads.iter().enumerate() {
            let d = self.stage_dim(i);
            if h == 0 || !d.is_multiple_of(h) {
                return err(format!("stage {i}: width {d} is not divisible by {h} heads"));
            }
        }
        if !(self.mlp_ratio > 0.0 && self.mlp_ratio.is_finite()) {
            return err(format!("mlp_ratio must be positive, got {}", self.mlp_ratio));
        }
        if self.layer_norm_eps.is_nan() || self.layer_norm_eps <= 0.0 {
            return err("layer_norm_eps must be positive".into());
        }
        self.check_limits(&crate::limits::get())
    }

    /// The sizes of [`ImageEncoderConfig::validate`] against `limits` (every size a tensor is
    /// built from, so that a config cannot ask for an allocation that aborts the process).
    fn check_limits(&self, limits: &crate::limits::Limits) -> Result<()> {
        use crate::limits::check;
        let side = limits.max_model_image_size as u64;
        check("`image.image_size`", self.image_size as u64, side, "max_model_image_size")?;
        check("`image.window_size`", self.window_size as u64, side, "max_model_image_size")?;
        check("`image.patch_size`", self.patch_size as u64, side, "max_model_image_size")?;
        let width = limits.max_model_width as u64;
        check("`image.in_chans`", self.in_chans as u64, width, "max_model_width")?;
        let depth = limits.max_model_depth as u64;
        for (i, (&d, &h)) in self.depths.iter().zip(&self.num_heads).enumerate() {
            check(format!("`image.depths[{i}]`"), d as u64, depth, "max_model_depth")?;
            check(format!("`image.num_heads[{i}]`"), h as u64, width, "max_model_width")?;
            // embed_dim << i, checked without overflowing.
            let dim = (self.embed_dim as u64).checked_shl(i as u32).unwrap_or(u64::MAX);
            check(format!("the width of stage {i} (`image.embed_dim` * 2^{i})"), dim, width, "max_model_width")?;
            let hidden = dim as f64 * self.mlp_ratio;
            let hidden = if hidden < u64::MAX as f64 { hidden as u64 } else { u64::MAX };
            check(format!("the MLP width of stage {i} (`image.mlp_ratio` * width)"), hidden, width, "max_model_width")?;
        }
        let params = self.num_params() as u64;
        check("the image tower's parameter count", params, limits.max_model_params, "max_model_params")?;
        Ok(())
    }

    /// Parameter count, from the modules' shapes (no classifier head).
    pub fn num_params(&self) -> usize {
        let c = self.embed_dim;
        let mut n = match self.embedding {
            // conv stem + bias + LayerNorm
            EmbeddingKind::Patch => self.in_chans * c * self.patch_size * self.patch_size + c + 2 * c,
            EmbeddingKind::Conv => self.in_chans * c * 49 + c + 2 * c,
        };
        let hidden = |d: usize| (d as f64 * self.mlp_ratio) as usize;
        for (i, (&depth, &heads)) in self.depths.iter().zip(&self.num_heads).enumerate() {
            let d = self.stage_dim(i);
            let w = self.stage_window(i).0;
            let table = (2 * w.0 - 1) * (2 * w.1 - 1) * heads;
            let qkv = 3 * d * d + if self.qkv_bias { 3 * d } else { 0 };
            let block = 2 * d + qkv + table + (d * d + d) + 2 * d + (d * hidden(d) + hidden(d)) + (hidden(d) * d + d);
            n += depth * block;
            if i + 1 < self.num_stages() {
                n += match self.embedding {
                    EmbeddingKind::Patch => 2 * 4 * d + 4 * d * 2 * d,
                    EmbeddingKind::Conv => 9 * d * 2 * d + 2 * d + 2 * 2 * d,
                };
            }
        }
        n + 2 * self.num_features()
    }
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

impl FlorenceConfig {
    /// A named preset; see [`PRESETS`].
    ///
    /// * `unicl-swin-t`, `unicl-swin-b`: exactly the architectures of the public UniCL checkpoints.
    /// * `coswin-t`: Swin-T sizes with CvT convolutional embedding (Florence's CoSwin at Swin-T scale).
    /// * `florence-coswin-h`: the paper's size class. The paper gives only: CoSwin image encoder,
    ///   637M image parameters, a 12-layer text transformer of 256M parameters, 224 pre-training
    ///   resolution. C=256, depths `[2, 2, 40, 2]`, heads `[8, 16, 32, 64]`, window 7 are an **assumption**
    ///   (one of the configs that lands at 637.5M with conv embedding, the Florence paper's 637M, arXiv:2111.11432 §2.3); the
    ///   text width 1024 / 16 heads (UniCL's config defaults, 202M with the CLIP vocabulary, not
    ///   256M) and the projection width 512 are assumptions too.
    /// * `tiny`, `tiny-coswin`: small configs for tests (the fixtures in `tests/fixtures`);
    ///   `tiny-clip`: `tiny` with the CLIP vocabulary and context (end-to-end tests).
    pub fn preset(name: &str) -> Result<Self> {
        let c = match name {
            "unicl-swin-t" => Self {
                image: ImageEncoderConfig::swin_t(),
                text: TextEncoderConfig::unicl(),
                projection_dim: 512,
                logit_scale_init: 1.0,
                preprocess: None,
            },
            "unicl-swin-b" => Self { image: ImageEncoderConfig::swin_b(), ..Self::preset("unicl-swin-t")? },
            "coswin-t" => Self {
                image: ImageEncoderConfig { embedding: EmbeddingKind::Conv, ..ImageEncoderConfig::swin_t() },
                ..Self::preset("unicl-swin-t")?
            },
            "florence-coswin-h" => Self {
                image: ImageEncoderConfig {
                    embed_dim: 256,
                    depths: vec![2, 2, 40, 2],
                    num_heads: vec![8, 16, 32, 64],
                    embedding: EmbeddingKind::Conv,
                    ..ImageEncoderConfig::swin_t()
                },
                text: TextEncoderConfig { width: 1024, heads: 16, ..TextEncoderConfig::unicl() },
                projection_dim: 512,
                logit_scale_init: 1.0,
                preprocess: None,
            },
            "tiny" => Self {
                image: ImageEncoderConfig {
                    image_size: 64,
                    embed_dim: 12,
                    depths: vec![2, 2, 2, 2],
                    num_heads: vec![1, 2, 4, 8],
                    window_size: 4,
                    ..ImageEncoderConfig::swin_t()
                },
                text: TextEncoderConfig {
                    vocab_size: 1000,
                    context_length: 16,
                    width: 32,
                    heads: 4,
                    layers: 2,
                    ..TextEncoderConfig::unicl()
                },
                projection_dim: 24,
                logit_scale_init: 1.0,
                preprocess: None,
            },
            // The tiny image tower with a text tower that takes the real CLIP tokenizer's ids
            // (vocabulary 49,408, context 77) at a tiny width: end-to-end tests from text to
            // class probabilities.
            "tiny-clip" => {
                let mut c = Self::preset("tiny")?;
                c.text = TextEncoderConfig { width: 16, heads: 2, layers: 2, ..TextEncoderConfig::unicl() };
                c
            }
            "tiny-coswin" => {
                let mut c = Self::preset("tiny")?;
                c.image.embedding = EmbeddingKind::Conv;
                c
            }
            other => {
                return Err(FlorenceError::UnknownPreset { name: other.to_string(), available: PRESETS.join(", ") });
            }
        };
        Ok(c)
    }

    /// The preprocessing for these weights: the explicit `preprocess` section, else UniCL's
    /// evaluation transform at the image size (shorter side to `int(256 / 224 * S)` with bicubic,
    /// centre crop S, ImageNet mean and std; UniCL's `build_transform` in
    /// https://github.com/microsoft/UniCL/blob/9983bf8/data/build.py).
    pub fn preprocess(&self) -> crate::preprocess::PreprocessConfig {
        self.preprocess
            .clone()
            .unwrap_or_else(|| crate::preprocess::PreprocessConfig::unicl(self.image.image_size as u32))
    }

    /// Checks the whole config.
    pub fn validate(&self) -> Result<()> {
        if let Some(p) = &self.preprocess {
            p.validate()?;
            if p.crop as usize != self.image.image_size {
                return Err(FlorenceError::Config(format!(
                    "preprocess.crop is {} but image.image_size is {}; they must agree",
                    p.crop, self.image.image_size
                )));
            }
        }
        self.image.validate()?;
        self.text.validate()?;
        if self.projection_dim == 0 {
            return Err(FlorenceError::Config("projection_dim must be positive".into()));
        }
        if !self.logit_scale_init.is_finite() {
            return Err(FlorenceError::Config("logit_scale_init must be finite".into()));
        }
        let limits = crate::limits::get();
        let width = limits.max_model_width as u64;
        crate::limits::check("`projection_dim`", self.projection_dim as u64, width, "max_model_width")?;
        crate::limits::check(
            "the model's parameter count",
            self.num_params() as u64,
            limits.max_model_params,
            "max_model_params",
        )?;
        Ok(())
    }

    /// Parameter count of the whole model (towers, projections and the logit scale).
    pub fn num_params(&self) -> usize {
        self.image.num_params()
            + self.text.num_params()
            + (self.image.num_features() + self.text.width) * self.projection_dim
            + 1
    }

    /// Parses and validates a JSON config.
    pub fn from_json(json: &str) -> Result<Self> {
        let c: Self = serde_json::from_str(json)
            .map_err(|source| FlorenceError::ConfigParse { path: "<string>".into(), source })?;
        c.validate()?;
        Ok(c)
    }

    /// The config as pretty JSON.
    pub fn to_json(&self) -> String {
        // Serialising plain numbers, strings and vectors cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Loads and validates a JSON config file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = crate::files::read_text_file(path)?;
        let c: Self =
            serde_json::from_str(&text).map_err(|source| FlorenceError::ConfigParse { path: path.into(), source })?;
        c.validate()?;
        Ok(c)
    }

    /// Writes the config as JSON.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        std::fs::write(path, self.to_json()).map_err(|source| FlorenceError::Io { path: path.into(), source })
    }

    /// A preset name or a path to a JSON file.
    pub fn from_preset_or_file(spec: &str) -> Result<Self> {
        if PRESETS.contains(&spec) || !Path::new(spec).exists() && !spec.ends_with(".json") {
            Self::preset(spec)
        } else {
            Self::load(spec)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_validate_and_roundtrip_json() {
        for name in PRESETS {
            let c = FlorenceConfig::preset(name).unwrap();
            c.validate().unwrap();
            assert_eq!(FlorenceConfig::from_json(&c.to_json()).unwrap(), c, "{name}");
        }
        assert!(matches!(FlorenceConfig::preset("swin-xxl"), Err(FlorenceError::UnknownPreset { .. })));
    }

    #[test]
    fn config_files_round_trip() {
        let dir = std::env::temp_dir().join(format!("florence-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("coswin.json");
        let c = FlorenceConfig::preset("coswin-t").unwrap();
        c.save(&path).unwrap();
        assert_eq!(FlorenceConfig::load(&path).unwrap(), c);
        assert_eq!(FlorenceConfig::from_preset_or_file(path.to_str().unwrap()).unwrap(), c);
        assert_eq!(FlorenceConfig::from_preset_or_file("coswin-t").unwrap(), c);
        let missing = dir.join("nope.json");
        assert!(matches!(FlorenceConfig::load(&missing), Err(FlorenceError::Io { .. })));
        std::fs::write(&path, "{").unwrap();
        assert!(matches!(FlorenceConfig::load(&path), Err(FlorenceError::ConfigParse { .. })));
    }

    #[test]
    fn parameter_counts_match_the_spec() {
        // UniCL Swin-T = 91.34M, Swin-B = 150.70M: the modules of https://github.com/microsoft/UniCL/blob/9983bf8/model/model.py
        // with configs/unicl_swin_{tiny,base}.yaml.
        let t = FlorenceConfig::preset("unicl-swin-t").unwrap().num_params();
        let b = FlorenceConfig::preset("unicl-swin-b").unwrap().num_params();
        assert_eq!((t as f64 / 1e4).round() / 100.0, 91.34, "{t}");
        assert_eq!((b as f64 / 1e4).round() / 100.0, 150.70, "{b}");
        // torchvision swin_b = 87,768,224 with its 1000-class head (1024*1000 + 1000).
        assert_eq!(ImageEncoderConfig::swin_b().num_params() + 1024 * 1000 + 1000, 87_768_224);
        // §1.2: C=256, depths [2,2,40,2] with conv embedding = 637.52M.
        let h = FlorenceConfig::preset("florence-coswin-h").unwrap().image.num_params();
        assert_eq!((h as f64 / 1e4).round() / 100.0, 637.52, "{h}");
    }

    #[test]
    fn swin_t_stage_geometry() {
        let c = FlorenceConfig::preset("unicl-swin-t").unwrap().image;
        assert_eq!(c.stage_resolutions((224, 224)), vec![(56, 56), (28, 28), (14, 14), (7, 7)]);
        assert_eq!(c.stage_window(0), ((7, 7), (3, 3)));
        // Stage 3 is 7x7: the window covers it and the shift is dropped (no attn_mask buffer there).
        assert_eq!(c.stage_window(3), ((7, 7), (0, 0)));
        let t = FlorenceConfig::preset("tiny").unwrap().image;
        assert_eq!(t.stage_resolutions((72, 88)), vec![(18, 22), (9, 11), (5, 6), (3, 3)]);
        assert_eq!(t.stage_window(3), ((2, 2), (0, 0)));
        let co = FlorenceConfig::preset("coswin-t").unwrap().image;
        assert_eq!(co.stage_resolutions((384, 384)), vec![(96, 96), (48, 48), (24, 24), (12, 12)]);
    }

    #[test]
    fn bad_configs_are_rejected_with_the_field_named() {
        let mut c = FlorenceConfig::preset("tiny").unwrap();
        c.image.num_heads[1] = 5;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("stage 1") && e.contains("5 heads"), "{e}");
        let mut c = FlorenceConfig::preset("tiny").unwrap();
        c.text.heads = 3;
        assert!(c.validate().unwrap_err().to_string().contains("text"));
        let e = FlorenceConfig::from_json("{\"image\": 3}").unwrap_err();
        assert!(matches!(e, FlorenceError::ConfigParse { .. }), "{e}");
        let mut v: serde_json::Value =
            serde_json::from_str(&FlorenceConfig::preset("tiny").unwrap().to_json()).unwrap();
        v["image"]["windw_size"] = 7.into();
        let e = FlorenceConfig::from_json(&v.to_string()).unwrap_err().to_string();
        assert!(e.contains("windw_size"), "{e}");
    }

    /// Regression: `"image_size": 1000000000` used to abort the process in `florence classify
    /// --config` (an allocation of 62,500,000,000,000,000 bytes); every size is now bounded by
    /// `crate::limits` before anything is built, and the error names the field.
    #[test]
    fn sizes_beyond_the_limits_are_errors_naming_the_field() {
        type Edit = fn(&mut FlorenceConfig);
        let cases: [(&str, Edit); 8] = [
            ("`image.image_size`", |c| c.image.image_size = 1_000_000_000),
            ("`image.window_size`", |c| c.image.window_size = usize::MAX / 2),
            ("stage 0", |c| c.image.embed_dim = 1 << 40),
            ("MLP width of stage 0", |c| c.image.mlp_ratio = 1e300),
            ("`image.depths[1]`", |c| c.image.depths[1] = 1 << 30),
            ("`text.vocab_size`", |c| c.text.vocab_size = usize::MAX),
            ("`text.layers`", |c| c.text.layers = 1 << 40),
            ("`projection_dim`", |c| c.projection_dim = 1 << 33),
        ];
        for (field, edit) in cases {
            let mut c = FlorenceConfig::preset("tiny").unwrap();
            edit(&mut c);
            let e = c.validate().unwrap_err();
            assert!(matches!(e, FlorenceError::Limit(_)), "{field}: {e}");
            assert!(e.to_string().contains(field), "{field}: {e}");
            let json = c.to_json();
            assert!(matches!(FlorenceConfig::from_json(&json), Err(FlorenceError::Limit(_))), "{field}");
        }
        // Each size in range but a model too large to allocate: the parameter count is checked.
        let mut c = FlorenceConfig::preset("tiny").unwrap();
        c.text.width = 32_768;
        c.text.heads = 8;
        c.text.layers = 512;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("parameter count"), "{e}");
    }

    #[test]
    fn text_pooling_defaults_to_argmax_and_checks_the_eot_id() {
        // Every preset keeps UniCL's argmax pooling and its JSON does not mention pooling, so
        // saved configs and configs written before the setting existed read back unchanged.
        for name in PRESETS {
            let c = FlorenceConfig::preset(name).unwrap();
            assert_eq!(c.text.pooling, TextPooling::Argmax, "{name}");
            assert!(!c.to_json().contains("pooling"), "{name}");
        }
        let tiny = FlorenceConfig::preset("tiny").unwrap().to_json();
        let mut v: serde_json::Value = serde_json::from_str(&tiny).unwrap();
        v["text"]["pooling"] = "argmax".into();
        assert_eq!(FlorenceConfig::from_json(&v.to_string()).unwrap().text.pooling, TextPooling::Argmax);
        v["text"]["pooling"] = serde_json::json!({"eot_id": 999});
        let c = FlorenceConfig::from_json(&v.to_string()).unwrap();
        assert_eq!(c.text.pooling, TextPooling::EotId(999));
        assert!(c.to_json().contains("\"eot_id\": 999"), "{}", c.to_json());
        assert_eq!(FlorenceConfig::from_json(&c.to_json()).unwrap(), c);
        // The id must lie in the vocabulary (1000 tokens here).
        v["text"]["pooling"] = serde_json::json!({"eot_id": 1000});
        let e = FlorenceConfig::from_json(&v.to_string()).unwrap_err();
        assert!(matches!(e, FlorenceError::Config(_)), "{e}");
        assert!(e.to_string().contains("`text.pooling.eot_id` 1000"), "{e}");
        let mut c = FlorenceConfig::preset("unicl-swin-t").unwrap();
        c.text.pooling = TextPooling::EotId(49_408);
        assert!(matches!(c.validate(), Err(FlorenceError::Config(_))));
        c.text.pooling = TextPooling::EotId(49_407);
        c.validate().unwrap();
        use serde_json::json;
        for bad in [json!("eot"), json!({"eot_id": -1}), json!({"eot_id": 1, "x": 2})] {
            v["text"]["pooling"] = bad.clone();
            let e = FlorenceConfig::from_json(&v.to_string()).unwrap_err();
            assert!(matches!(e, FlorenceError::ConfigParse { .. }), "{bad}: {e}");
        }
    }
}
