//! AdamW as one pass over each parameter on flex, with Burn's arithmetic and Burn's state.
//!
//! Burn 0.22.1's AdamW (`burn-optim-0.22.1/src/optim/adamw.rs`) updates a parameter with a dozen
//! tensor operations (two moment updates of three operations each, the two bias corrections,
//! `sqrt`, `add_scalar`, `div`, the decay and the update), each a full sweep of the parameter
//! and most of them a fresh allocation. Over a Swin-T-sized model that was 16-20% of a CPU
//! training step (perf, `coswin-t`, 2 threads), for arithmetic that is one load of `p, g, m, v`
//! and one store of `p, m, v` per element.
//!
//! [`FusedAdamW`] is an [`Optimizer`] whose step on an f32 flex parameter is that one pass
//! (multi-threaded, in place where the tensors are uniquely owned), and Burn's own step
//! everywhere else (CubeCL backends, LibTorch, other dtypes, debug builds: see
//! [`crate::kernels`]). The pass computes the same expressions in the same order as Burn, each
//! operation rounded to f32 as Burn's flex ops round them (no FMA contraction; scalars rounded to
//! f32 the way flex's `mul_scalar` rounds them), so the parameters and moments are bit-identical
//! to Burn's (tested below). Its state is Burn's [`AdamWState`], so optimizer records (and
//! `--resume`) are unchanged.
//!
//! The update, with `t` the step count (Loshchilov and Hutter 2019, Algorithm 2; Burn's order):
//! `m = b1 m + (1 - b1) g`, `v = b2 v + (1 - b2) g^2`, `m' = m / (1 - b1^t)`,
//! `v' = v / (1 - b2^t)`, `p = p (1 - lr wd) - lr m' / (sqrt(v') + eps)`.

use burn::optim::{AdamW, AdamWConfig, AdamWState, AdaptiveMomentumState, LearningRate, Optimizer};
use burn::prelude::*;
use burn::tensor::Device;

/// The per-step scalars of the fused pass, each already rounded to f32 as Burn rounds it.
#[derive(Debug, Clone, Copy)]
pub struct AdamWStep {
    /// The first step: `m = (1 - b1) g`, `v = (1 - b2) g^2` (the moments passed in are ignored).
    pub first: bool,
    pub beta_1: f32,
    pub beta_2: f32,
    /// `1 - b1`, `1 - b2`.
    pub factor_1: f32,
    pub factor_2: f32,
    /// `1 - b1^t`, `1 - b2^t`.
    pub correction_1: f32,
    pub correction_2: f32,
    pub epsilon: f32,
    /// `Some(1 - lr wd)` when the decay is on.
    pub keep: Option<f32>,
    pub lr: f32,
}

/// AdamW, fused on flex (see the module docs), Burn's [`AdamW`] elsewhere.
#[derive(Clone)]
pub struct FusedAdamW {
    burn: AdamW,
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
    weight_decay: f32,
}

impl FusedAdamW {
    /// The optimizer with Burn's defaults replaced by these settings (no AMSGrad, no cautious
    /// decay: the fused pass implements plain AdamW).
    pub fn new(beta_1: f32, beta_2: f32, epsilon: f32, weight_decay: f32) -> Self {
        let burn = AdamWConfig::new()
            .with_beta_1(beta_1)
            .with_beta_2(beta_2)
            .with_epsilon(epsilon)
            .with_weight_decay(weight_decay)
            .build();
        Self { burn, beta_1, beta_2, epsilon, weight_decay }
    }

    /// The scalars of step `time` (1-based) at learning rate `lr`, rounded as Burn rounds them.
    pub fn scalars(&self, lr: LearningRate, time: usize, first: bool) -> AdamWStep {
        let t = time as i32;
        let decay_rate = lr * self.weight_decay as f64;
        AdamWStep {
            first,
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            factor_1: 1.0 - self.beta_1,
            factor_2: 1.0 - self.beta_2,
            correction_1: 1f32 - self.beta_1.powi(t),
            correction_2: 1f32 - self.beta_2.powi(t),
            epsilon: self.epsilon,
            // Burn skips the multiply when the rate is zero and otherwise multiplies by the f64
            // `1 - rate`, which flex's `mul_scalar` rounds to f32.
            keep: (decay_rate != 0.0).then_some((1.0 - decay_rate) as f32),
            lr: lr as f32,
        }
    }

