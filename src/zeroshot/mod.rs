//! Zero-shot classification as UniCL evaluates it (`model/model.py::get_imnet_embeddings`):
//! every label is written into prompt templates, the prompts are embedded by the text tower, the
//! normalised prompt embeddings are averaged per label and normalised again, and images are
//! scored against those class embeddings with `exp(logit_scale) * u . e`, then softmax.

pub mod classifier;
pub mod labels;
pub mod templates;

pub use classifier::{Prediction, ZeroShotClassifier};
pub use labels::{imagenet_classes, parse_label_list, validate_labels};
pub use templates::Templates;
