//! The text tower: UniCL's CLIP-style transformer.

pub mod attention;
pub mod block;
pub mod encoder;

pub use encoder::TextEncoder;
