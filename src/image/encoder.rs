//! The hierarchical image encoder (Swin or CoSwin), in one implementation.

use burn::nn::LayerNorm;
use burn::prelude::*;

use crate::layers::layer_norm;

use super::block::SwinBlock;
use super::config::{EmbeddingKind, ImageEncoderConfig};
use super::embed::ConvEmbed;
use super::merge::PatchMerging;
use super::stage::{Downsample, Stage};
use crate::attention::AttentionKind;
use crate::error::{FlorenceError, Result};
use crate::layers::drop_path::{DropPathNoise, check_noise, linear_rates, site};

/// A per-stage feature map, as a detection neck consumes it.
#[derive(Debug, Clone)]
pub struct FeatureMap {
    /// `[B, H, W, C]` (NHWC), the stage's blocks' output before downsampling (no extra norm).
    pub tensor: Tensor<4>,
    /// Channels, `C * 2^i`.
    pub channels: usize,
    /// Input pixels per feature pixel: 4, 8, 16, 32.
    pub stride: usize,
}

impl FeatureMap {
    /// The map as `[B, C, H, W]`.
    pub fn to_nchw(&self) -> Tensor<4> {
        self.tensor.clone().permute([0, 3, 1, 2])
    }
}

/// What a stage gives an adapter, known without running a forward (timm's `feature_info`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FeatureInfo {
    /// Stage index.
    pub stage: usize,
    /// Channels of its map, `C * 2^i`.
    pub channels: usize,
    /// Input pixels per map pixel (4, 8, 16, 32).
    pub stride: usize,
    /// The module path of the stage (`layers.{i}`).
    pub module: String,
}

/// What [`ImageEncoder::forward_intermediates`] returns.
#[derive(Debug, Clone)]
pub struct Intermediates {
    /// The chosen stages' maps, `[B, C_i, H_i, W_i]` (NCHW), in the order asked for, each after
    /// its output norm where the encoder has one (see [`ImageEncoder::with_out_norms`]).
    pub maps: Vec<Tensor<4>>,
    /// The last stage's tokens after the final norm, before pooling: `[B, h * w, C_last]`
    /// (row-major over the map; METER's image tokens).
    pub tokens: Tensor<3>,
    /// The last stage's map size `(h, w)`.
    pub grid: (usize, usize),
}

impl ImageEncoderConfig {
    /// Channels and stride of every stage, from the config alone.
    pub fn feature_info(&self) -> Vec<FeatureInfo> {
        let stem = match self.embedding {
            EmbeddingKind::Patch => self.patch_size,
            EmbeddingKind::Conv => 4,
        };
        (0..self.num_stages())
            .map(|i| FeatureInfo {
                stage: i,
                channels: self.stage_dim(i),
                stride: stem << i,
                module: format!("layers.{i}"),
            })
            .collect()
    }
}

/// Swin/CoSwin image encoder. Keys: `patch_embed.*`, `layers.{i}.*`, `norm.*`.
#[derive(Module, Debug)]
pub struct ImageEncoder {
    /// The stem: Swin patch embedding or the CvT 7x7 stride-4 conv embedding.
    pub patch_embed: ConvEmbed,
    /// The stages.
    pub layers: Vec<Stage>,
    /// Final LayerNorm over the last stage's channels.
    pub norm: LayerNorm,
    /// Input channels.
    pub in_chans: usize,
    /// Minimum input side (the stem must produce at least one pixel).
    pub min_side: usize,
    /// Input pixels per stage-0 pixel (4 for both stems).
    pub stem_stride: usize,
    /// Optional per-stage output norms for adapters (detection backbones carry `norm{i}`
    /// layers on the stages they output); empty for the two-tower model.
    pub out_norms: Vec<Option<LayerNorm>>,
}

