//! Pillow-compatible resizing of 8-bit RGB images, torchvision's output-size rule and its
//! centre crop (the details are on [`resize`]).

use ::image::RgbImage;
use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use super::config::ResizeFilter;

/// torchvision's `_compute_resized_output_size` for `Resize(shorter)` (no `max_size`): the
/// shorter side becomes `shorter`, the longer `int(shorter * long / short)` (truncated). Returns
/// `(width, height)`. For a square image, both sides are `shorter`.
pub fn resized_size(width: u32, height: u32, shorter: u32) -> (u32, u32) {
    let (short, long) = if width <= height { (width, height) } else { (height, width) };
    if short == 0 {
        return (0, 0); // an empty image stays empty
    }
    // Python: `int(requested * long / short)`, an int product (exact in f64 here) and a correctly
    // rounded true division, then truncation; at least 1 so that no side becomes empty (torchvision
    // would fail on such an image; florence keeps going).
    let new_long = ((f64::from(shorter) * f64::from(long)) / f64::from(short)) as u32;
    let new_long = new_long.max(1);
    if width <= height { (shorter, new_long) } else { (new_long, shorter) }
}

///
/// Resizes to `width` x `height` as Pillow's `Image.resize(size, filter)` does for an RGB image.
/// An image already of that size is returned unchanged (Pillow copies it).
///
/// torchvision's `Resize` on a PIL image calls `PIL.Image.resize(size, filter)` with no
/// `reducing_gap`, so there is no box pre-reduction (checked in torchvision 0.24
/// `_functional_pil.resize` and Pillow 11.3 `Image.resize`). Pillow resamples 8-bit images as
/// two separable convolution passes, **horizontal first, then vertical**, with 22-bit
/// fixed-point weights, rounding and clipping to `u8` at the end of each pass
/// (`libImaging/Resample.c`). The filter support is scaled by the downsampling factor
/// (antialiasing), and not scaled when upsampling.
///
/// Two implementations, measured against torchvision on identical pixels (`tests/preprocess.rs`):
///
/// - **downsampling**: `fast_image_resize` (SIMD), whose coefficients are a port of Pillow's.
///   Called once for both sides it runs the *vertical* pass first for `u8` images, which rounds
///   and clips the intermediate image differently: 21 levels off when downsampling, 23 when
///   upsampling on the fixtures. So it is called once per side, in Pillow's order; what remains
///   is its 16-bit weights (Pillow's are 22-bit): **at most 1 level**, mean under 0.005.
/// - **upsampling**: [`resize_exact`], Pillow's arithmetic ported bit for bit (scalar). With
///   `fast_image_resize`, an intermediate 1-level difference from the first pass goes through
///   the second pass's weights and its own rounding: 2 levels on 255x257 -> 256x258. The port
///   is **exact (0 levels)** on every fixture, downsampling included. Scalar code costs little
///   here: an upsampled image has a short side below the target, and [`resize_center_crop`]
///   computes only the crop window of the resized image.
///
/// `Nearest` is Pillow's affine scaling (accumulated source coordinates), also exact.
pub fn resize(img: &RgbImage, width: u32, height: u32, filter: ResizeFilter) -> RgbImage {
    let (w0, h0) = img.dimensions();
    if (w0, h0) == (width, height) || w0 == 0 || h0 == 0 || width == 0 || height == 0 {
        return if (w0, h0) == (width, height) { img.clone() } else { RgbImage::new(width, height) };
    }
    if width > w0 || height > h0 {
        return resize_exact(img, width, height, filter);
    }
    let filter_type = match filter {
        ResizeFilter::Nearest => return resize_nearest(img, width, height),
        ResizeFilter::Bicubic => FilterType::CatmullRom,
        ResizeFilter::Bilinear => FilterType::Bilinear,
        ResizeFilter::Lanczos => FilterType::Lanczos3,
    };
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(filter_type));
    let mut resizer = Resizer::new();
    // Pillow's order: the horizontal pass over all source rows, then the vertical pass. Each
    // call changes one side only, so `fast_image_resize` runs exactly one pass per call.
    let mut pass = |src: &[u8], (sw, sh): (u32, u32), (dw, dh): (u32, u32)| -> Vec<u8> {
        let src = ImageRef::new(sw, sh, src, PixelType::U8x3).expect("buffer matches its dimensions");
        let mut dst = Image::new(dw, dh, PixelType::U8x3);
        resizer.resize(&src, &mut dst, &options).expect("u8x3 to u8x3 with a convolution filter is supported");
        dst.into_vec()
    };
    let out = match (width != w0, height != h0) {
        (true, true) => {
            let horizontal = pass(img.as_raw(), (w0, h0), (width, h0));
            pass(&horizontal, (width, h0), (width, height))
        }
        (true, false) => pass(img.as_raw(), (w0, h0), (width, h0)),
        _ => pass(img.as_raw(), (w0, h0), (w0, height)),
    };
    RgbImage::from_raw(width, height, out).expect("buffer matches its dimensions")
}

