//! The image tower's configuration: Swin (Liu et al. 2021; timm's `swin_transformer.py`) and
//! CoSwin, Swin with CvT convolutional embeddings (`lib/models/cls_cvt.py` of microsoft/CvT).

use serde::{Deserialize, Serialize};

use super::layout::BlockLayout;
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
    pub layout: BlockLayout,
    /// Stochastic depth: the drop-path rate of the last block, rising linearly from 0 over all
    /// blocks (timm's and UniCL's `drop_path_rate`; UniCL trains Swin-T with 0.2). Used only in
    /// training; omitted when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub drop_path_rate: f64,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

fn is_default_layout(layout: &BlockLayout) -> bool {
    *layout == BlockLayout::default()
}

fn is_default_attention(kind: &AttentionKind) -> bool {
    *kind == AttentionKind::default()
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
            drop_path_rate: 0.0,
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
        if !(0.0..1.0).contains(&self.drop_path_rate) {
            return err(format!("drop_path_rate must be in [0, 1), got {}", self.drop_path_rate));
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
