//! Layers shared by the towers and the adapters: multi-head attention for self- and
//! cross-attention with padding masks, the transformer MLP with its activation choices, and
//! stochastic depth with replayable draws, and LayerNorm with the references' epsilons.

pub mod attention;
pub mod drop_path;
pub mod mlp;
pub mod norm;

pub use attention::{MultiHeadAttention, causal_mask, key_padding_mask, mask_value};
pub use drop_path::{DropPathNoise, drop_path, drop_path_along, linear_rates};
pub use mlp::{Activation, Mlp};
pub use norm::{TF_EPS, TORCH_EPS, layer_norm};