impl ImageEncoderConfig {
    /// Builds the encoder with freshly initialised weights.
    pub fn init(&self, device: &Device) -> Result<ImageEncoder> {
        self.validate()?;
        let eps = self.layer_norm_eps;
        let c = self.embed_dim;
        let patch_embed = match self.embedding {
            EmbeddingKind::Patch => ConvEmbed::new(self.in_chans, c, self.patch_size, self.patch_size, 0, eps, device),
            EmbeddingKind::Conv => ConvEmbed::new(self.in_chans, c, 7, 4, 2, eps, device),
        };
        let mut layers = Vec::with_capacity(self.num_stages());
        let resolutions = self.stage_resolutions((self.image_size, self.image_size));
        // timm's decay rule over all blocks of all stages.
        let rates = linear_rates(self.drop_path_rate, self.depths.iter().sum());
        let mut block_index = 0;
        // `i` also indexes depths, heads and the stage geometry helpers, not only `resolutions`.
        #[allow(clippy::needless_range_loop)]
        for i in 0..self.num_stages() {
            let d = self.stage_dim(i);
            let (window, shift) = self.stage_window(i);
            let first = block_index;
            block_index += self.depths[i];
            let blocks = (0..self.depths[i])
                .map(|j| {
                    let odd = j % 2 == 1;
                    let s = if odd { [shift.0, shift.1] } else { [0, 0] };
                    let nominal = if odd { [window.0 / 2, window.1 / 2] } else { [0, 0] };
                    let (win, heads) = ([window.0, window.1], self.num_heads[i]);
                    let mut block =
                        SwinBlock::new(d, heads, &win, &s, &nominal, self.mlp_ratio, self.qkv_bias, eps, device);
                    block.attn.attention = self.attention;
                    block.layout = self.layout;
                    block.drop_path = rates[first + j];
                    block.site = site::block(site::IMAGE, first + j);
                    block
                })
                .collect();
            let downsample = (i + 1 < self.num_stages()).then(|| match self.embedding {
                EmbeddingKind::Patch => Downsample::Merge(PatchMerging::new(d, eps, device)),
                EmbeddingKind::Conv => Downsample::Conv(ConvEmbed::new(d, 2 * d, 3, 2, 1, eps, device)),
            });
            layers.push(Stage { blocks, downsample, resolution: resolutions[i] });
        }
        let min_side = match self.embedding {
            EmbeddingKind::Patch => self.patch_size,
            EmbeddingKind::Conv => (1..).find(|&s| self.stem_resolution((s, s)).0 > 0).unwrap_or(1),
        };
        Ok(ImageEncoder {
            patch_embed,
            layers,
            norm: layer_norm(self.num_features(), eps, device),
            in_chans: self.in_chans,
            min_side,
            stem_stride: match self.embedding {
                EmbeddingKind::Patch => self.patch_size,
                EmbeddingKind::Conv => 4,
            },
            out_norms: Vec::new(),
        })
    }
}

impl ImageEncoder {
    /// Switches every block's window attention between the fused op and the reference ops
    /// (weights are untouched).
    pub fn with_attention(mut self, kind: AttentionKind) -> Self {
        for stage in &mut self.layers {
            for block in &mut stage.blocks {
                block.attn.attention = kind;
            }
        }
        self
    }

    fn check_input(&self, images: &Tensor<4>) -> Result<()> {
        let [b, c, h, w] = images.dims();
        if b == 0 {
            return Err(FlorenceError::Input("empty image batch".into()));
        }
        if c != self.in_chans {
            return Err(FlorenceError::Input(format!(
                "images must be [batch, {}, height, width] (NCHW), got [{b}, {c}, {h}, {w}]",
                self.in_chans
            )));
        }
        if h < self.min_side || w < self.min_side {
            return Err(FlorenceError::Input(format!(
                "images of {h}x{w} are too small: each side must be at least {} pixels",
                self.min_side
            )));
        }
        Ok(())
    }

    /// Runs the stem and every stage. `images: [B, C, H, W]` (normalised NCHW) -> per-stage
    /// feature maps (see [`FeatureMap`]) and the final map after `norm`, `[B, h, w, C_last]`.
    pub fn forward_stages(&self, images: Tensor<4>) -> Result<(Vec<FeatureMap>, Tensor<4>)> {
        self.forward_stages_with_noise(images, None)
    }

