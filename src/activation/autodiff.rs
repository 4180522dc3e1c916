//! The fast activations under Burn's autodiff: one graph node each, keeping the input.
//!
//! Declared memory-bound with a retro-forward, as Burn declares its own `gelu`
//! (`burn-autodiff-0.22.1/src/ops/activation.rs`): under gradient checkpointing the output is
//! recomputed from the input rather than kept, which matters here since the MLP's hidden
//! activation is the largest tensor of a transformer block.

use std::marker::PhantomData;

use burn::backend::Backend;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::retro_forward::RetroForward;
use burn::backend::autodiff::checkpoint::state::BackwardStates;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::tensor::FloatTensor;

use super::ops::ActivationKernelOps;

/// Which activation a node is.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Gelu,
    QuickGelu,
}

impl Kind {
    fn forward<B: ActivationKernelOps>(self, x: FloatTensor<B>) -> FloatTensor<B> {
        match self {
            Self::Gelu => B::fast_gelu(x),
            Self::QuickGelu => B::fast_quick_gelu(x),
        }
    }

    fn backward<B: ActivationKernelOps>(self, x: FloatTensor<B>, dy: FloatTensor<B>) -> FloatTensor<B> {
        match self {
            Self::Gelu => B::fast_gelu_backward(x, dy),
            Self::QuickGelu => B::fast_quick_gelu_backward(x, dy),
        }
    }
}

#[derive(Debug)]
struct ActivationBackward(Kind);

impl<B: Backend + ActivationKernelOps> Backward<B, 1> for ActivationBackward {
    /// The input's node, retrieved from the checkpointer.
    type State = NodeId;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let x = checkpointer.retrieve_node_output(ops.state);
        unary::<B, _>(ops.parents, ops.node, grads, |dy| self.0.backward::<B>(x, dy));
    }
}

/// Recomputes the output from the input when checkpointing dropped it.
#[derive(Debug)]
struct Retro<B> {
    input: NodeId,
    kind: Kind,
    _backend: PhantomData<B>,
}

impl<B: Backend + ActivationKernelOps> RetroForward for Retro<B> {
    fn forward(&self, states: &mut BackwardStates, out_node: NodeId) {
        let x = states.get_state::<FloatTensor<B>>(&self.input);
        states.save(out_node, self.kind.forward::<B>(x));
    }
}

fn forward<B: Backend + ActivationKernelOps, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<B, C>>,
    kind: Kind,
) -> FloatTensor<Autodiff<B, C>> {
    let retro = Retro::<B> { input: x.node().id(), kind, _backend: PhantomData };
    match ActivationBackward(kind).prepare::<C>([x.node()]).memory_bound().retro_forward(retro).parents([&x]).stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let state = prep.checkpoint(&x);
            prep.finish(state, kind.forward::<B>(x.primitive().clone()))
        }
        OpsKind::UnTracked(prep) => prep.finish(kind.forward::<B>(x.into_primitive())),
    }
}

impl<B: Backend + ActivationKernelOps, C: CheckpointStrategy> ActivationKernelOps for Autodiff<B, C> {
    fn fast_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        forward::<B, C>(x, Kind::Gelu)
    }
    fn fast_quick_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        forward::<B, C>(x, Kind::QuickGelu)
    }
    /// Second derivatives are not provided: Burn's own `gelu_backward` is not differentiable
    /// either. The backward node calls the inner backend's operation directly.
    fn fast_gelu_backward(_x: FloatTensor<Self>, _dy: FloatTensor<Self>) -> FloatTensor<Self> {
        unreachable!("the GELU backward runs on the inner backend (double backward is not supported)")
    }
    fn fast_quick_gelu_backward(_x: FloatTensor<Self>, _dy: FloatTensor<Self>) -> FloatTensor<Self> {
        unreachable!("the QuickGELU backward runs on the inner backend (double backward is not supported)")
    }
}
