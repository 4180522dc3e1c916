//! Evaluation: zero-shot accuracy on a labelled folder, linear probes and few-shot probes on
//! frozen image features.

pub mod linear_probe;
pub mod probe;
pub mod zero_shot;

pub use linear_probe::{LogisticRegression, ProbeConfig};
pub use probe::{FewShotReport, FolderFeatures, ProbeReport, few_shot, folder_features, linear_probe};
pub use zero_shot::{ClassAccuracy, ZeroShotReport, zero_shot_folder};
