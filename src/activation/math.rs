//! The elementwise math of the fast activations: an f32 `erf` and `exp` built only from
//! multiply-adds, a rounding and bit operations, so that a plain loop over them vectorises, and
//! the GELU / QuickGELU forwards and backwards on top of them.
//!
//! Every function here is a pure scalar function; [`map`] and [`zip_map`] run one over a slice,
//! compiled for AVX-512 or AVX2+FMA and chosen at run time, in parallel chunks on rayon's pool.
//! The result of an element does not depend on the lane width, the chunking or the thread (each
//! step is an IEEE operation or a fused multiply-add, and Rust never reassociates floats), so a
//! batch gives the same bits as its rows one by one.
//!
//! Accuracy, measured by the tests below against libm (`erff`, `expf`, and `erf`/`exp` in f64
//! for the true value), over every 257th f32 of the ranges that matter:
//! - [`exp`]: at most 1 ULP from the correctly rounded e^x where the result is normal;
//! - [`erf`]: at most 2 ULP from the correctly rounded erf(x) (libm's `erff` is within 1);
//! - [`gelu`], [`gelu_backward`], [`quick_gelu`], [`quick_gelu_backward`]: within
//!   [`GELU_ULP`] ULP of the same formula evaluated with libm in f32, or within
//!   [`GELU_ABS`]` max(|x|, 1) max(|dy|, 1)` absolute where the formula itself cancels
//!   (`1 + erf(x)` for x below about -1.5, `1 - sigmoid` in the QuickGELU backward), where every
//!   f32 evaluation, PyTorch's included, is limited by the ulp of 1.
//!
//! The polynomial coefficients are near-minimax fits made by
//! `scripts/reference/fit_activation_polys.py` (mpmath at 50 digits, Lawson's algorithm).

/// `erf(x) = x + x P(x^2)` below this `|x|`, `1 - exp(-Q(|x|))` above (59 / 64).
const ERF_SPLIT: f32 = 0.921875;
/// `|x|` past which f32 `erf` is ±1 (`erfc(4) ≈ 1.5e-8 < 2^-25`); `Q` is fitted up to here.
const ERF_CLAMP: f32 = 4.0;
/// `P(s)`, `s = x^2`, lowest degree first.
const ERF_P: [f32; 6] = [1.2837915e-01, -3.7612495e-01, 1.12818174e-01, -2.6766645e-02, 4.993213e-03, -5.990992e-04];
/// `Q(a) ≈ -ln(erfc(a))` on `[ERF_SPLIT, 4]`, lowest degree first.
const ERF_Q: [f32; 8] = [
    -1.7518594e-04,
    1.1295173e+00,
    6.33342e-01,
    1.0828546e-01,
    -2.5122898e-02,
    4.1723815e-03,
    -4.347347e-04,
    2.1118589e-05,
];
/// `e^r = 1 + r + r^2 E(r)` on `|r| <= ln 2 / 2`, lowest degree first.
const EXP_E: [f32; 5] = [4.9999994e-01, 1.6666521e-01, 4.166839e-02, 8.36871e-03, 1.381461e-03];
/// `ln 2` split in two (Cody and Waite): `LN2_HI` has 16 significant bits, so `n * LN2_HI` is
/// exact for every `|n| <= 256`.
const LN2_HI: f32 = f32::from_bits(0x3f31_7200); // 0.693145751953125
const LN2_LO: f32 = 1.428_606_8e-6; // ln 2 - LN2_HI, rounded to f32
/// Inputs of [`exp`] are clamped to this range (below, the result is 0; above, infinity).
const EXP_MIN: f32 = -104.0;
const EXP_MAX: f32 = 89.0;

/// The stated bound, in ULP of the libm-evaluated reference, for the four activation functions.
pub const GELU_ULP: u32 = 4;
/// The absolute bound, relative to `max(|x|, 1) max(|dy|, 1)`, where the formula cancels (see
/// the module docs): 2^-22, twice the ulp of 1, since `1 + erf` (GELU) and `1 - s` (the
/// QuickGELU backward, scaled by 1.702 x) lose their low bits in every f32 evaluation, PyTorch's
/// CPU kernels included.
pub const GELU_ABS: f32 = 2.384_185_8e-7;

