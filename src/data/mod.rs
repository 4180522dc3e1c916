//! Training data: sources (image-label folders, image-text JSONL/CSV), augmentation, a
//! seeded and resumable batch stream with parallel decoding, and the synthetic shapes dataset
//! the bundled model is trained on.

pub mod augment;
pub mod batch;
pub mod loader;
/// The crate-wide generator, re-exported at its former path ([`crate::rng`]).
pub use crate::rng;
pub mod source;
pub mod synthetic;

pub use augment::AugmentConfig;
pub use batch::{ContrastiveBatch, label_for_text};
pub use loader::{BatchSource, HostBatch, Loader};
pub use rng::Rng;
pub use source::{Dataset, Example, SourceSpec, Target};
