//! Training: the UniCL objective, the gradient cache, data parallelism, mixed precision and the
//! trainer.

pub mod adamw;
pub mod config;
pub mod distributed;
pub mod grad_cache;
pub mod loss;
pub mod metrics;
pub mod optimizer;
pub mod precision;
pub mod step;
pub mod task;

pub use crate::data::{ContrastiveBatch, label_for_text};
pub use adamw::FusedAdamW;
pub use distributed::{all_gather, all_reduce_sum, data_parallel_gradients, shard_ranges};
pub use grad_cache::{full_batch_gradients, full_batch_gradients_with, grad_cache_gradients};
pub use loss::{UniclLoss, unicl_loss};
pub use optimizer::{OptimizerConfig, decay_groups, decay_table};
pub use precision::{LossScaler, cast_params, master_gradients};
pub use step::{StepGradients, StepOptions};
pub mod trainer;

pub use config::{EvalSpec, Precision, TrainConfig};
pub use task::{BatchContext, Task, UniclTask};
pub use trainer::{TrainState, TrainSummary, Trainer, canonical_param_ids, latest_checkpoint, unicl_task};
