//! The whole transform (resize, centre crop, `ToTensor`, `Normalize`) and batching.

use std::path::PathBuf;

use ::image::RgbImage;
use burn::prelude::*;

use super::config::PreprocessConfig;
use super::decode::{DecodeOptions, decode_image_file};
use super::resize::resize_center_crop;
use crate::error::{FlorenceError, Result};
use crate::ops::par_map;

/// Turns decoded RGB images into normalised model inputs.
#[derive(Debug, Clone)]
pub struct Preprocessor {
    config: PreprocessConfig,
    decode: DecodeOptions,
}

impl Preprocessor {
    /// A preprocessor for `config` (validated), decoding files with the default
    /// [`DecodeOptions`] (reference behaviour: no EXIF rotation).
    pub fn new(config: PreprocessConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self { config, decode: DecodeOptions::default() })
    }

    /// Uses `options` when [`load_batch`](Self::load_batch) decodes files.
    pub fn with_decode_options(mut self, options: DecodeOptions) -> Self {
        self.decode = options;
        self
    }

    /// The transform's configuration.
    pub fn config(&self) -> &PreprocessConfig {
        &self.config
    }

    /// The decode options `load_batch` uses.
    pub fn decode_options(&self) -> &DecodeOptions {
        &self.decode
    }

    /// The crop size S (inputs are `[3, S, S]`).
    pub fn size(&self) -> usize {
        self.config.crop as usize
    }

    /// torchvision `Resize(resize_shorter, filter)` then `CenterCrop(crop)`: the 8-bit
    /// `S x S` image that `ToTensor` would see. An empty (0-pixel) image gives an all-black
    /// crop, as zero padding would.
    pub fn resize_and_crop(&self, img: &RgbImage) -> RgbImage {
        resize_center_crop(img, self.config.resize_shorter, self.config.crop, self.config.filter)
    }

    /// The model input for one image: `[3, S, S]` (CHW) as a flat vector, `(v / 255 - mean) /
    /// std` per channel in f32, the same operations in the same order as torchvision's
    /// `ToTensor` + `Normalize`, so the result is bit-identical for identical pixels.
    pub fn preprocess(&self, img: &RgbImage) -> Vec<f32> {
        let crop = self.resize_and_crop(img);
        let n = crop.width() as usize * crop.height() as usize;
        let mut out = vec![0f32; 3 * n];
        let (mean, std) = (self.config.mean, self.config.std);
        for (i, p) in crop.pixels().enumerate() {
            for c in 0..3 {
                out[c * n + i] = (f32::from(p.0[c]) / 255.0 - mean[c]) / std[c];
            }
        }
        out
    }

    /// A batch `[B, 3, S, S]` (NCHW, f32, normalised) on `device`; the images may have any
    /// sizes. Fails on an empty list or an image with no pixels.
    pub fn batch(&self, imgs: &[RgbImage], device: &Device) -> Result<Tensor<4>> {
        if imgs.is_empty() {
            return Err(FlorenceError::Input("an image batch needs at least one image".into()));
        }
        if let Some(i) = imgs.iter().position(|im| im.width() == 0 || im.height() == 0) {
            let (w, h) = imgs[i].dimensions();
            return Err(FlorenceError::Input(format!("image {i} of the batch is {w}x{h}: it has no pixels")));
        }
        let per_image = par_map(imgs, 0, |img| self.preprocess(img));
        Ok(self.to_tensor(per_image, device))
    }

    /// Decodes the files (with this preprocessor's [`DecodeOptions`]) and makes a batch as
    /// [`batch`](Self::batch) does. The first file that cannot be decoded is the error.
    pub fn load_batch(&self, paths: &[PathBuf], device: &Device) -> Result<Tensor<4>> {
        if paths.is_empty() {
            return Err(FlorenceError::Input("an image batch needs at least one image file".into()));
        }
        // All cores; the first file (in order) that fails is the error.
        let per_image = par_map(paths, 0, |p| self.try_preprocess(&decode_image_file(p, &self.decode)?))
            .into_iter()
            .collect::<Result<Vec<_>>>()?;
        Ok(self.to_tensor(per_image, device))
    }

    /// Decodes and preprocesses each file in parallel (all cores), one result per file in the
    /// order given, so that a caller can skip and count the files that fail. Each `Ok` holds the
    /// `3 * S * S` values of one image; [`stack`](Self::stack) makes them a batch.
    pub fn preprocess_files(&self, paths: &[PathBuf]) -> Vec<Result<Vec<f32>>> {
        par_map(paths, 0, |p| self.try_preprocess(&decode_image_file(p, &self.decode)?))
    }

    /// [`preprocess`](Self::preprocess), failing (instead of producing nothing useful) on an
    /// image with no pixels.
    pub fn try_preprocess(&self, img: &RgbImage) -> Result<Vec<f32>> {
        if img.width() == 0 || img.height() == 0 {
            let (w, h) = img.dimensions();
            return Err(FlorenceError::Input(format!("the image is {w}x{h}: it has no pixels")));
        }
        Ok(self.preprocess(img))
    }

    /// A batch `[B, 3, S, S]` from images preprocessed by this preprocessor
    /// ([`preprocess_files`](Self::preprocess_files)). Fails on an empty list or an image of
    /// another size.
    pub fn stack(&self, per_image: Vec<Vec<f32>>, device: &Device) -> Result<Tensor<4>> {
        let s = self.size();
        if per_image.is_empty() {
            return Err(FlorenceError::Input("an image batch needs at least one image".into()));
        }
        if let Some(i) = per_image.iter().position(|v| v.len() != 3 * s * s) {
            return Err(FlorenceError::Input(format!(
                "image {i} of the batch has {} values, not 3 x {s} x {s}: it was not made by this preprocessor",
                per_image[i].len()
            )));
        }
        Ok(self.to_tensor(per_image, device))
    }

    fn to_tensor(&self, per_image: Vec<Vec<f32>>, device: &Device) -> Tensor<4> {
        let (b, s) = (per_image.len(), self.size());
        let data: Vec<f32> = per_image.into_iter().flatten().collect();
        Tensor::from_data(TensorData::new(data, [b, 3, s, s]), device)
    }
}
