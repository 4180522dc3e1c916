//! Training-time augmentation: random resized crop, horizontal flip and colour jitter, as
//! torchvision's `RandomResizedCrop`, `RandomHorizontalFlip` and `ColorJitter` (the transforms
//! UniCL's training pipeline builds through timm's `create_transform`).
//!
//! Every draw comes from the [`Rng`] the caller passes, seeded per sample, so augmentation is
//! reproducible and a resumed run repeats it exactly.

use ::image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::error::{FlorenceError, Result};
use crate::preprocess::{PreprocessConfig, ResizeFilter, resize, resize_center_crop};
use crate::rng::Rng;

/// Augmentation settings. The defaults are timm's ImageNet training defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentConfig {
    /// Off: the eval transform (resize, centre crop) is used instead.
    pub enabled: bool,
    /// Area fraction range of the random crop (torchvision `scale`).
    pub scale: (f32, f32),
    /// Aspect-ratio range of the random crop (torchvision `ratio`), sampled log-uniformly.
    pub ratio: (f32, f32),
    /// Probability of a horizontal flip. Set 0 when captions speak of left and right.
    pub hflip: f32,
    /// Colour jitter strength: brightness, contrast and saturation factors are drawn from
    /// `[1 - j, 1 + j]` (torchvision `ColorJitter(j, j, j)`); 0 turns it off.
    pub color_jitter: f32,
    /// The resampling filter of the crop's resize.
    pub filter: ResizeFilter,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            scale: (0.08, 1.0),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
            hflip: 0.5,
            color_jitter: 0.4,
            filter: ResizeFilter::Bicubic,
        }
    }
}

impl AugmentConfig {
    /// No augmentation: the eval transform.
    pub fn none() -> Self {
        Self { enabled: false, ..Self::default() }
    }

    /// Checks ranges; the error names the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(FlorenceError::Config(format!("augment: {m}")));
        let (s0, s1) = self.scale;
        if !(s0 > 0.0 && s0 <= s1 && s1 <= 1.0) {
            return bad("`scale` must satisfy 0 < min <= max <= 1");
        }
        let (r0, r1) = self.ratio;
        if !(r0 > 0.0 && r0 <= r1 && r1.is_finite()) {
            return bad("`ratio` must satisfy 0 < min <= max");
        }
        if !(0.0..=1.0).contains(&self.hflip) {
            return bad("`hflip` is a probability in [0, 1]");
        }
        if !(0.0..1.0).contains(&self.color_jitter) {
            return bad("`color_jitter` must be in [0, 1)");
        }
        Ok(())
    }
}

/// torchvision `RandomResizedCrop.get_params`: up to 10 tries for a box of random area and
/// aspect ratio inside the image, else a centre crop at the nearest allowed ratio. Returns
/// `(left, top, width, height)`.
pub fn random_resized_crop_box(width: u32, height: u32, cfg: &AugmentConfig, rng: &mut Rng) -> (u32, u32, u32, u32) {
    let (w, h) = (width as f32, height as f32);
    let area = w * h;
    let (lr0, lr1) = (cfg.ratio.0.ln(), cfg.ratio.1.ln());
    for _ in 0..10 {
        let target = area * rng.uniform(cfg.scale.0, cfg.scale.1);
        let ratio = rng.uniform(lr0, lr1).exp();
        let cw = (target * ratio).sqrt().round();
        let ch = (target / ratio).sqrt().round();
        if cw > 0.0 && ch > 0.0 && cw <= w && ch <= h {
            let (cw, ch) = (cw as u32, ch as u32);
            let left = rng.below((width - cw + 1) as usize) as u32;
            let top = rng.below((height - ch + 1) as usize) as u32;
            return (left, top, cw, ch);
        }
    }
    // Fallback, as torchvision: whole image clipped to the ratio range, centred.
    let in_ratio = w / h;
    let (cw, ch) = if in_ratio < cfg.ratio.0 {
        (width, ((w / cfg.ratio.0).round() as u32).clamp(1, height))
    } else if in_ratio > cfg.ratio.1 {
        (((h * cfg.ratio.1).round() as u32).clamp(1, width), height)
    } else {
        (width, height)
    };
    ((width - cw) / 2, (height - ch) / 2, cw, ch)
}

/// The training view of `img`: `size x size` pixels, augmented as `cfg` says, or the eval
/// transform of `eval` when augmentation is off.
pub fn augment(img: &RgbImage, size: u32, cfg: &AugmentConfig, eval: &PreprocessConfig, rng: &mut Rng) -> RgbImage {
    if !cfg.enabled || img.width() == 0 || img.height() == 0 {
        return resize_center_crop(img, eval.resize_shorter, eval.crop, eval.filter);
    }
    let (l, t, w, h) = random_resized_crop_box(img.width(), img.height(), cfg, rng);
    let crop = ::image::imageops::crop_imm(img, l, t, w, h).to_image();
    let mut out = resize(&crop, size, size, cfg.filter);
    if rng.next_f32() < cfg.hflip {
        ::image::imageops::flip_horizontal_in_place(&mut out);
    }
    if cfg.color_jitter > 0.0 {
        let j = cfg.color_jitter;
        let (b, c, s) = (rng.uniform(1.0 - j, 1.0 + j), rng.uniform(1.0 - j, 1.0 + j), rng.uniform(1.0 - j, 1.0 + j));
        color_jitter(&mut out, b, c, s);
    }
    out
}