/// Horner's rule, lowest degree first.
#[inline(always)]
fn horner<const N: usize>(c: &[f32; N], x: f32) -> f32 {
    let mut r = c[N - 1];
    for k in (0..N - 1).rev() {
        r = r.mul_add(x, c[k]);
    }
    r
}

/// `2^n` for `n` in `[-126, 127]`, by building the exponent field.
#[inline(always)]
fn pow2i(n: i32) -> f32 {
    f32::from_bits(((n + 127) as u32) << 23)
}

/// `1.5 * 2^23`: adding it to a float of magnitude below 2^22 rounds to an integer (to nearest,
/// ties to even) held in the low bits of the sum's significand.
const ROUND_SHIFT: f32 = 12_582_912.0;

/// e^x in f32: `n = round(x / ln 2)`, `r = x - n ln 2` (two steps), `e^r` by polynomial, times
/// `2^n` applied in two halves so that subnormal and near-overflow results are formed too.
/// NaN gives NaN, -inf gives 0, +inf gives +inf. The rounding to `n` uses [`ROUND_SHIFT`] and
/// reads `n` from the bits, since a float-to-int cast saturates lane by lane and would not
/// vectorise.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(EXP_MIN, EXP_MAX);
    let z = x * std::f32::consts::LOG2_E + ROUND_SHIFT;
    let n = z - ROUND_SHIFT;
    let r = (-n).mul_add(LN2_HI, x);
    let r = (-n).mul_add(LN2_LO, r);
    let p = horner(&EXP_E, r).mul_add(r * r, r) + 1.0;
    // `n` is within [-151, 129]; for a NaN input it is garbage, but `r`, and so `p`, is NaN.
    let n = z.to_bits() as i32 - ROUND_SHIFT.to_bits() as i32;
    let half = n >> 1;
    p * pow2i(half) * pow2i(n - half)
}

/// erf(x) in f32 (see the module docs for its accuracy). NaN gives NaN.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let a = x.abs();
    let small = horner(&ERF_P, x * x).mul_add(x, x);
    let t = a.min(ERF_CLAMP);
    let large = (1.0 - exp(-horner(&ERF_Q, t))).copysign(x);
    let r = if a < ERF_SPLIT { small } else { large };
    if x.is_nan() { x } else { r }
}

/// Exact GELU, `x/2 (1 + erf(x / sqrt 2))`, in the order PyTorch's CPU kernel evaluates it
/// (`x * 0.5 * (1 + erf(x * M_SQRT1_2))`, `aten/src/ATen/native/cpu/Activation.cpp`).
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    x * 0.5 * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// `dy * (cdf + x pdf)`, the GELU backward as PyTorch's CPU kernel writes it:
/// `cdf = 0.5 (1 + erf(x M_SQRT1_2))`, `pdf = M_2_SQRTPI M_SQRT1_2 0.5 exp(-x^2 / 2)`.
#[inline(always)]
pub fn gelu_backward(x: f32, dy: f32) -> f32 {
    const ALPHA: f32 = std::f32::consts::FRAC_2_SQRT_PI * std::f32::consts::FRAC_1_SQRT_2 * 0.5;
    let cdf = 0.5 * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
    let pdf = ALPHA * exp(x * x * -0.5);
    dy * (cdf + x * pdf)
}

/// CLIP's QuickGELU constant, `x * sigmoid(1.702 x)`.
pub const QUICK_GELU_K: f32 = 1.702;

/// `sigmoid(z)` without overflow: `1 / (1 + e^-z)` for `z >= 0`, `e^z / (1 + e^z)` below, as
/// Burn's flex computes it.
#[inline(always)]
fn sigmoid(z: f32) -> f32 {
    let e = exp(-z.abs());
    let num = if z >= 0.0 { 1.0 } else { e };
    num / (1.0 + e)
}

/// `x * sigmoid(1.702 x)` (UniCL's and OpenAI CLIP's `QuickGELU`).
#[inline(always)]
pub fn quick_gelu(x: f32) -> f32 {
    x * sigmoid(x * QUICK_GELU_K)
}

/// `dy * (s + 1.702 x s (1 - s))`, `s = sigmoid(1.702 x)`.
#[inline(always)]
pub fn quick_gelu_backward(x: f32, dy: f32) -> f32 {
    let s = sigmoid(x * QUICK_GELU_K);
    dy * (QUICK_GELU_K * x * s).mul_add(1.0 - s, s)
}

pub use crate::kernels::vectorised;

