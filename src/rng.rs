//! The crate's one random number generator: SplitMix64 (Steele et al. 2014), small and
//! stateless-seedable.
//!
//! Every random choice in florence draws from an [`Rng`]: the data pipeline (epoch order, crop
//! boxes, flips, colour jitter, the prompt template of an image-label pair, each seeded by a
//! pure function of `(seed, epoch, sample)`, so a resumed run sees exactly the samples and
//! augmentations an uninterrupted run would have seen), the synthetic shapes dataset, and the
//! few-shot subsets of the evaluation. Also at its former path, `crate::data::rng`.
//!
//! **Bounded draws.** [`Rng::below`] is the one to use. Two further bounded draws exist only
//! because recorded data depends on their exact streams; new code should not call them:
//!
//! * [`Rng::below_hi32`]: the synthetic shapes dataset ([`crate::data::synthetic`]). The bundled
//!   model (`assets/shapes/`) was trained and its accuracies recorded on images drawn with it.
//! * [`Rng::below_unbiased`]: exactly unbiased (rejection) for the few-shot subsets of
//!   [`crate::eval`], whose selected examples are pinned by tests.
//!
//! For the small bounds used here the three agree on almost every draw, but not on all of them,
//! so swapping one for another would change recorded datasets.

/// SplitMix64: 64-bit state, one add and a mixing function per draw.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

/// SplitMix64's state increment (2^64 / the golden ratio, odd).
pub const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// SplitMix64's output function, a bijective mix of 64 bits.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A seed derived from a base seed and a list of indices (epoch, sample, purpose, ...).
pub fn derive_seed(seed: u64, parts: &[u64]) -> u64 {
    parts.iter().fold(mix64(seed ^ GOLDEN_GAMMA), |h, &p| mix64(h ^ mix64(p.wrapping_add(0x632b_e59b_d9b4_e019))))
}

impl Rng {
    /// A generator whose sequence is a pure function of `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// A generator for `(seed, parts...)`; see [`derive_seed`].
    pub fn derive(seed: u64, parts: &[u64]) -> Self {
        Self::new(derive_seed(seed, parts))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        mix64(self.state)
    }

    /// Uniform in `[0, 1)` with 24 bits of precision.
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.next_f32()
    }

    /// Uniform in `[0, 1)` with 53 bits of precision.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[lo, hi)`, in `f64`.
    pub fn uniform_f64(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next_f64()
    }

    /// Uniform integer in `0..n` (`n > 0`), by Lemire's multiply-shift on all 64 bits (bias
    /// below `n / 2^64`). The crate's bounded draw: the loader's epoch order
    /// ([`Rng::shuffle`]), crop boxes and prompt templates use it.
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Uniform integer in `0..n` (`0 < n <= 2^32`), by multiply-shift on the top 32 bits only
    /// (bias below `n / 2^32`).
    ///
    /// Only for the synthetic shapes dataset, which was generated with this draw: the bundled
    /// model was trained on those images and `tests/bundled_model.rs` checks its recorded
    /// accuracies on them. It differs from [`Rng::below`] whenever the low 32 bits carry into
    /// the result; use `below` in new code.
    pub fn below_hi32(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }

    /// Uniform integer in `0..n` (`n > 0`), exactly unbiased: Lemire's multiply-shift with
    /// rejection of the `2^64 mod n` low products that would bias it.
    ///
    /// Equals [`Rng::below`] on every accepted draw; a rejected one (probability `< n / 2^64`)
    /// consumes another 64 bits, so the streams can part. Kept for the few-shot subsets of the
    /// evaluation, drawn this way.
    pub fn below_unbiased(&mut self, n: usize) -> usize {
        let n = n as u64;
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = u128::from(self.next_u64()) * u128::from(n);
            if (m as u64) >= threshold {
                return (m >> 64) as usize;
            }
        }
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_matches_the_published_sequence() {
        // First outputs of SplitMix64 seeded with 1234567 (reference C implementation by Vigna).
        let mut r = Rng::new(1234567);
        assert_eq!(r.next_u64(), 6457827717110365317);
        assert_eq!(r.next_u64(), 3203168211198807973);
    }

    #[test]
    fn derived_streams_differ_and_repeat() {
        let a: Vec<u64> = (0..4).map(|_| Rng::derive(7, &[1, 2]).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(Rng::derive(7, &[1, 2]).next_u64(), Rng::derive(7, &[2, 1]).next_u64());
        let mut r = Rng::new(3);
        let mut v: Vec<usize> = (0..50).collect();
        r.shuffle(&mut v);
        let mut s = v.clone();
        s.sort();
        assert_eq!(s, (0..50).collect::<Vec<_>>());
        assert!((0..1000).map(|_| r.below(10)).all(|x| x < 10));
        assert!((0..1000).map(|_| r.next_f32()).all(|x| (0.0..1.0).contains(&x)));
        assert!((0..1000).map(|_| r.next_f64()).all(|x| (0.0..1.0).contains(&x)));
    }

    #[test]
    fn bounded_draws_are_the_documented_formulas() {
        // Each bounded draw is a fixed function of one `next_u64` (the rejection of
        // `below_unbiased` needs a low product under `2^64 mod n`, i.e. < 2^-50 here).
        for n in [1usize, 2, 3, 5, 7, 10, 36, 1000, 1 << 20] {
            let (mut a, mut b, mut c, mut raw) = (Rng::new(11), Rng::new(11), Rng::new(11), Rng::new(11));
            for _ in 0..2000 {
                let x = raw.next_u64();
                assert_eq!(a.below(n), ((u128::from(x) * n as u128) >> 64) as usize);
                assert_eq!(b.below_hi32(n), (((x >> 32) * n as u64) >> 32) as usize);
                assert_eq!(c.below_unbiased(n), ((u128::from(x) * n as u128) >> 64) as usize);
            }
        }
        // The 32- and 64-bit multiply-shifts do part: here the low half carries into the result.
        let x = u64::MAX;
        assert_eq!(((u128::from(x) * 3) >> 64) as usize, 2);
        assert_eq!((((x >> 32) * 3) >> 32) as usize, 2);
        let y = 0x5555_5555_ffff_ffffu64;
        assert_eq!(((u128::from(y) * 3) >> 64) as usize, 1);
        assert_eq!((((y >> 32) * 3) >> 32) as usize, 0);
        // Pinned first draws of each (seed 1234567), so a changed formula is noticed.
        let draws = |f: fn(&mut Rng, usize) -> usize| {
            let mut r = Rng::new(1234567);
            (0..8).map(|_| f(&mut r, 36)).collect::<Vec<_>>()
        };
        assert_eq!(draws(Rng::below), [12, 6, 19, 8, 32, 15, 21, 9]);
        assert_eq!(draws(Rng::below_hi32), [12, 6, 19, 8, 32, 15, 21, 9]);
        assert_eq!(draws(Rng::below_unbiased), [12, 6, 19, 8, 32, 15, 21, 9]);
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn unbiased_rejects_the_biased_low_products() {
        // n = 3 << 62 (above 2^32): threshold 2^64 mod n = 2^62; a product whose low half is
        // below it is rejected and the next 64 bits decide.
        let n = 3usize << 62;
        let mut r = Rng::new(5);
        let mut raw = Rng::new(5);
        for _ in 0..200 {
            let got = r.below_unbiased(n);
            let want = loop {
                let m = u128::from(raw.next_u64()) * n as u128;
                if (m as u64) >= 1u64 << 62 {
                    break (m >> 64) as usize;
                }
            };
            assert_eq!(got, want);
            assert!(got < n);
        }
    }
}
