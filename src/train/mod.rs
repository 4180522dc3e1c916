//! Training: the UniCL objective (more of issue #4 lands here: data, trainer, gradient cache).

pub mod loss;

pub use loss::{UniclLoss, label_for_text, unicl_loss};
