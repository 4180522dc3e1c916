//! Layers shared by the towers and the adapters: multi-head attention for self- and
//! cross-attention with padding masks, and the transformer MLP with its activation choices.

pub mod attention;
pub mod mlp;

pub use attention::{MultiHeadAttention, causal_mask, key_padding_mask, mask_value};
pub use mlp::{Activation, Mlp};
