//! Stochastic depth ("drop path", Huang et al. 2016, "Deep Networks with Stochastic Depth"): in
//! training, each sample's residual branch is dropped with probability `rate` and kept branches
//! are scaled by `1 / (1 - rate)`; at inference it is the identity. Semantics as timm's
//! `drop_path` (https://github.com/huggingface/pytorch-image-models/blob/v1.0.15/timm/layers/drop.py):
//! one draw per sample (the first axis), `scale_by_keep`, and a rate of 1 drops every sample.
//!
//! **Replayable draws.** timm draws the masks from the global torch RNG, so the gradient cache's
//! second forward of a sub-batch would see other masks than its first, and a resumed run other
//! masks than an uninterrupted one. Here a draw is a pure function of a step seed, the sample's
//! key and the branch's site ([`DropPathNoise`]): the first and second forward of a sub-batch,
//! any split into sub-batches or replicas, and a resumed run all draw the same masks. Drop path is
//! active only where a forward is given a [`DropPathNoise`]; inference never passes one.

use std::ops::Range;

use burn::prelude::*;

use crate::error::{FlorenceError, Result};
use crate::rng::{Rng, derive_seed};

/// The random state of stochastic depth for one forward: a seed (one per training step) and one
/// key per sample of the batch (its row in the whole step's batch, so that a sub-batch of rows
/// `a..b` draws what those rows draw in the full batch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropPathNoise {
    /// The step's seed.
    pub seed: u64,
    /// One key per sample, in batch order.
    pub rows: Vec<u64>,
}

/// The towers' site numbers: a branch's site is `tower << 32 | block << 1 | branch`, so the two
/// towers and the two residual branches of a block draw independently.
pub mod site {
    /// The image tower (blocks numbered across stages, as timm numbers its drop-path rates).
    pub const IMAGE: u64 = 0;
    /// The text tower.
    pub const TEXT: u64 = 1;
    /// The video tower.
    pub const VIDEO: u64 = 2;

    /// The site of block `block` of `tower`; add 0 for the attention branch, 1 for the MLP.
    pub fn block(tower: u64, block: usize) -> u64 {
        (tower << 32) | ((block as u64) << 1)
    }
}

impl DropPathNoise {
    /// Noise for the rows `rows` of a step's batch (a sub-batch `a..b` passes `a..b`).
    pub fn for_rows(seed: u64, rows: Range<usize>) -> Self {
        Self { seed, rows: rows.map(|r| r as u64).collect() }
    }

    /// The noise of the samples `range` of this batch (a sub-batch).
    pub fn slice(&self, range: Range<usize>) -> Self {
        Self { seed: self.seed, rows: self.rows[range].to_vec() }
    }

    /// The noise of the samples `rows` of this batch, in that order (a reordered sub-batch).
    pub fn select(&self, rows: &[usize]) -> Self {
        Self { seed: self.seed, rows: rows.iter().map(|&r| self.rows[r]).collect() }
    }

    /// The number of samples.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The per-sample multipliers of branch `site` at drop probability `rate`: 0 for a dropped
    /// sample, `1 / (1 - rate)` for a kept one (timm: `bernoulli_(keep_prob)`, then
    /// `div_(keep_prob)` when `keep_prob > 0`).
    pub fn multipliers(&self, rate: f64, site: u64) -> Vec<f32> {
        let keep = 1.0 - rate;
        let seed = derive_seed(self.seed, &[site]);
        self.rows
            .iter()
            .map(|&row| {
                let kept = Rng::derive(seed, &[row]).next_f64() < keep;
                if kept && keep > 0.0 { (1.0 / keep) as f32 } else { 0.0 }
            })
            .collect()
    }
}

/// `x: [B, ...]` with each sample's branch dropped or rescaled (see the module docs). The
/// identity when `noise` is `None` (inference) or `rate` is 0. `noise` must have `B` rows (the
/// towers check this once per forward).
pub fn drop_path<const D: usize>(x: Tensor<D>, rate: f64, noise: Option<&DropPathNoise>, site: u64) -> Tensor<D> {
    drop_path_along(x, 0, rate, noise, site)
}

/// [`drop_path`] with one draw per index of `axis` instead of per sample, shared by the other
/// axes. For `axis > 0` the draws are keyed by the index along it (the step seed of `noise`,
/// not its rows), so every sub-batch of a step draws the same ones. UniCL's text tower needs
/// this: it applies timm's `drop_path` to `[L, B, W]` tensors, so its draws are per token
/// position and shared across the batch ([`crate::text::TextEncoderConfig::drop_path_per`]).
pub fn drop_path_along<const D: usize>(
    x: Tensor<D>,
    axis: usize,
    rate: f64,
    noise: Option<&DropPathNoise>,
    site: u64,
) -> Tensor<D> {
    let Some(noise) = noise else { return x };
    if rate <= 0.0 || axis >= D {
        return x;
    }
    let mut shape = [1usize; D];
    let multipliers = if axis == 0 {
        shape[0] = noise.len();
        noise.multipliers(rate, site)
    } else {
        let n = x.dims()[axis];
        shape[axis] = n;
        DropPathNoise::for_rows(noise.seed, 0..n).multipliers(rate, site)
    };
    let mask = Tensor::<D>::from_data(TensorData::new(multipliers, shape), (&x.device(), x.dtype()));
    x * mask
}

