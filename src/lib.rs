//! # florence
//!
//! The Florence vision foundation model (Yuan et al., 2021) on [Burn](https://burn.dev): a
//! CoSwin/Swin image tower and a CLIP-style text tower trained with UniCL, in one model
//! definition that runs on every Burn backend (chosen by cargo feature, picked at run time by a
//! `burn::tensor::Device`).
//!
//! ```no_run
//! use florence::{Florence, FlorenceConfig};
//! # fn main() -> Result<(), florence::FlorenceError> {
//! let device = florence::device::default_device()?;
//! let config = FlorenceConfig::preset("unicl-swin-t")?;
//! let model = Florence::load(&config, "in21k_yfcc14m_gcc15m_swin_tiny.pth", &device)?;
//! # Ok(()) }
//! ```

// Training, its data pipeline, the evaluation probes and the synthetic dataset are behind the
// `train` feature (in the default set); without it the library is inference-only and its tree
// has no autodiff backend (`cargo tree -i burn-autodiff --no-default-features --features flex`).
pub mod activation;
pub mod attention;
pub mod checkpoint;
pub mod config;
#[cfg(feature = "train")]
pub mod data;
pub mod device;
pub mod error;
#[cfg(feature = "train")]
pub mod eval;
pub mod files;
pub mod hub;
pub mod image;
pub mod kernels;
pub mod layers;
pub mod limits;
pub mod linear;
mod matrix_file;
pub mod model;
pub mod ops;
pub mod preprocess;
pub mod pretrained;
pub mod progress;
pub mod retrieval;
pub mod rng;
pub mod text;
#[cfg(feature = "train")]
pub mod train;
pub mod zeroshot;

pub use config::{EmbeddingKind, FlorenceConfig, ImageEncoderConfig, PRESETS, TextEncoderConfig};
pub use error::{CheckpointError, FlorenceError, Result};
pub use model::{Florence, Logits};