    /// Whether the fused pass takes this step: the fast kernels chosen, f32 tensors on flex
    /// without autodiff, one shape, and a plain (non-AMSGrad) state.
    fn fused_applies<const D: usize>(tensor: &Tensor<D>, grad: &Tensor<D>, state: Option<&AdamWState<D>>) -> bool {
        let plain = |t: &Tensor<D>| crate::kernels::on_flex_f32(t) && !t.is_autodiff() && t.shape() == tensor.shape();
        crate::kernels::loops_chosen()
            && plain(tensor)
            && plain(grad)
            && state.is_none_or(|s| {
                let m = &s.momentum;
                m.max_moment_2.is_none() && plain(&m.moment_1) && plain(&m.moment_2)
            })
    }

    /// The fused step (the caller checked [`Self::fused_applies`]).
    fn fused_step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<AdamWState<D>>,
    ) -> (Tensor<D>, AdamWState<D>) {
        let (time, first, m, v) = match state {
            Some(s) => (s.momentum.time + 1, false, s.momentum.moment_1, s.momentum.moment_2),
            None => {
                let zeros = || Tensor::zeros(tensor.shape(), &tensor.device());
                (1, true, zeros(), zeros())
            }
        };
        let (p, m, v) = ops::step(tensor, grad, m, v, self.scalars(lr, time, first));
        (p, AdamWState::new(AdaptiveMomentumState { time, moment_1: m, moment_2: v, max_moment_2: None }))
    }
}

impl Optimizer for FusedAdamW {
    type State<const D: usize> = AdamWState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        if Self::fused_applies(&tensor, &grad, state.as_ref()) {
            let (p, s) = self.fused_step(lr, tensor, grad, state);
            (p, Some(s))
        } else {
            self.burn.step(lr, tensor, grad, state)
        }
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        <AdamW as Optimizer>::to_device(state, device)
    }
}

/// The element loop: one parameter's slice of `p, m, v` updated from `g`.
#[cfg_attr(not(feature = "flex"), allow(dead_code))]
fn update(p: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32], s: AdamWStep) {
    for (((p, m), v), &g) in p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
        let g2 = g * g;
        // Burn: `m.mul_scalar(b1).add(g.mul_scalar(1 - b1))` (or `g.mul_scalar(1 - b1)` first).
        let (mt, vt) = if s.first {
            (g * s.factor_1, g2 * s.factor_2)
        } else {
            (*m * s.beta_1 + g * s.factor_1, *v * s.beta_2 + g2 * s.factor_2)
        };
        *m = mt;
        *v = vt;
        let delta = (mt / s.correction_1) / ((vt / s.correction_2).sqrt() + s.epsilon);
        let decayed = match s.keep {
            Some(keep) => *p * keep,
            None => *p,
        };
        *p = decayed - delta * s.lr;
    }
}

mod ops {
    use burn::backend::Dispatch;
    use burn::backend::tensor::FloatTensor;
    use burn::backend::{Backend, backend_extension};
    use burn::prelude::*;

    use super::AdamWStep;

    /// `(param, grad, moment_1, moment_2)`, one shape -> the updated `(param, moment_1, moment_2)`.
    #[backend_extension(Flex: cfg(feature = "flex"))]
    pub trait AdamWOps: Backend {
        /// One AdamW step over every element.
        fn fused_adamw(
            param: FloatTensor<Self>,
            grad: FloatTensor<Self>,
            moment_1: FloatTensor<Self>,
            moment_2: FloatTensor<Self>,
            step: AdamWStep,
        ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
    }

    pub(super) fn step<const D: usize>(
        p: Tensor<D>,
        g: Tensor<D>,
        m: Tensor<D>,
        v: Tensor<D>,
        s: AdamWStep,
    ) -> (Tensor<D>, Tensor<D>, Tensor<D>) {
        let (p, m, v) = <Dispatch as AdamWOps>::fused_adamw(
            p.into_dispatch(),
            g.into_dispatch(),
            m.into_dispatch(),
            v.into_dispatch(),
            s,
        );
        (Tensor::from_dispatch(p), Tensor::from_dispatch(m), Tensor::from_dispatch(v))
    }

    #[cfg(feature = "flex")]
    mod flex {
        use burn::backend::TensorMetadata;
        use burn::backend::flex::FlexTensor;
        use rayon::prelude::*;

        use super::super::{AdamWStep, update};
        use super::AdamWOps;
        use crate::kernels::flex::{assert_f32, contiguous, from_vec, values, writable};

        /// Elements per parallel task (64 KiB of each of the four streams).
        const CHUNK: usize = 1 << 14;

        /// `t` itself when it can be written in place, else a contiguous copy.
        fn owned(t: FlexTensor) -> FlexTensor {
            if writable(&t) {
                return t;
            }
            let t = contiguous(t);
            from_vec(values(&t).to_vec(), t.shape())
        }

