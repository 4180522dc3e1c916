"""Fits the polynomials of florence's vectorised f32 erf and exp (src/activation/math.rs).

florence's fast GELU needs an erf and an exp that vectorise: no table look-ups, no branches, only
multiply-adds. This script computes their coefficients as near-minimax polynomials (Lawson's
iteratively reweighted least squares on a dense grid), in float64 against mpmath's erf, erfc and
exp at 50 digits, then rounds each coefficient to f32 and prints them as Rust constants.

    erf(x)  = x + x * P(x^2)            for |x| <  ERF_SPLIT (P of degree 5)
    erf(x)  = 1 - exp(-Q(|x|))          for |x| >= ERF_SPLIT, |x| clamped to 4
                                         (Q ~ -log(erfc(|x|)), degree 7; erf rounds to 1 past 3.92)
    exp(r)  = 1 + r + r^2 * E(r)        for |r| <= ln(2) / 2 (E of degree 4), after n = round(x / ln 2)

The weights make the error relative to the quantity that ends up in the f32 result: erf(x) for P,
erfc(|x|) / erf(|x|) for Q (an absolute error in Q is a relative error in erfc), e^r for E. The
achieved accuracy is measured in Rust against libm's erff/expf (tests in src/activation/math.rs),
not here: rounding the coefficients to f32 and evaluating in f32 are part of the error.

Run with the pinned environment: `python fit_activation_polys.py` (prints the constants).
"""

import mpmath
import numpy as np

mpmath.mp.dps = 50
ERF_SPLIT = 0.921875  # 59 / 64


def lawson(x, f, w, basis, iters=60):
    """Near-minimax coefficients c minimising max |w (basis(x) c - f)|."""
    a = basis(x)
    u = np.ones_like(x) / len(x)
    c = None
    for _ in range(iters):
        sw = np.sqrt(u) * w
        c, *_ = np.linalg.lstsq(a * sw[:, None], f * sw, rcond=None)
        err = np.abs(w * (a @ c - f))
        u = u * err
        u /= u.sum()
    return c, np.max(np.abs(w * (a @ c - f)))


def cheb(lo, hi, n):
    k = np.arange(n)
    return 0.5 * (lo + hi) + 0.5 * (hi - lo) * np.cos(np.pi * (k + 0.5) / n)


def f32(c):
    return [float(np.float32(v)) for v in c]


def erf_small():
    # erf(x) = x + x P(s), s = x^2: fit P(s) = (erf(x) - x) / x, weighted by x / erf(x).
    x = cheb(1e-4, ERF_SPLIT, 4000)
    s = x * x
    f = np.array([float((mpmath.erf(v) - v) / v) for v in x])
    w = np.array([float(v / mpmath.erf(v)) for v in x])
    return lawson(s, f, w, lambda t: np.vander(t, 6, increasing=True))


def erf_large():
    # erf(a) = 1 - exp(-Q(a)), Q(a) = -log(erfc(a)); the error of erf is erfc(a) dQ.
    a = cheb(ERF_SPLIT, 4.0, 4000)
    f = np.array([float(-mpmath.log(mpmath.erfc(v))) for v in a])
    w = np.array([float(mpmath.erfc(v) / mpmath.erf(v)) for v in a])
    return lawson(a, f, w, lambda t: np.vander(t, 8, increasing=True))


def exp_core():
    # e^r = 1 + r + r^2 E(r) on |r| <= ln2 / 2, error relative to e^r.
    h = float(mpmath.log(2)) / 2
    r = cheb(-h, h, 4000)
    r = r[np.abs(r) > 1e-6]
    f = np.array([float((mpmath.exp(v) - 1 - v) / (v * v)) for v in r])
    w = np.array([float(v * v / mpmath.exp(v)) for v in r])
    return lawson(r, f, w, lambda t: np.vander(t, 5, increasing=True))


def main():
    for name, (c, err) in [("ERF_P", erf_small()), ("ERF_Q", erf_large()), ("EXP_E", exp_core())]:
        print(f"// max weighted error in float64 before rounding to f32: {err:.3e}")
        # The shortest decimal that reads back as the same f32.
        body = ", ".join(np.format_float_scientific(np.float32(v), unique=True) for v in f32(c))
        print(f"const {name}: [f32; {len(c)}] = [{body}];")


if __name__ == "__main__":
    main()