/// Brightness, contrast and saturation factors, applied in that order with torchvision's
/// formulas (`adjust_brightness`: x·b; `adjust_contrast`: blend with the mean grey level;
/// `adjust_saturation`: blend with the pixel's grey value; grey = ITU-R 601-2 luma), clamped to
/// [0, 255] after each. torchvision draws a random order; a fixed one keeps this simple and the
/// difference is immaterial for training.
pub fn color_jitter(img: &mut RgbImage, brightness: f32, contrast: f32, saturation: f32) {
    let luma = |p: &[f32; 3]| 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
    let mut px: Vec<[f32; 3]> = img.pixels().map(|p| [p.0[0] as f32, p.0[1] as f32, p.0[2] as f32]).collect();
    for p in &mut px {
        for c in p.iter_mut() {
            *c = (*c * brightness).clamp(0.0, 255.0);
        }
    }
    let mean = px.iter().map(luma).sum::<f32>() / px.len().max(1) as f32;
    for p in &mut px {
        for c in p.iter_mut() {
            *c = (contrast * *c + (1.0 - contrast) * mean).clamp(0.0, 255.0);
        }
        let g = luma(p);
        for c in p.iter_mut() {
            *c = (saturation * *c + (1.0 - saturation) * g).clamp(0.0, 255.0);
        }
    }
    for (dst, p) in img.pixels_mut().zip(&px) {
        dst.0 = [p[0].round() as u8, p[1].round() as u8, p[2].round() as u8];
    }
}

/// `ToTensor` + `Normalize` of an already `S x S` image into CHW f32.
pub fn normalize(img: &RgbImage, eval: &PreprocessConfig) -> Vec<f32> {
    let n = img.width() as usize * img.height() as usize;
    let mut out = vec![0f32; 3 * n];
    for (i, p) in img.pixels().enumerate() {
        for c in 0..3 {
            out[c * n + i] = (f32::from(p.0[c]) / 255.0 - eval.mean[c]) / eval.std[c];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_boxes_stay_inside_and_follow_the_ranges() {
        let cfg = AugmentConfig::default();
        let mut rng = Rng::new(1);
        for (w, h) in [(64, 64), (300, 7), (7, 300), (1, 1), (640, 427)] {
            for _ in 0..200 {
                let (l, t, cw, ch) = random_resized_crop_box(w, h, &cfg, &mut rng);
                assert!(cw >= 1 && ch >= 1 && l + cw <= w && t + ch <= h, "{w}x{h}: {l},{t},{cw},{ch}");
            }
        }
        // On a large square image the area fraction lands in the scale range.
        for _ in 0..200 {
            let (_, _, cw, ch) = random_resized_crop_box(1000, 1000, &cfg, &mut rng);
            let f = (cw * ch) as f32 / 1e6;
            assert!(f > 0.07 && f <= 1.0, "{f}");
        }
    }

    #[test]
    fn jitter_identity_and_grey() {
        let mut img = RgbImage::from_fn(4, 4, |x, y| ::image::Rgb([(x * 60) as u8, (y * 60) as u8, 100]));
        let orig = img.clone();
        color_jitter(&mut img, 1.0, 1.0, 1.0);
        assert_eq!(img, orig);
        color_jitter(&mut img, 1.0, 1.0, 0.0);
        assert!(img.pixels().all(|p| p.0[0].abs_diff(p.0[1]) <= 1 && p.0[1].abs_diff(p.0[2]) <= 1));
    }

    #[test]
    fn augmentation_is_a_function_of_the_seed() {
        let img = RgbImage::from_fn(50, 40, |x, y| ::image::Rgb([(x * 5) as u8, (y * 6) as u8, ((x + y) * 3) as u8]));
        let (cfg, eval) = (AugmentConfig::default(), PreprocessConfig::unicl(32));
        let a = augment(&img, 32, &cfg, &eval, &mut Rng::new(5));
        let b = augment(&img, 32, &cfg, &eval, &mut Rng::new(5));
        let c = augment(&img, 32, &cfg, &eval, &mut Rng::new(6));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.dimensions(), (32, 32));
        assert_eq!(augment(&img, 32, &AugmentConfig::none(), &eval, &mut Rng::new(5)).dimensions(), (32, 32));
    }
}
