//! One stage: `depth` Swin blocks, alternating unshifted and shifted windows, then (for all but
//! the last stage) the downsampler. This is the original Microsoft layout that UniCL checkpoints
//! use: `layers.{i}.blocks.{j}.*` and `layers.{i}.downsample.*` at the *end* of stage i.

use burn::prelude::*;
use burn::tensor::DType;

use super::block::SwinBlock;
use super::embed::ConvEmbed;
use super::merge::PatchMerging;
use crate::layers::DropPathNoise;

/// Between-stage downsampling: Swin patch merging or a CvT 3x3 stride-2 conv embedding.
#[derive(Module, Debug)]
pub enum Downsample {
    /// Swin: `downsample.{norm,reduction}`.
    Merge(PatchMerging),
    /// CoSwin: `downsample.{proj,norm}`.
    Conv(ConvEmbed),
}

impl Downsample {
    /// `[B, H, W, D] -> [B, ceil(H/2), ceil(W/2), 2D]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Self::Merge(m) => m.forward(x),
            Self::Conv(c) => c.forward(x),
        }
    }
}

/// A stage of the hierarchy.
#[derive(Module, Debug)]
pub struct Stage {
    /// The blocks; odd ones shift their windows.
    pub blocks: Vec<SwinBlock>,
    /// Downsampler applied after the blocks (absent in the last stage).
    pub downsample: Option<Downsample>,
    /// Feature-map size at the config's image size (what the checkpoint's `attn_mask` buffers
    /// were computed for).
    pub resolution: (usize, usize),
}

impl Stage {
    /// The shifted-window mask `[nW, N, N]` for an `h x w` map, in `dtype` (the activations'),
    /// shared by every shifted block of the stage (None when no block shifts at that size).
    pub fn shift_mask(&self, h: usize, w: usize, device: &Device, dtype: DType) -> Option<Tensor<3>> {
        self.blocks.iter().find_map(|b| b.shift_mask(&[h, w], device, dtype))
    }

    /// `x: [B, H, W, D]` -> (`features`: the blocks' output `[B, H, W, D]`, `next`: the
    /// downsampled map for the following stage, or `features` again in the last stage).
    pub fn forward(&self, x: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        self.forward_with_noise(x, None)
    }

    /// [`Self::forward`] in training, with stochastic depth drawn from `noise` (`B` rows).
    pub fn forward_with_noise(&self, x: Tensor<4>, noise: Option<&DropPathNoise>) -> (Tensor<4>, Tensor<4>) {
        let [_, h, w, _] = x.dims();
        let mask = self.shift_mask(h, w, &x.device(), x.dtype());
        let mut x = x;
        for blk in &self.blocks {
            x = blk.forward_with_noise(x, mask.clone(), noise);
        }
        let next = match &self.downsample {
            Some(d) => d.forward(x.clone()),
            None => x.clone(),
        };
        (x, next)
    }
}
