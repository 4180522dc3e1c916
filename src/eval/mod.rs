//! Evaluation: zero-shot accuracy on a labelled folder, linear probes and few-shot probes on
//! frozen image features.

pub mod linear_probe;
pub mod zero_shot;

pub use zero_shot::{ClassAccuracy, ZeroShotReport, zero_shot_folder};