/// An elementwise function of one f32, as a type. The loops call `F::apply` directly: a
/// function item passed as `impl Fn` is called through a `Fn::call` shim, which LLVM left
/// un-inlined in the `#[target_feature]` loops for the (larger) backward functions, where
/// `mul_add` then compiled to a software `fmaf` call (16% of a CPU training step).
pub trait Unary: Copy + Sync {
    /// The function.
    fn apply(x: f32) -> f32;
}

/// An elementwise function of two f32 (`x`, `dy`), as a type (see [`Unary`]).
pub trait Binary: Copy + Sync {
    /// The function.
    fn apply(x: f32, y: f32) -> f32;
}

macro_rules! unary {
    ($($name:ident = $f:ident),*) => {$(
        #[doc = concat!("[`", stringify!($f), "`] as a [`Unary`].")]
        #[derive(Debug, Clone, Copy)]
        pub struct $name;
        impl Unary for $name {
            #[inline(always)]
            fn apply(x: f32) -> f32 {
                $f(x)
            }
        }
    )*};
}

macro_rules! binary {
    ($($name:ident = $f:ident),*) => {$(
        #[doc = concat!("[`", stringify!($f), "`] as a [`Binary`].")]
        #[derive(Debug, Clone, Copy)]
        pub struct $name;
        impl Binary for $name {
            #[inline(always)]
            fn apply(x: f32, y: f32) -> f32 {
                $f(x, y)
            }
        }
    )*};
}

unary!(Exp = exp, Erf = erf, Gelu = gelu, QuickGelu = quick_gelu);
binary!(GeluBackward = gelu_backward, QuickGeluBackward = quick_gelu_backward);

#[inline(always)]
fn map_loop<F: Unary>(src: &[f32], dst: &mut [f32], _f: F) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = F::apply(s);
    }
}

#[inline(always)]
fn map_in_place_loop<F: Unary>(xs: &mut [f32], _f: F) {
    for x in xs.iter_mut() {
        *x = F::apply(*x);
    }
}

#[inline(always)]
fn zip_loop<F: Binary>(a: &[f32], b: &[f32], dst: &mut [f32], _f: F) {
    for ((d, &x), &y) in dst.iter_mut().zip(a).zip(b) {
        *d = F::apply(x, y);
    }
}

