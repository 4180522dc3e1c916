//! Training: the UniCL objective, the gradient cache, data parallelism, mixed precision and the
//! trainer.

pub mod config;
pub mod distributed;
pub mod grad_cache;
pub mod loss;
pub mod metrics;
pub mod optimizer;
pub mod precision;

pub use grad_cache::{ContrastiveBatch, StepGradients, full_batch_gradients, grad_cache_gradients};
pub use distributed::{StepOptions, all_gather, all_reduce_sum, data_parallel_gradients, shard_ranges};
pub use optimizer::{OptimizerConfig, decay_groups, decay_table};
pub use precision::{LossScaler, cast_params, master_gradients};
pub use loss::{UniclLoss, label_for_text, unicl_loss};
pub mod trainer;

pub use config::{EvalSpec, Precision, TrainConfig};
pub use trainer::{TrainState, TrainSummary, Trainer, canonical_param_ids, latest_checkpoint};
