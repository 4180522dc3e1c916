//! The text tower: UniCL's CLIP-style transformer.

pub mod block;
pub mod clean;
pub mod encoder;
pub mod tokenizer;

pub use encoder::TextEncoder;
pub use tokenizer::{Padding, Tokenizer};