        impl AdamWOps for burn::backend::Flex {
            fn fused_adamw(
                p: FlexTensor,
                g: FlexTensor,
                m: FlexTensor,
                v: FlexTensor,
                s: AdamWStep,
            ) -> (FlexTensor, FlexTensor, FlexTensor) {
                for t in [&p, &g, &m, &v] {
                    assert_f32(t, "the fused AdamW");
                    assert_eq!(
                        t.shape(),
                        p.shape(),
                        "fused AdamW: the parameter, gradient and moments differ in shape"
                    );
                }
                let g = contiguous(g);
                let (mut p, mut m, mut v) = (owned(p), owned(m), owned(v));
                let n = p.layout().num_elements();
                let gs = values(&g);
                let (ps, ms, vs) = (
                    &mut p.storage_mut::<f32>()[..n],
                    &mut m.storage_mut::<f32>()[..n],
                    &mut v.storage_mut::<f32>()[..n],
                );
                ps.par_chunks_mut(CHUNK)
                    .zip(ms.par_chunks_mut(CHUNK))
                    .zip(vs.par_chunks_mut(CHUNK))
                    .zip(gs.par_chunks(CHUNK))
                    .for_each(|(((p, m), v), g)| update(p, m, v, g, s));
                (p, m, v)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values<const D: usize>(t: &Tensor<D>) -> Vec<u32> {
        t.to_data().iter::<f32>().map(f32::to_bits).collect()
    }

    fn random(shape: [usize; 2], seed: u64, device: &Device) -> Tensor<2> {
        let n = shape[0] * shape[1];
        let xs: Vec<f32> = (0..n).map(|i| ((i as f32 + 0.5) * 0.7371 + seed as f32 * 1.913).sin() * 0.3).collect();
        Tensor::<1>::from_floats(xs.as_slice(), device).reshape(shape)
    }

    /// The fused pass against Burn's AdamW, bit for bit, over six steps with changing learning
    /// rates, with and without decay, on shared parameters (copied) and uniquely owned ones
    /// (written in place), with zero and negative-zero gradients among the values.
    #[test]
    fn fused_steps_equal_burns_bit_for_bit() {
        let device = Device::default();
        for wd in [0.05f32, 0.0] {
            let fused = FusedAdamW::new(0.9, 0.999, 1e-8, wd);
            let burn =
                AdamWConfig::new().with_beta_1(0.9).with_beta_2(0.999).with_epsilon(1e-8).with_weight_decay(wd).build();
            let mut p_fused = random([37, 1000], 1, &device);
            let mut p_burn = p_fused.clone();
            let (mut s_fused, mut s_burn) = (None, None);
            for step in 0..6 {
                let mut g = random([37, 1000], 10 + step, &device);
                if step == 2 {
                    g = g.mask_fill(random([37, 1000], 99, &device).greater_elem(0.1), 0.0);
                }
                if step == 3 {
                    g = g.mul_scalar(-0.0);
                }
                let lr = 1e-3 * (1.0 + step as f64 * 0.37);
                // Odd steps hold a second handle on the parameter, so the pass must copy it.
                let keep = (step % 2 == 1).then(|| p_fused.clone());
                let (p, s) = fused.fused_step(lr, p_fused, g.clone(), s_fused);
                let (q, t) = burn.step(lr, p_burn, g, s_burn);
                let (q, t) = (q, t.expect("Burn's AdamW returns a state"));
                assert_eq!(values(&p), values(&q), "wd {wd}, step {step}: parameters");
                assert_eq!(values(&s.momentum.moment_1), values(&t.momentum.moment_1), "step {step}: m");
                assert_eq!(values(&s.momentum.moment_2), values(&t.momentum.moment_2), "step {step}: v");
                assert_eq!(s.momentum.time, t.momentum.time);
                if let Some(keep) = keep {
                    assert_ne!(values(&keep), values(&p), "the parameter moved");
                }
                (p_fused, p_burn, s_fused, s_burn) = (p, q, Some(s), Some(t));
            }
        }
    }

    /// The parameter given in is left unchanged when someone else holds it (the pass copies it).
    #[test]
    fn a_shared_parameter_is_not_written_in_place() {
        let device = Device::default();
        let fused = FusedAdamW::new(0.9, 0.999, 1e-8, 0.05);
        let p = random([3, 40], 5, &device);
        let before = values(&p);
        let (updated, _) = fused.fused_step(1e-2, p.clone(), random([3, 40], 6, &device), None);
        assert_eq!(values(&p), before);
        assert_ne!(values(&updated), before);
    }
}