    /// [`Self::forward_stages`] in training: stochastic depth (the config's `drop_path_rate`)
    /// drawn from `noise`, which needs one row per image.
    pub fn forward_stages_with_noise(
        &self,
        images: Tensor<4>,
        noise: Option<&DropPathNoise>,
    ) -> Result<(Vec<FeatureMap>, Tensor<4>)> {
        self.check_input(&images)?;
        check_noise(noise, images.dims()[0])?;
        // Images arrive in f32 from preprocessing; the tower computes in its weights' float type
        // (f16/bf16 in mixed-precision training).
        let images = images.cast(self.norm.gamma.val().dtype());
        let mut x = self.patch_embed.forward_nchw(images);
        let mut maps = Vec::with_capacity(self.layers.len());
        for (i, stage) in self.layers.iter().enumerate() {
            let (features, next) = stage.forward_with_noise(x, noise);
            let channels = features.dims()[3];
            maps.push(FeatureMap { tensor: features, channels, stride: self.stem_stride << i });
            x = next;
        }
        Ok((maps, self.norm.forward(x)))
    }

    /// Adds a LayerNorm on the output of each of `stages` (freshly initialised; weights load as
    /// any other), as detection backbones have (`norm{i}` in mmdetection's Swin).
    pub fn with_out_norms(mut self, stages: &[usize], eps: f64, device: &Device) -> Self {
        self.out_norms = (0..self.layers.len())
            .map(|i| {
                stages.contains(&i).then(|| {
                    let c = self.layers[i].blocks.first().map_or(0, |b| b.norm1.gamma.dims()[0]);
                    layer_norm(c, eps, device)
                })
            })
            .collect();
        self
    }

    /// Runs the encoder once and returns the maps of `stages` (NCHW, after their output norms)
    /// and the final tokens before pooling. Window and shift decisions follow the config's
    /// `layout` (set `mode: runtime` for inputs far from `image_size`, e.g. 800x1333 detection
    /// inputs). `images: [B, C, H, W]`.
    pub fn forward_intermediates(&self, images: Tensor<4>, stages: &[usize]) -> Result<Intermediates> {
        self.forward_intermediates_with_noise(images, stages, None)
    }

    /// [`Self::forward_intermediates`] in training, with stochastic depth drawn from `noise`.
    pub fn forward_intermediates_with_noise(
        &self,
        images: Tensor<4>,
        stages: &[usize],
        noise: Option<&DropPathNoise>,
    ) -> Result<Intermediates> {
        if let Some(&bad) = stages.iter().find(|&&i| i >= self.layers.len()) {
            return Err(FlorenceError::Input(format!(
                "stage {bad} does not exist: the encoder has {} stages",
                self.layers.len()
            )));
        }
        let (maps, last) = self.forward_stages_with_noise(images, noise)?;
        let out = stages
            .iter()
            .map(|&i| {
                let t = maps[i].tensor.clone();
                let t = match self.out_norms.get(i) {
                    Some(Some(norm)) => norm.forward(t),
                    _ => t,
                };
                t.permute([0, 3, 1, 2])
            })
            .collect();
        let [b, h, w, c] = last.dims();
        Ok(Intermediates { maps: out, tokens: last.reshape([b, h * w, c]), grid: (h, w) })
    }

    /// Per-stage feature maps with their channels and strides (for detection necks).
    pub fn feature_maps(&self, images: Tensor<4>) -> Result<Vec<FeatureMap>> {
        Ok(self.forward_stages(images)?.0)
    }

    /// `images: [B, C, H, W]` -> pooled features `[B, C_last]`: final LayerNorm, then the mean
    /// over all tokens (Swin's `avgpool`).
    pub fn forward_features(&self, images: Tensor<4>) -> Result<Tensor<2>> {
        self.forward_features_with_noise(images, None)
    }

    /// [`Self::forward_features`] in training, with stochastic depth drawn from `noise`.
    pub fn forward_features_with_noise(&self, images: Tensor<4>, noise: Option<&DropPathNoise>) -> Result<Tensor<2>> {
        let (_, last) = self.forward_stages_with_noise(images, noise)?;
        let [b, h, w, c] = last.dims();
        Ok(last.reshape([b, h * w, c]).mean_dim(1).reshape([b, c]))
    }
}
