//! The image tower: Swin and CoSwin (Swin with CvT convolutional embeddings) in one implementation.

pub mod attention;
pub mod block;
pub mod config;
pub mod embed;
pub mod encoder;
pub mod geometry;
pub mod layout;
pub mod merge;
pub mod stage;
pub mod window;

pub use config::{EmbeddingKind, ImageEncoderConfig};
pub use encoder::{FeatureInfo, FeatureMap, ImageEncoder, Intermediates};