/// Generates `$name`, which runs `$body` compiled for AVX-512, for AVX2+FMA, or for the baseline,
/// whichever the CPU has (the caller checks [`vectorised`] first).
macro_rules! dispatched {
    ($name:ident, <$($g:ident: $b:path),*>, ($($arg:ident: $ty:ty),*), $body:expr) => {
        #[inline]
        fn $name<$($g: $b),*>($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                fn v4<$($g: $b),*>($($arg: $ty),*) {
                    $body
                }
                #[target_feature(enable = "avx2,fma")]
                fn v3<$($g: $b),*>($($arg: $ty),*) {
                    $body
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has the features `v4` is compiled for (checked just above).
                    return unsafe { v4($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    // SAFETY: as above, for `v3`.
                    return unsafe { v3($($arg),*) };
                }
            }
            $body
        }
    };
}

pub(crate) use dispatched;

dispatched!(map_chunk, <F: Unary>, (src: &[f32], dst: &mut [f32], f: F), map_loop(src, dst, f));
dispatched!(map_in_place_chunk, <F: Unary>, (xs: &mut [f32], f: F), map_in_place_loop(xs, f));
dispatched!(zip_chunk, <F: Binary>, (a: &[f32], b: &[f32], dst: &mut [f32], f: F), zip_loop(a, b, dst, f));

/// Elements per parallel task: large enough that a task outweighs its scheduling, small enough
/// that a Swin-T stage-4 MLP (8 x 49 x 3072) still spreads over the cores.
const CHUNK: usize = 1 << 14;

/// `dst[i] = f(src[i])`, in parallel chunks. Panics if the lengths differ.
pub fn map<F: Unary>(src: &[f32], dst: &mut [f32], f: F) {
    use rayon::prelude::*;
    assert_eq!(src.len(), dst.len(), "map: lengths differ");
    if src.len() <= CHUNK {
        return map_chunk(src, dst, f);
    }
    dst.par_chunks_mut(CHUNK).zip(src.par_chunks(CHUNK)).for_each(|(d, s)| map_chunk(s, d, f));
}

/// `xs[i] = f(xs[i])`, in parallel chunks.
pub fn map_in_place<F: Unary>(xs: &mut [f32], f: F) {
    use rayon::prelude::*;
    if xs.len() <= CHUNK {
        return map_in_place_chunk(xs, f);
    }
    xs.par_chunks_mut(CHUNK).for_each(|c| map_in_place_chunk(c, f));
}

/// `dst[i] = f(a[i], b[i])`, in parallel chunks. Panics if the lengths differ.
pub fn zip_map<F: Binary>(a: &[f32], b: &[f32], dst: &mut [f32], f: F) {
    use rayon::prelude::*;
    assert!(a.len() == b.len() && a.len() == dst.len(), "zip_map: lengths differ");
    if a.len() <= CHUNK {
        return zip_chunk(a, b, dst, f);
    }
    dst.par_chunks_mut(CHUNK)
        .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
        .for_each(|(d, (x, y))| zip_chunk(x, y, d, f));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in units in the last place between two finite f32 (signed-magnitude order).
    fn ulps(a: f32, b: f32) -> u64 {
        let key = |v: f32| {
            let i = v.to_bits() as i32;
            if i < 0 { -((i & 0x7fff_ffff) as i64) } else { i as i64 }
        };
        (key(a) - key(b)).unsigned_abs()
    }

    /// Every `step`-th f32 from `lo` to `hi` (by bit pattern, so dense where floats are dense).
    fn floats(lo: f32, hi: f32, step: u32) -> Vec<f32> {
        let mut out = Vec::new();
        // Negative half, then positive half, walking bit patterns.
        if lo < 0.0 {
            let mut b = 0x8000_0000u32;
            let end = lo.to_bits();
            while b <= end {
                if f32::from_bits(b) <= hi {
                    out.push(f32::from_bits(b));
                }
                b += step;
            }
        }
        if hi >= 0.0 {
            let mut b = 0u32;
            let end = hi.to_bits();
            while b <= end {
                if f32::from_bits(b) >= lo {
                    out.push(f32::from_bits(b));
                }
                b += step;
            }
        }
        out
    }

    fn run_map(xs: &[f32], f: impl Unary) -> Vec<f32> {
        let mut out = vec![0.0; xs.len()];
        map(xs, &mut out, f);
        out
    }

    #[test]
    fn exp_is_within_one_ulp_of_the_true_value() {
        let xs = floats(-87.3, 88.7, 257);
        let got = run_map(&xs, Exp);
        let mut worst = 0;
        for (&x, &g) in xs.iter().zip(&got) {
            let want = (x as f64).exp() as f32;
            let d = ulps(g, want);
            assert!(d <= 1, "exp({x:e}) = {g:e}, want {want:e} ({d} ulp)");
            worst = worst.max(d);
        }
        assert!(worst <= 1);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(f32::INFINITY), f32::INFINITY);
        assert!(exp(f32::NAN).is_nan());
        assert_eq!(exp(0.0), 1.0);
        // Subnormal results are formed, not flushed.
        let tiny = exp(-100.0);
        assert!(tiny > 0.0 && tiny < f32::MIN_POSITIVE);
        assert!(ulps(tiny, (-100f64).exp() as f32) <= 1);
    }

    #[test]
    fn erf_is_within_two_ulp_of_the_true_value_and_close_to_libm() {
        let xs = floats(-5.0, 5.0, 257);
        let got = run_map(&xs, Erf);
        let (mut worst_true, mut worst_libm) = (0, 0);
        for (&x, &g) in xs.iter().zip(&got) {
            let truth = libm::erf(x as f64) as f32;
            let libm_f32 = libm::erff(x);
            worst_true = worst_true.max(ulps(g, truth));
            worst_libm = worst_libm.max(ulps(g, libm_f32));
            assert!(ulps(g, truth) <= 2, "erf({x:e}) = {g:e}, true {truth:e}");
        }
        assert!(worst_libm <= 3, "{worst_libm} ulp from libm's erff");
        assert_eq!(erf(0.0), 0.0);
        assert_eq!(erf(-0.0).to_bits(), (-0.0f32).to_bits());
        assert_eq!(erf(10.0), 1.0);
        assert_eq!(erf(f32::NEG_INFINITY), -1.0);
        assert!(erf(f32::NAN).is_nan());
        assert!(worst_true <= 2);
    }

    /// `got` within [`GELU_ULP`] of `want`, or within `GELU_ABS max(|x|, 1) max(|dy|, 1)`.
    fn close(x: f32, dy: f32, got: f32, want: f32) -> bool {
        if want.is_nan() {
            return got.is_nan();
        }
        ulps(got, want) <= GELU_ULP as u64 || (got - want).abs() <= GELU_ABS * x.abs().max(1.0) * dy.abs().max(1.0)
    }

    /// The four activations against the same formulas evaluated with libm in f32, as Burn's flex
    /// evaluates them (`burn-flex-0.22.1/src/ops/activation.rs`), over the range where their
    /// results are not 0 or x exactly.
    #[test]
    fn activations_are_within_their_bound_of_libm_forward_and_backward() {
        let xs = floats(-20.0, 20.0, 257);
        let dy = 0.75f32;
        let gelu_ref = |x: f32| 0.5 * x * (1.0 + libm::erff(x / std::f32::consts::SQRT_2));
        let gelu_grad_ref = |x: f32, g: f32| {
            let cdf = 0.5 * (1.0 + libm::erff(x / std::f32::consts::SQRT_2));
            let pdf = (1.0 / (2.0 * std::f32::consts::PI).sqrt()) * libm::expf(-0.5 * x * x);
            g * (cdf + x * pdf)
        };
        let sig = |z: f32| if z >= 0.0 { 1.0 / (1.0 + libm::expf(-z)) } else { libm::expf(z) / (1.0 + libm::expf(z)) };
        let quick_ref = |x: f32| x * sig(1.702 * x);
        let quick_grad_ref = |x: f32, g: f32| {
            let s = sig(1.702 * x);
            g * (s + 1.702 * x * s * (1.0 - s))
        };
        let dys = vec![dy; xs.len()];
        let mut gg = vec![0.0; xs.len()];
        let mut qg = vec![0.0; xs.len()];
        zip_map(&xs, &dys, &mut gg, GeluBackward);
        zip_map(&xs, &dys, &mut qg, QuickGeluBackward);
        let g = run_map(&xs, Gelu);
        let q = run_map(&xs, QuickGelu);
        let (mut worst, mut cancelled) = ([0u64; 4], [0usize; 4]);
        for i in 0..xs.len() {
            let x = xs[i];
            let pairs = [
                ("gelu", g[i], gelu_ref(x), 1.0),
                ("quick_gelu", q[i], quick_ref(x), 1.0),
                ("gelu'", gg[i], gelu_grad_ref(x, dy), dy),
                ("quick_gelu'", qg[i], quick_grad_ref(x, dy), dy),
            ];
            for (k, (name, got, want, d)) in pairs.into_iter().enumerate() {
                assert!(close(x, d, got, want), "{name}({x:e}) = {got:e}, libm {want:e}");
                if ulps(got, want) <= GELU_ULP as u64 {
                    worst[k] = worst[k].max(ulps(got, want));
                } else {
                    cancelled[k] += 1;
                }
            }
        }
        eprintln!(
            "worst ulp (gelu, quick_gelu, gelu', quick_gelu'): {worst:?}; by the absolute bound: {cancelled:?} of {}",
            xs.len()
        );
        // Far tails and specials.
        assert_eq!(gelu(30.0), 30.0);
        assert_eq!(gelu(-30.0), -0.0);
        assert_eq!(quick_gelu(100.0), 100.0);
        assert!(gelu(f32::NAN).is_nan() && quick_gelu(f32::NAN).is_nan());
        assert_eq!(gelu(f32::INFINITY), f32::INFINITY);
    }

    /// The same values whether a slice is one chunk, many parallel chunks or one element at a
    /// time, in place or not.
    #[test]
    fn results_do_not_depend_on_chunking() {
        let xs: Vec<f32> = (0..3 * CHUNK + 17).map(|i| (i as f32 * 0.001_37).sin() * 6.0).collect();
        let whole = run_map(&xs, Gelu);
        let one_by_one: Vec<f32> = xs.iter().map(|&x| gelu(x)).collect();
        let mut in_place = xs.clone();
        map_in_place(&mut in_place, Gelu);
        for i in 0..xs.len() {
            assert_eq!(whole[i].to_bits(), one_by_one[i].to_bits(), "at {i}");
            assert_eq!(whole[i].to_bits(), in_place[i].to_bits(), "at {i}");
        }
    }
}
