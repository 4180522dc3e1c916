//! Training: the UniCL objective (more of issue #4 lands here: data, trainer, gradient cache).

pub mod grad_cache;
pub mod loss;
pub mod optimizer;

pub use grad_cache::{ContrastiveBatch, StepGradients, full_batch_gradients, grad_cache_gradients};
pub use optimizer::{OptimizerConfig, decay_groups, decay_table};
pub use loss::{UniclLoss, label_for_text, unicl_loss};
