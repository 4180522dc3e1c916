//! Decoding image files to 8-bit RGB, as the reference's `PIL.Image.open(f).convert('RGB')`
//! (the details are on [`DecodeOptions`]).

use std::fs::File;
use std::io::{Cursor, Read};
use std::path::Path;

use ::image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, Limits, RgbImage};

use crate::error::{FlorenceError, Result};

/// The formats florence decodes, for messages.
const SUPPORTED: &str = "JPEG, PNG, WebP, GIF, BMP and TIFF";

/// How image files are decoded, and what decoding does.
///
/// Formats: JPEG, PNG, WebP, GIF (first frame), BMP and TIFF, recognised by their content (the
/// first bytes), not by the file name, as PIL does. Conversions to RGB follow PIL's
/// `convert('RGB')`:
///
/// - grayscale: the value is replicated into R, G and B;
/// - RGBA, LA (and transparent palette entries): the alpha channel is **dropped**, not
///   composited over a background. Fully transparent pixels therefore show whatever colour the
///   file stores under them (often black). This is what the model was evaluated with;
/// - palette images: looked up in the palette;
/// - 16-bit samples: the high byte (`v >> 8`), which is what PIL reads for 16-bit RGB, RGBA and
///   LA PNGs, so these match the reference exactly. **16-bit grayscale differs on purpose**: PIL
///   opens it as mode `I;16` and `convert('RGB')` *clips* the 16-bit value at 255, so every
///   sample above 255/65535 of full scale becomes white (a nearly white image); florence scales
///   it like the other 16-bit images (`v >> 8`) and shows the picture. Float TIFFs are clamped
///   to [0, 1] and scaled to 0..=255 by the `image` crate.
///
/// JPEG is decoded by `zune-jpeg` (through the `image` crate), not libjpeg-turbo as in PIL.
/// Both follow the IJG reference, but IDCT, chroma upsampling and colour conversion round
/// differently. Measured on the fixtures (see `jpeg_decoder_difference_is_bounded` in
/// `tests/preprocess.rs`): up to 2 levels in 255 without chroma subsampling, up to 4 in the
/// interior of a 4:2:0 image and 9 in its last column when the width is not a multiple of 16
/// (mean 0.35); after resize and crop, 4 levels from torchvision's result. Truncated JPEGs,
/// which `zune-jpeg` would complete with grey, are refused as PIL refuses them.
///
/// EXIF orientation is **not** applied by default, because the reference does not apply it:
/// `Image.open` + `convert` ignore the tag, so the UniCL numbers were computed on the stored
/// (possibly sideways) pixels. Set [`DecodeOptions::apply_exif_orientation`] to show images as
/// a viewer would (photos from phones are often stored rotated).
///
/// Decompression bombs (a small file that claims a huge image) are refused before any pixel
/// buffer is allocated, by [`DecodeOptions`]' limits on width, height and decoded bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Rotate/flip the image as its EXIF orientation tag says (JPEG, PNG, WebP, TIFF). Default
    /// `false`: the reference (PIL `Image.open` + `convert('RGB')`) ignores the tag, and the
    /// model's published accuracy was measured that way.
    pub apply_exif_orientation: bool,
    /// Largest accepted width in pixels. Default [`crate::limits::Limits::max_image_side`], 16384.
    pub max_width: u32,
    /// Largest accepted height in pixels. Default [`crate::limits::Limits::max_image_side`], 16384.
    pub max_height: u32,
    /// Largest accepted decoded buffer in bytes (width x height x bytes per pixel of the file's
    /// colour type, e.g. 3 for 8-bit RGB, 8 for 16-bit RGBA), also passed to the decoders as
    /// their allocation limit. Default [`crate::limits::Limits::max_image_bytes`], 512 MiB: for 8-bit RGB that is 178,956,970 pixels,
    /// the size at which PIL itself refuses an image (`DecompressionBombError`, twice
    /// `Image.MAX_IMAGE_PIXELS`).
    pub max_alloc_bytes: u64,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        let limits = crate::limits::get();
        Self {
            apply_exif_orientation: false,
            max_width: limits.max_image_side,
            max_height: limits.max_image_side,
            max_alloc_bytes: limits.max_image_bytes,
        }
    }
}

