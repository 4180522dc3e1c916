//! Image decoding and the reference preprocessing: UniCL's eval transform, i.e. PIL
//! `Image.open(f).convert('RGB')` then torchvision `Resize(int(256/224 * S), BICUBIC)` →
//! `CenterCrop(S)` → `ToTensor` → `Normalize(ImageNet mean, std)` (UniCL's `build_transform`,
//! https://github.com/microsoft/UniCL/blob/9983bf8/data/build.py).
//!
//! - [`decode`](decode_image_file): files or bytes to 8-bit RGB as PIL's `convert('RGB')`
//!   (formats, alpha, 16-bit, JPEG, EXIF orientation and size limits are documented on
//!   [`DecodeOptions`]).
//! - [`Preprocessor`]: Pillow's resampling (horizontal then vertical pass, 8-bit rounding after
//!   each), torchvision's size rule, crop offsets and zero padding, then normalisation;
//!   [`Preprocessor::batch`] stacks images of any sizes into `[B, 3, S, S]`.
//!
//! Parity with the reference (measured in `tests/preprocess.rs` against torchvision 0.24 /
//! Pillow 11.3 on identical decoded pixels): the resized and cropped 8-bit image is identical
//! to torchvision's when upsampling and within 1 level in 255 when downsampling (see
//! [`resize`] for why); the normalised tensor is then bit-identical, or within
//! 1/255/std. Decoding is exact for PNG, GIF, BMP, WebP (lossless) and TIFF; JPEG adds the
//! decoder difference (zune-jpeg vs libjpeg-turbo, a few levels; stated on [`DecodeOptions`]).
//!
//! ```no_run
//! use florence::preprocess::{PreprocessConfig, Preprocessor};
//! # fn main() -> florence::Result<()> {
//! let device = florence::device::default_device()?;
//! let pre = Preprocessor::new(PreprocessConfig::unicl(224))?;
//! let images = pre.load_batch(&["cat.jpg".into(), "dog.png".into()], &device)?; // [2, 3, 224, 224]
//! # Ok(()) }
//! ```

mod config;
mod decode;
mod resize;
mod transform;

pub use config::{IMAGENET_MEAN, IMAGENET_STD, PreprocessConfig, ResizeFilter};
pub use decode::{DecodeOptions, decode_image_bytes, decode_image_file};
pub use resize::{center_crop, resize, resize_center_crop, resize_exact, resized_size};
pub use transform::Preprocessor;
