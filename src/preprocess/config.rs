//! The per-weights preprocessing configuration: resize, centre crop, filter and normalisation.

use serde::{Deserialize, Serialize};

use crate::error::{FlorenceError, Result};

/// ImageNet mean (timm `IMAGENET_DEFAULT_MEAN`), what UniCL normalises with.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet standard deviation (timm `IMAGENET_DEFAULT_STD`).
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// The resampling filter of the resize step, each as Pillow implements it for 8-bit images
/// (torchvision's `Resize` on PIL images calls `PIL.Image.resize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResizeFilter {
    /// Pillow's `BICUBIC`: antialiased cubic convolution with a = -0.5 (Catmull-Rom), support 2
    /// scaled by the downsampling factor. UniCL's eval transform uses it.
    #[default]
    Bicubic,
    /// Pillow's `BILINEAR`: antialiased triangle filter, support 1.
    Bilinear,
    /// Pillow's `NEAREST`: the source pixel under each output pixel's centre.
    Nearest,
    /// Pillow's `LANCZOS`: antialiased Lanczos-3.
    Lanczos,
}

/// How an image becomes a model input, as torchvision's
/// `Resize(resize_shorter, filter)` → `CenterCrop(crop)` → `ToTensor` → `Normalize(mean, std)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreprocessConfig {
    /// The shorter side is resized to this many pixels, the aspect ratio kept (the longer side
    /// is `floor(resize_shorter * long / short)`, torchvision's rule).
    pub resize_shorter: u32,
    /// The square centre crop, S; the model input is `[3, S, S]`. If the resized image is
    /// smaller than the crop (only when `resize_shorter < crop`), it is padded with zeros
    /// (black, before normalisation) as torchvision's `CenterCrop` does.
    pub crop: u32,
    /// The resampling filter.
    #[serde(default)]
    pub filter: ResizeFilter,
    /// Per-channel (R, G, B) mean subtracted from pixel / 255.
    pub mean: [f32; 3],
    /// Per-channel (R, G, B) standard deviation divided by after subtracting the mean.
    pub std: [f32; 3],
}

impl PreprocessConfig {
    /// UniCL's eval transform for crop size S: `Resize(int(256/224 * S), BICUBIC)`,
    /// `CenterCrop(S)`, ImageNet mean/std. `unicl(224)` resizes the shorter side to 256;
    /// `unicl(384)` to 438.
    pub fn unicl(crop: u32) -> Self {
        // Python's `int(256 / 224 * crop)`: the float product, truncated.
        let resize_shorter = (256.0f64 / 224.0 * f64::from(crop)) as u32;
        Self { resize_shorter, crop, filter: ResizeFilter::Bicubic, mean: IMAGENET_MEAN, std: IMAGENET_STD }
    }

    /// Checks that the config describes a usable transform; the error names the field.
    pub fn validate(&self) -> Result<()> {
        let err = |m: String| Err(FlorenceError::Config(format!("preprocess: {m}")));
        if self.crop == 0 {
            return err("`crop` must be at least 1 (the model's input size, e.g. 224)".into());
        }
        if self.resize_shorter == 0 {
            return err(
                "`resize_shorter` must be at least 1 (UniCL uses int(256/224 * crop), e.g. 256 for crop 224)".into()
            );
        }
        // Far beyond any model input; keeps every intermediate size and index in range.
        let side = crate::limits::get().max_image_side as u64;
        crate::limits::check("`preprocess.crop`", self.crop as u64, side, "max_image_side")?;
        crate::limits::check("`preprocess.resize_shorter`", self.resize_shorter as u64, side, "max_image_side")?;
        for (c, (&m, &s)) in self.mean.iter().zip(&self.std).enumerate() {
            if !m.is_finite() {
                return err(format!("`mean[{c}]` is {m}; it must be a finite number (ImageNet: 0.485, 0.456, 0.406)"));
            }
            if !(s.is_finite() && s > 0.0) {
                return err(format!(
                    "`std[{c}]` is {s}; it must be a positive finite number (ImageNet: 0.229, 0.224, 0.225)"
                ));
            }
        }
        Ok(())
    }
}

impl Default for PreprocessConfig {
    /// UniCL at 224: `unicl(224)`.
    fn default() -> Self {
        Self::unicl(224)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unicl_sizes() {
        assert_eq!(PreprocessConfig::unicl(224).resize_shorter, 256);
        // int(256/224*384) = int(438.857...) = 438; int(256/224*64) = 73
        assert_eq!(PreprocessConfig::unicl(384).resize_shorter, 438);
        assert_eq!(PreprocessConfig::unicl(64).resize_shorter, 73);
        assert_eq!(PreprocessConfig::unicl(512).resize_shorter, 585);
        PreprocessConfig::default().validate().unwrap();
    }

    #[test]
    fn validate_names_the_field() {
        let mut c = PreprocessConfig::unicl(224);
        c.std[1] = 0.0;
        assert!(c.validate().unwrap_err().to_string().contains("std[1]"));
        let mut c = PreprocessConfig::unicl(224);
        c.crop = 0;
        assert!(c.validate().unwrap_err().to_string().contains("crop"));
        let mut c = PreprocessConfig::unicl(224);
        c.mean[0] = f32::NAN;
        assert!(c.validate().unwrap_err().to_string().contains("mean[0]"));
    }

    #[test]
    fn serde_round_trip_and_unknown_fields() {
        let c = PreprocessConfig::unicl(384);
        let s = serde_json::to_string(&c).unwrap();
        assert!(s.contains("\"filter\":\"bicubic\""), "{s}");
        assert_eq!(serde_json::from_str::<PreprocessConfig>(&s).unwrap(), c);
        let no_filter = r#"{"resize_shorter":256,"crop":224,"mean":[0.5,0.5,0.5],"std":[0.5,0.5,0.5]}"#;
        assert_eq!(serde_json::from_str::<PreprocessConfig>(no_filter).unwrap().filter, ResizeFilter::Bicubic);
        let typo = r#"{"resize_shorter":256,"crop":224,"mean":[0.5,0.5,0.5],"std":[0.5,0.5,0.5],"interp":"x"}"#;
        assert!(serde_json::from_str::<PreprocessConfig>(typo).is_err());
    }
}
