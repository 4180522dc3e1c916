//! Convolutional token embeddings: Swin's patch embedding (k=p, s=p) and CvT's `ConvEmbed`
//! (stem k7 s4 p2, downsamplers k3 s2 p1), each a Conv2d followed by a LayerNorm over channels
//! (CvT, Wu et al. 2021; `ConvEmbed` in
//! https://github.com/microsoft/CvT/blob/f851e68/lib/models/cls_cvt.py, and GLIP's CoSwin-like
//! https://github.com/microsoft/GLIP/blob/9dda955/maskrcnn_benchmark/modeling/backbone/swint_v2.py).

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{LayerNorm, PaddingConfig2d};
use burn::prelude::*;

use crate::layers::layer_norm;

/// Conv2d + LayerNorm. Keys: `proj.{weight,bias}`, `norm.{weight,bias}`.
#[derive(Module, Debug)]
pub struct ConvEmbed {
    /// The convolution.
    pub proj: Conv2d,
    /// LayerNorm over the output channels.
    pub norm: LayerNorm,
}

impl ConvEmbed {
    /// `Conv2d(c_in, c_out, kernel, stride, padding)` + `LayerNorm(c_out)`.
    pub fn new(
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        eps: f64,
        device: &Device,
    ) -> Self {
        Self {
            proj: Conv2dConfig::new([c_in, c_out], [kernel, kernel])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(padding, padding, padding, padding))
                .init(device),
            norm: layer_norm(c_out, eps, device),
        }
    }

    /// `x: [B, C_in, H, W] (NCHW) -> [B, H', W', C_out] (NHWC)`.
    pub fn forward_nchw(&self, x: Tensor<4>) -> Tensor<4> {
        self.norm.forward(self.proj.forward(x).permute([0, 2, 3, 1]))
    }

    /// `x: [B, H, W, C_in] (NHWC) -> [B, H', W', C_out]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.forward_nchw(x.permute([0, 3, 1, 2]))
    }
}