/// `noise`, where given, must have one row per sample of a batch of `batch`: an input error
/// otherwise (the towers check once per forward).
pub fn check_noise(noise: Option<&DropPathNoise>, batch: usize) -> Result<()> {
    match noise {
        Some(n) if n.len() != batch => {
            Err(FlorenceError::Input(format!("stochastic-depth noise has {} rows for a batch of {batch}", n.len())))
        }
        _ => Ok(()),
    }
}

/// timm's stochastic depth decay rule, `torch.linspace(0, rate, n)` in f32 (values as
/// `.item()` returns them): block `i` of `n` gets `rate * i / (n - 1)`.
pub fn linear_rates(rate: f64, n: usize) -> Vec<f64> {
    // torch's CPU linspace: `step = (end - start) / (steps - 1)`, the first half counted up from
    // start and the second half down from end, each a fused multiply-add
    // (aten/src/ATen/native/cpu/RangeFactoriesKernel.cpp); checked against torch 2.9 below.
    let (end, steps) = (rate as f32, n);
    if steps <= 1 {
        return vec![0.0; steps];
    }
    let step = end / (steps - 1) as f32;
    let half = steps / 2;
    (0..steps)
        .map(|i| if i < half { i as f32 * step } else { (-((steps - 1 - i) as f32)).mul_add(step, end) })
        .map(f64::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sub_batch_draws_what_its_rows_draw_in_the_whole_batch() {
        let all = DropPathNoise::for_rows(7, 0..64);
        let part = DropPathNoise::for_rows(7, 10..20);
        assert_eq!(all.slice(10..20), part);
        assert_eq!(all.multipliers(0.3, 5)[10..20], part.multipliers(0.3, 5)[..]);
        // Other sites, seeds and branches draw independently.
        assert_ne!(all.multipliers(0.5, 4), all.multipliers(0.5, 5));
        assert_ne!(all.multipliers(0.5, 4), DropPathNoise::for_rows(8, 0..64).multipliers(0.5, 4));
    }

    #[test]
    fn multipliers_follow_timm() {
        let noise = DropPathNoise::for_rows(1, 0..20_000);
        let m = noise.multipliers(0.25, site::block(site::IMAGE, 3));
        let kept = m.iter().filter(|&&v| v > 0.0).count() as f64 / m.len() as f64;
        assert!((kept - 0.75).abs() < 0.01, "kept fraction {kept}");
        assert!(m.iter().all(|&v| v == 0.0 || v == (1.0 / 0.75f64) as f32));
        // The expectation is preserved.
        let mean = m.iter().map(|&v| f64::from(v)).sum::<f64>() / m.len() as f64;
        assert!((mean - 1.0).abs() < 0.015, "mean {mean}");
        assert!(noise.multipliers(0.0, 0).iter().all(|&v| v == 1.0));
        assert!(noise.multipliers(1.0, 0).iter().all(|&v| v == 0.0));
    }

    #[test]
    fn linear_rates_match_torch_linspace() {
        // torch.linspace(0, 0.2, 12).tolist() and torch.linspace(0, 0.1, 24).tolist()[16]
        // (torch 2.9, f32; index 16 is where an unfused multiply-subtract is one ulp off).
        let torch = [
            0.0,
            0.0181818176060915,
            0.036363635212183,
            0.05454545468091965,
            0.072727270424366,
            0.09090908616781235,
            0.10909091681241989,
            0.12727272510528564,
            0.1454545557498932,
            0.16363637149333954,
            0.1818181872367859,
            0.20000000298023224,
        ];
        assert_eq!(linear_rates(0.2, 12), torch);
        assert_eq!(linear_rates(0.1, 24)[16], 0.06956521421670914);
        assert_eq!(linear_rates(0.3, 7)[4], 0.20000001788139343);
        assert_eq!(linear_rates(0.3, 1), vec![0.0]);
        assert!(linear_rates(0.3, 0).is_empty());
    }

    #[test]
    fn drop_path_along_an_axis_shares_the_draw_over_the_others() {
        let device = Device::default();
        let x = Tensor::<3>::ones([2, 5, 3], &device);
        let noise = DropPathNoise::for_rows(3, 4..6); // the rows do not matter along axis 1
        let y = drop_path_along(x, 1, 0.5, Some(&noise), 2).into_data().try_to_vec::<f32>().unwrap();
        let m = DropPathNoise::for_rows(3, 0..5).multipliers(0.5, 2);
        for (k, v) in y.iter().enumerate() {
            assert_eq!(*v, m[(k / 3) % 5]);
        }
    }

    #[test]
    fn drop_path_is_the_identity_without_noise() {
        let device = Device::default();
        let x = Tensor::<3>::ones([4, 2, 3], &device);
        let same = drop_path(x.clone(), 0.5, None, 0);
        assert_eq!(same.into_data(), x.clone().into_data());
        let noise = DropPathNoise::for_rows(3, 0..4);
        let y = drop_path(x, 0.5, Some(&noise), 9).into_data().try_to_vec::<f32>().unwrap();
        let m = noise.multipliers(0.5, 9);
        for (i, chunk) in y.chunks(6).enumerate() {
            assert!(chunk.iter().all(|&v| v == m[i]));
        }
    }
}