/// Pillow's fixed-point precision for 8-bit resampling (`PRECISION_BITS` in `Resample.c`).
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Pillow's filters: (kernel, support).
fn pillow_filter(filter: ResizeFilter) -> (fn(f64) -> f64, f64) {
    fn bicubic(x: f64) -> f64 {
        const A: f64 = -0.5;
        let x = x.abs();
        if x < 1.0 {
            ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
        } else if x < 2.0 {
            (((x - 5.0) * x + 8.0) * x - 4.0) * A
        } else {
            0.0
        }
    }
    fn bilinear(x: f64) -> f64 {
        let x = x.abs();
        if x < 1.0 { 1.0 - x } else { 0.0 }
    }
    fn sinc(x: f64) -> f64 {
        if x == 0.0 { 1.0 } else { (x * std::f64::consts::PI).sin() / (x * std::f64::consts::PI) }
    }
    fn lanczos(x: f64) -> f64 {
        if (-3.0..3.0).contains(&x) { sinc(x) * sinc(x / 3.0) } else { 0.0 }
    }
    match filter {
        ResizeFilter::Bicubic => (bicubic, 2.0),
        ResizeFilter::Bilinear => (bilinear, 1.0),
        ResizeFilter::Lanczos => (lanczos, 3.0),
        ResizeFilter::Nearest => unreachable!("nearest is not a convolution"),
    }
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for the output pixels `range`: per
/// output pixel, the first input index and the 22-bit fixed-point weights.
fn pillow_coefficients(
    in_size: u32,
    out_size: u32,
    range: std::ops::Range<u32>,
    filter: ResizeFilter,
) -> Vec<(usize, Vec<i64>)> {
    let (kernel, support) = pillow_filter(filter);
    let scale = f64::from(in_size) / f64::from(out_size);
    let filter_scale = scale.max(1.0);
    let support = support * filter_scale;
    let ss = 1.0 / filter_scale;
    let one = f64::from(1u32 << PRECISION_BITS);
    range
        .map(|xx| {
            let center = (f64::from(xx) + 0.5) * scale;
            // C's `(int)` truncates toward zero; negative values are clamped to 0 anyway.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(i64::from(in_size)) as usize;
            let w: Vec<f64> = (xmin..xmax).map(|x| kernel((x as f64 - center + 0.5) * ss)).collect();
            let ww: f64 = w.iter().sum();
            let fixed = w
                .iter()
                .map(|&k| {
                    let k = if ww != 0.0 { k / ww } else { k };
                    (if k < 0.0 { -0.5 + k * one } else { 0.5 + k * one }) as i64
                })
                .collect();
            (xmin, fixed)
        })
        .collect()
}

/// Pillow's `clip8`: drop the fraction, clamp to 0..=255.
fn clip8(v: i64) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// An output rectangle of a resize: columns `x`, rows `y`.
#[derive(Debug, Clone)]
struct Region {
    x: std::ops::Range<u32>,
    y: std::ops::Range<u32>,
}

/// Pillow's `Image.resize(size, filter)` for an RGB image, bit for bit: its coefficients
/// (`precompute_coeffs`, 22-bit `normalize_coeffs_8bpc`), the horizontal pass rounded and
/// clipped to `u8`, then the vertical pass. Scalar; [`resize`] uses it when upsampling and the
/// SIMD `fast_image_resize` (within 1 level) when downsampling.
pub fn resize_exact(img: &RgbImage, width: u32, height: u32, filter: ResizeFilter) -> RgbImage {
    let (w0, h0) = img.dimensions();
    if (w0, h0) == (width, height) || w0 == 0 || h0 == 0 || width == 0 || height == 0 {
        return if (w0, h0) == (width, height) { img.clone() } else { RgbImage::new(width, height) };
    }
    resize_exact_region(img, width, height, filter, Region { x: 0..width, y: 0..height })
}

/// The `region` of [`resize_exact`]'s `width` x `height` output, computed alone (every output
/// pixel depends only on its own coefficients, so the values are the same). A thin image
/// upsampled to a huge long side costs only the crop.
fn resize_exact_region(img: &RgbImage, width: u32, height: u32, filter: ResizeFilter, region: Region) -> RgbImage {
    let (w0, h0) = img.dimensions();
    let (rw, rh) = (region.x.len(), region.y.len());
    if filter == ResizeFilter::Nearest {
        let (xs, ys) = (nearest_table(w0, width, region.x), nearest_table(h0, height, region.y));
        return RgbImage::from_fn(rw as u32, rh as u32, |x, y| *img.get_pixel(xs[x as usize], ys[y as usize]));
    }
    let half = 1i64 << (PRECISION_BITS - 1);
    // Vertical coefficients first: they say which source rows the horizontal pass must produce.
    // Without a vertical pass (same height) the rows are the region's rows themselves.
    let vertical = (height != h0).then(|| pillow_coefficients(h0, height, region.y.clone(), filter));
    let rows = match &vertical {
        Some(v) => {
            let first = v.iter().map(|(m, _)| *m).min().unwrap_or(0);
            let last = v.iter().map(|(m, k)| m + k.len()).max().unwrap_or(0);
            first..last.max(first)
        }
        None => region.y.start as usize..region.y.end as usize,
    };
    let stride = rw * 3;
    let src = img.as_raw();
    let src_row = |y: usize| &src[y * w0 as usize * 3..(y + 1) * w0 as usize * 3];
    // The horizontal pass over `rows`, the region's columns only.
    let mut horizontal = Vec::with_capacity(rows.len() * stride);
    if width != w0 {
        let coeffs = pillow_coefficients(w0, width, region.x.clone(), filter);
        for y in rows.clone() {
            let row = src_row(y);
            for (xmin, k) in &coeffs {
                let mut ss = [half; 3];
                for (i, &kx) in k.iter().enumerate() {
                    let p = &row[(xmin + i) * 3..(xmin + i) * 3 + 3];
                    for c in 0..3 {
                        ss[c] += i64::from(p[c]) * kx;
                    }
                }
                horizontal.extend(ss.map(clip8));
            }
        }
    } else {
        for y in rows.clone() {
            horizontal.extend_from_slice(&src_row(y)[region.x.start as usize * 3..region.x.end as usize * 3]);
        }
    }
    let out = match vertical {
        Some(coeffs) => {
            let mut out = Vec::with_capacity(stride * rh);
            let mut acc = vec![half; stride];
            for (ymin, k) in &coeffs {
                acc.fill(half);
                for (i, &ky) in k.iter().enumerate() {
                    let r = ymin + i - rows.start;
                    for (a, &p) in acc.iter_mut().zip(&horizontal[r * stride..(r + 1) * stride]) {
                        *a += i64::from(p) * ky;
                    }
                }
                out.extend(acc.iter().map(|&a| clip8(a)));
            }
            out
        }
        None => horizontal,
    };
    RgbImage::from_raw(rw as u32, rh as u32, out).expect("buffer matches its dimensions")
}

/// Pillow's `NEAREST` resize (`ImagingScaleAffine`): the source coordinate of output pixel `x`
/// is accumulated as `scale/2 + x*scale` in double precision and truncated.
fn resize_nearest(img: &RgbImage, width: u32, height: u32) -> RgbImage {
    resize_exact_region(img, width, height, ResizeFilter::Nearest, Region { x: 0..width, y: 0..height })
}

/// Source indices of Pillow's nearest-neighbour scaling for the outputs in `range`.
fn nearest_table(n_in: u32, n_out: u32, range: std::ops::Range<u32>) -> Vec<u32> {
    let scale = f64::from(n_in) / f64::from(n_out);
    let mut v = scale * 0.5;
    let mut out = Vec::with_capacity(range.len());
    for x in 0..range.end {
        if x >= range.start {
            out.push((v as u32).min(n_in - 1));
        }
        v += scale;
    }
    out
}

/// Where torchvision's `CenterCrop(crop)` starts in an axis of `size` pixels: negative means
/// zero padding (the start gets the floor of half the shortfall); otherwise
/// `int(round((size - crop) / 2))` with Python's round-half-to-even.
fn crop_offset(size: u32, crop: u32) -> i64 {
    if crop > size { -i64::from((crop - size) / 2) } else { (f64::from(size - crop) / 2.0).round_ties_even() as i64 }
}

/// torchvision's `CenterCrop(crop)` on a PIL image: zero padding where the image is smaller
/// than the crop, then the crop at `int(round((h - crop) / 2))`, `int(round((w - crop) / 2))`.
pub fn center_crop(img: &RgbImage, crop: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    let (left, top) = (crop_offset(w, crop), crop_offset(h, crop));
    let mut out = RgbImage::new(crop, crop);
    for y in 0..crop {
        let sy = top + i64::from(y);
        if sy < 0 || sy >= i64::from(h) {
            continue;
        }
        for x in 0..crop {
            let sx = left + i64::from(x);
            if sx >= 0 && sx < i64::from(w) {
                out.put_pixel(x, y, *img.get_pixel(sx as u32, sy as u32));
            }
        }
    }
    out
}

/// torchvision's `Resize(shorter, filter)` then `CenterCrop(crop)`, the same pixels as
/// `center_crop(&resize(img, ..), crop)`. When upsampling, only the part of the resized image
/// inside the crop is computed (with [`resize_exact`]'s arithmetic), so a thin image whose
/// long side would become millions of pixels costs no more than the crop.
pub fn resize_center_crop(img: &RgbImage, shorter: u32, crop: u32, filter: ResizeFilter) -> RgbImage {
    let (w0, h0) = img.dimensions();
    if w0 == 0 || h0 == 0 {
        return RgbImage::new(crop, crop);
    }
    let (width, height) = resized_size(w0, h0, shorter);
    if (width, height) == (w0, h0) || (width <= w0 && height <= h0) {
        return center_crop(&resize(img, width, height, filter), crop);
    }
    // The crop window in resized coordinates, and where it lands in the output.
    let window = |size: u32| {
        let off = crop_offset(size, crop);
        let start = off.max(0) as u32;
        let end = (off + i64::from(crop)).min(i64::from(size)) as u32;
        (start..end, (i64::from(start) - off) as u32)
    };
    let ((xr, dx), (yr, dy)) = (window(width), window(height));
    let part = resize_exact_region(img, width, height, filter, Region { x: xr, y: yr });
    if part.dimensions() == (crop, crop) {
        return part;
    }
    let mut out = RgbImage::new(crop, crop);
    ::image::imageops::replace(&mut out, &part, i64::from(dx), i64::from(dy));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torchvision_size_rule() {
        assert_eq!(resized_size(640, 427, 256), (383, 256));
        assert_eq!(resized_size(427, 640, 256), (256, 383));
        assert_eq!(resized_size(7, 300, 256), (256, 10971));
        assert_eq!(resized_size(1, 1, 256), (256, 256));
        assert_eq!(resized_size(300, 200, 256), (384, 256));
        assert_eq!(resized_size(255, 257, 256), (256, 258));
        assert_eq!(resized_size(100, 60, 73), (121, 73));
    }

    #[test]
    fn crop_offsets_round_half_to_even() {
        // 383 - 224 = 159 -> 79.5 -> 80; 257 - 224 = 33 -> 16.5 -> 16
        let img = RgbImage::from_fn(383, 257, |x, y| ::image::Rgb([(x % 256) as u8, (y % 256) as u8, 0]));
        let c = center_crop(&img, 224);
        assert_eq!(c.get_pixel(0, 0).0[..2], [80, 16]);
        // padding: 5 wide into 8 -> 1 column of zeros left, 2 right
        let img = RgbImage::from_pixel(5, 9, ::image::Rgb([9, 9, 9]));
        let c = center_crop(&img, 8);
        assert_eq!(c.get_pixel(0, 0).0, [0, 0, 0]);
        assert_eq!(c.get_pixel(1, 0).0, [9, 9, 9]);
        assert_eq!(c.get_pixel(5, 7).0, [9, 9, 9]);
        assert_eq!(c.get_pixel(6, 0).0, [0, 0, 0]);
    }

    fn textured(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            let v = (x * 37 + y * 91 + (x * y) % 13) as u8;
            ::image::Rgb([v, v.wrapping_mul(3), if (x + y) % 5 == 0 { 255 } else { 0 }])
        })
    }

    #[test]
    fn windowed_resize_equals_full_resize_then_crop() {
        let filters = [ResizeFilter::Bicubic, ResizeFilter::Bilinear, ResizeFilter::Lanczos, ResizeFilter::Nearest];
        for (w, h, shorter, crop) in
            [(7, 30, 24, 20), (30, 7, 24, 20), (13, 11, 16, 20), (5, 9, 6, 4), (40, 30, 20, 16)]
        {
            let img = textured(w, h);
            let (nw, nh) = resized_size(w, h, shorter);
            for f in filters {
                let want = if nw > w || nh > h {
                    center_crop(&resize_exact(&img, nw, nh, f), crop)
                } else {
                    center_crop(&resize(&img, nw, nh, f), crop)
                };
                assert_eq!(resize_center_crop(&img, shorter, crop, f), want, "{w}x{h} {shorter} {crop} {f:?}");
            }
        }
    }

    #[test]
    fn a_thin_image_costs_only_the_crop() {
        // 1x16384 at shorter side 256 would be 256 x 4194304 (3 GB) if resized in full.
        let img = textured(1, 16384);
        let out = resize_center_crop(&img, 256, 224, ResizeFilter::Bicubic);
        assert_eq!(out.dimensions(), (224, 224));
    }

    #[test]
    fn constant_images_stay_constant() {
        for filter in [ResizeFilter::Bicubic, ResizeFilter::Bilinear, ResizeFilter::Lanczos, ResizeFilter::Nearest] {
            let img = RgbImage::from_pixel(7, 3, ::image::Rgb([10, 200, 255]));
            let r = resize(&img, 50, 31, filter);
            assert!(r.pixels().all(|p| p.0 == [10, 200, 255]), "{filter:?}");
        }
    }
}
