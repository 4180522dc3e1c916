//! The text tower: UniCL's CLIP-style transformer.

pub mod block;
pub mod clean;
pub mod config;
pub mod encoder;
pub mod tokenizer;

pub use config::{DropPathUnit, TextEncoderConfig, TextPooling};
pub use encoder::{LengthCut, TextEncoder, length_buckets};
pub use tokenizer::{Padding, Tokenizer};