/// Decodes an image file to 8-bit RGB (see the module docs for the conversions).
pub fn decode_image_file(path: impl AsRef<Path>, options: &DecodeOptions) -> Result<RgbImage> {
    let path = path.as_ref();
    let name = path.display().to_string();
    let fail = |reason: String| FlorenceError::Image { source_name: name.clone(), reason };
    let mut file = File::open(path).map_err(|e| {
        fail(match e.kind() {
            std::io::ErrorKind::NotFound => "the file does not exist; check the path".to_string(),
            std::io::ErrorKind::PermissionDenied => {
                "permission denied; check that the file is readable by this user".to_string()
            }
            _ => format!("cannot open the file: {e}"),
        })
    })?;
    let meta = file.metadata().map_err(|e| fail(format!("cannot read the file's metadata: {e}")))?;
    if meta.is_dir() {
        return Err(fail("this is a directory, not an image file; give the path of an image".into()));
    }
    // The decoders hold the whole compressed file in memory (the JPEG one always does), so a
    // file larger than the decoded-size limit is refused before it is read.
    if meta.len() > options.max_alloc_bytes {
        return Err(fail(over_limits(
            format!(
                "the file itself is {}, more than the {} allowed",
                human_bytes(meta.len()),
                human_bytes(options.max_alloc_bytes)
            ),
            "max_alloc_bytes",
        )));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.read_to_end(&mut bytes).map_err(|e| fail(format!("cannot read the file: {e}")))?;
    decode_image_bytes(&bytes, &name, options)
}

/// Decodes an image held in memory. `name` names it in error messages (e.g. the URL it came
/// from; `<bytes>` if there is nothing better).
pub fn decode_image_bytes(bytes: &[u8], name: &str, options: &DecodeOptions) -> Result<RgbImage> {
    let fail = |reason: String| FlorenceError::Image { source_name: name.to_string(), reason };
    if bytes.is_empty() {
        return Err(fail(
            "the file is empty (0 bytes); it was probably not completely written or downloaded. Re-create or download it again"
                .into(),
        ));
    }
    // Width and height are checked below (with a clearer message); the allocation limit also
    // goes to the decoders, which apply it to their own buffers.
    let mut limits = Limits::default();
    limits.max_alloc = Some(options.max_alloc_bytes);

    let mut image_reader = ImageReader::new(Cursor::new(bytes));
    image_reader.limits(limits);
    let image_reader = image_reader.with_guessed_format().map_err(|e| fail(format!("cannot read the data: {e}")))?;
    let Some(format) = image_reader.format() else {
        return Err(fail(unknown_format(&bytes[..bytes.len().min(64)])));
    };
    let format_name = format_name(format);
    let mut decoder = image_reader.into_decoder().map_err(|e| fail(describe(e, &format_name, options)))?;

    let (w, h) = decoder.dimensions();
    if w > options.max_width || h > options.max_height {
        return Err(fail(over_limits(
            format!("it is {w}x{h} pixels, more than the {}x{} allowed", options.max_width, options.max_height),
            "max_width/max_height",
        )));
    }
    let total = decoder.total_bytes();
    if total > options.max_alloc_bytes {
        return Err(fail(over_limits(
            format!(
                "decoding its {w}x{h} pixels ({:?}) needs {}, more than the {} allowed",
                decoder.color_type(),
                human_bytes(total),
                human_bytes(options.max_alloc_bytes)
            ),
            "max_alloc_bytes",
        )));
    }
    if w == 0 || h == 0 {
        return Err(fail(format!("the {format_name} file says the image is {w}x{h} pixels; it has no pixels to use")));
    }
    // zune-jpeg decodes a truncated JPEG without an error (the missing part comes out grey);
    // PIL refuses it ("image file is truncated"), and so does florence.
    if format == ImageFormat::Jpeg && !jpeg_has_end(bytes) {
        return Err(fail(
            "the JPEG data ends early (no end-of-image marker after the image data): the file is truncated (an interrupted download or copy?). Download or copy it again"
                .into(),
        ));
    }
    // A missing or unreadable EXIF block is not an error: the image is used as stored.
    let orientation = if options.apply_exif_orientation { decoder.orientation().ok() } else { None };
    let mut image = DynamicImage::from_decoder(decoder).map_err(|e| fail(describe(e, &format_name, options)))?;
    if let Some(orientation) = orientation {
        image.apply_orientation(orientation);
    }
    Ok(to_rgb8(image))
}

/// Whether a JPEG has an end-of-image marker (FF D9) after its first scan. The marker
/// segments before the first start-of-scan are walked by their lengths (so an EXIF thumbnail,
/// a complete JPEG inside APP1, does not count); inside the entropy-coded data a literal FF is
/// always followed by 00 or a restart marker, so any later FF D9 is the real end.
fn jpeg_has_end(data: &[u8]) -> bool {
    let mut i = 2; // after SOI
    loop {
        while i < data.len() && data[i] != 0xFF {
            i += 1;
        }
        while i < data.len() && data[i] == 0xFF {
            i += 1; // fill bytes
        }
        let Some(&marker) = data.get(i) else { return false };
        i += 1;
        match marker {
            0xDA => return data[i.min(data.len())..].windows(2).any(|w| w == [0xFF, 0xD9]),
            0xD9 => return false,    // end before any scan
            0x01 | 0xD0..=0xD8 => {} // standalone markers
            _ => {
                let Some(len) = data.get(i..i + 2) else { return false };
                i += usize::from(u16::from_be_bytes([len[0], len[1]]));
            }
        }
    }
}

/// PIL `convert('RGB')` semantics, except for 16-bit grayscale (see the module docs).
fn to_rgb8(image: DynamicImage) -> RgbImage {
    let (w, h) = (image.width(), image.height());
    // The high byte of each sample, and the colour channels only (alpha dropped).
    let high_bytes = |samples: &[u16], channels: usize| -> RgbImage {
        let gray = channels <= 2;
        let data = samples
            .chunks_exact(channels)
            .flat_map(|p| if gray { [p[0] >> 8; 3] } else { [p[0] >> 8, p[1] >> 8, p[2] >> 8] })
            .map(|v| v as u8)
            .collect();
        RgbImage::from_raw(w, h, data).expect("w*h*3 samples")
    };
    match image {
        DynamicImage::ImageRgb8(rgb) => rgb,
        DynamicImage::ImageLuma16(i) => high_bytes(i.as_raw(), 1),
        DynamicImage::ImageLumaA16(i) => high_bytes(i.as_raw(), 2),
        DynamicImage::ImageRgb16(i) => high_bytes(i.as_raw(), 3),
        DynamicImage::ImageRgba16(i) => high_bytes(i.as_raw(), 4),
        // 8-bit gray is replicated, alpha dropped (no compositing); floats clamped and scaled.
        other => other.into_rgb8(),
    }
}

fn human_bytes(b: u64) -> String {
    if b >= 1 << 20 { format!("{} MiB", b.div_ceil(1 << 20)) } else { format!("{b} bytes") }
}

fn format_name(format: ImageFormat) -> String {
    format!("{format:?}").to_uppercase()
}

fn over_limits(what: String, field: &str) -> String {
    format!(
        "the image is larger than the decoding limits: {what}. This protects against decompression bombs; if the file is trusted, raise `DecodeOptions::{field}`, or downscale the image first"
    )
}

fn unknown_format(head: &[u8]) -> String {
    let text =
        std::str::from_utf8(head).map(|s| s.chars().all(|c| !c.is_control() || c.is_whitespace())).unwrap_or(false)
            || (head.iter().all(|&b| b == b'\t' || b == b'\n' || b == b'\r' || (0x20..0x7f).contains(&b)));
    if text {
        let preview: String = String::from_utf8_lossy(head).chars().take(32).collect();
        let lower = preview.to_ascii_lowercase();
        let html = if lower.trim_start().starts_with("<!doctype html") || lower.trim_start().starts_with("<html") {
            " It is an HTML page: if it was downloaded, the server probably sent an error or login page instead of the image."
        } else {
            ""
        };
        format!(
            "this is a text file, not an image (it starts with {preview:?}).{html} florence reads {SUPPORTED} images"
        )
    } else {
        let hex: Vec<String> = head.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!(
            "the file is not in a recognised image format (first bytes: {}). florence reads {SUPPORTED}; convert the image to one of these (e.g. PNG)",
            hex.join(" ")
        )
    }
}

/// A message for an `image` crate error that says what to do.
fn describe(e: ImageError, format: &str, options: &DecodeOptions) -> String {
    match e {
        ImageError::Unsupported(u) => match u.kind() {
            ::image::error::UnsupportedErrorKind::Format(_) => format!(
                "{format} images are not supported ({u}); florence reads {SUPPORTED}. Convert the image to one of these (e.g. PNG)"
            ),
            _ => format!(
                "this {format} file uses a feature the decoder does not support ({u}). Re-save the image as a plain PNG or JPEG"
            ),
        },
        ImageError::Limits(l) => over_limits(
            format!(
                "{l} (limits: {}x{} pixels, {})",
                options.max_width,
                options.max_height,
                human_bytes(options.max_alloc_bytes)
            ),
            "max_width/max_height/max_alloc_bytes",
        ),
        ImageError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => format!(
            "the {format} data ends early: the file is truncated (an interrupted download or copy?). Download or copy it again"
        ),
        ImageError::IoError(io) => format!("cannot read the {format} data: {io}"),
        ImageError::Decoding(d) => format!(
            "the {format} data is corrupt or truncated ({d}). Download or copy the file again, or re-save it with an image editor"
        ),
        other => format!("cannot decode the {format} data: {other}"),
    }
}
