//! The backward of the fused window attention under Burn's autodiff.
//!
//! The forward keeps `out` and the per-row log-sum-exp (`[BW, H, N]`), not the `[BW, H, N, N]`
//! probabilities; the backward recomputes them (`window_attention_backward`, a fused kernel on
//! CubeCL backends). It is declared compute-bound, as Burn declares matmul: under gradient
//! checkpointing the output is kept rather than recomputed, and `qkv` and `bias` are registered
//! with the checkpointer (`prep.checkpoint`) so that a recomputed parent is retrieved from it
//! (`burn-autodiff-0.22.1/src/ops/tensor.rs`, `float_matmul`).

use burn::backend::Backend;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::tensor::FloatTensor;

use super::ops::WindowAttentionOps;

#[derive(Debug)]
struct WindowAttentionBackward;

impl<B: Backend + WindowAttentionOps> Backward<B, 2> for WindowAttentionBackward {
    /// `(qkv, bias, out, lse, heads, scale)`.
    type State = (NodeId, NodeId, FloatTensor<B>, FloatTensor<B>, usize, f64);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [qkv_node, bias_node] = ops.parents;
        let (qkv, bias, out, lse, heads, scale) = ops.state;
        let dout = grads.consume::<B>(&ops.node);
        let qkv = checkpointer.retrieve_node_output(qkv);
        let bias = checkpointer.retrieve_node_output(bias);
        let (dqkv, dbias) = B::window_attention_backward(qkv, bias, out, lse, dout, heads, scale);
        if let Some(node) = qkv_node {
            grads.register::<B>(node.id, dqkv);
        }
        if let Some(node) = bias_node {
            grads.register::<B>(node.id, dbias);
        }
    }
}

impl<B: Backend + WindowAttentionOps, C: CheckpointStrategy> WindowAttentionOps for Autodiff<B, C> {
    fn window_attention(
        qkv: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        heads: usize,
        scale: f64,
    ) -> FloatTensor<Self> {
        match WindowAttentionBackward.prepare::<C>([qkv.node(), bias.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let qkv_id = prep.checkpoint(&qkv);
                let bias_id = prep.checkpoint(&bias);
                let (out, lse) =
                    B::window_attention_with_lse(qkv.into_primitive(), bias.into_primitive(), heads, scale);
                prep.finish((qkv_id, bias_id, out.clone(), lse, heads, scale), out)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::window_attention(qkv.into_primitive(), bias.into_primitive(), heads, scale))
            }
        }
    }
}
