"""Linear-probe fixture: scikit-learn's multinomial LogisticRegression (lbfgs) on small,
deterministic, overlapping Gaussian blobs, for `src/eval/linear_probe.rs`.

Writes tests/fixtures/linear_probe.safetensors with, for each case in `CASES`:

    {case}.train_x     (n_train, dim)      f32   features (both sides fit on exactly these values)
    {case}.train_y     (n_train,)          i64   labels in 0..classes
    {case}.test_x      (n_test, dim)       f32
    {case}.test_y      (n_test,)           i64
    {case}.coef        (classes, dim)      f64   sklearn coef_ (binary: (1, dim), the logit of class 1)
    {case}.intercept   (classes,)          f64   sklearn intercept_ (binary: (1,))
    {case}.test_proba  (n_test, classes)   f64   sklearn predict_proba(test_x)
    {case}.c           (1,)                f64   the C used
    {case}.n_iter      (1,)                i64   sklearn n_iter_ (informational)

and the file metadata holds the scikit-learn / numpy versions and the list of cases. The blobs
overlap, so no case is separable and the regularised optimum is finite and well conditioned.

    python scripts/reference/make_probe_fixtures.py

Needs numpy, safetensors and scikit-learn (see requirements.txt); CPU only, runs in a second.
"""
from pathlib import Path

import numpy as np
import sklearn
from safetensors.numpy import save_file
from sklearn.linear_model import LogisticRegression

FIX = Path(__file__).resolve().parents[2] / "tests" / "fixtures"

# name, classes, dim, n_train, n_test, C, seed, blob spread (larger = more overlap)
CASES = [
    ("c5d16", 5, 16, 120, 60, 0.5, 20240601, 2.5),
    ("c3d8", 3, 8, 90, 45, 10.0, 20240602, 2.0),
    # Two classes: sklearn switches to the binomial loss with a single coefficient vector, which
    # is a different objective from a two-class softmax (the penalty differs by a factor of 2).
    ("c2d6", 2, 6, 60, 30, 1.0, 20240603, 1.2),
]


def blobs(rng, centers, n, spread):
    classes, dim = centers.shape
    # Balanced-ish labels, every class present, in shuffled order.
    y = np.concatenate([np.arange(classes), rng.integers(0, classes, n - classes)])
    rng.shuffle(y)
    x = centers[y] + spread * rng.standard_normal((n, dim))
    return x.astype(np.float32), y.astype(np.int64)


def mean_objective_grad(clf, x, y, c):
    """Max-abs gradient of sklearn's lbfgs objective (mean CE + 1/(2 C n) ||W||^2) at clf."""
    n = len(y)
    w, b = clf.coef_, clf.intercept_
    z = x @ w.T + b
    if w.shape[0] == 1:  # binomial
        p = 1.0 / (1.0 + np.exp(-z[:, 0]))
        r = (p - y)[:, None]
    else:
        z = z - z.max(1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(1, keepdims=True)
        r = p.copy()
        r[np.arange(n), y] -= 1.0
    gw = r.T @ x / n + w / (c * n)
    gb = r.sum(0) / n
    return max(np.abs(gw).max(), np.abs(gb).max())


def main():
    out = {}
    for name, classes, dim, n_train, n_test, c, seed, spread in CASES:
        rng = np.random.default_rng(seed)
        centers = rng.standard_normal((classes, dim))
        train_x, train_y = blobs(rng, centers, n_train, spread)
        test_x, test_y = blobs(rng, centers, n_test, spread)
        # Fit in float64 on the float32 values, as the Rust side does (sklearn would otherwise
        # keep float32 input in float32).
        x64 = train_x.astype(np.float64)
        clf = LogisticRegression(C=c, solver="lbfgs", fit_intercept=True, tol=1e-10, max_iter=10000)
        clf.fit(x64, train_y)
        assert list(clf.classes_) == list(range(classes))
        proba = clf.predict_proba(test_x.astype(np.float64))
        grad = mean_objective_grad(clf, x64, train_y, c)
        train_acc = clf.score(x64, train_y)
        test_acc = clf.score(test_x.astype(np.float64), test_y)
        print(
            f"{name}: n_iter {clf.n_iter_[0]}, max|grad| {grad:.2e}, "
            f"train acc {train_acc:.3f}, test acc {test_acc:.3f}, sum(intercept) {clf.intercept_.sum():.1e}"
        )
        assert train_acc < 1.0, f"{name} is separable; the optimum would be driven by C alone"
        out[f"{name}.train_x"] = train_x
        out[f"{name}.train_y"] = train_y
        out[f"{name}.test_x"] = test_x
        out[f"{name}.test_y"] = test_y
        out[f"{name}.coef"] = np.ascontiguousarray(clf.coef_, dtype=np.float64)
        out[f"{name}.intercept"] = np.ascontiguousarray(clf.intercept_, dtype=np.float64)
        out[f"{name}.test_proba"] = np.ascontiguousarray(proba, dtype=np.float64)
        out[f"{name}.c"] = np.array([c], dtype=np.float64)
        out[f"{name}.n_iter"] = np.array([clf.n_iter_[0]], dtype=np.int64)
    FIX.mkdir(parents=True, exist_ok=True)
    path = FIX / "linear_probe.safetensors"
    meta = {
        "sklearn": sklearn.__version__,
        "numpy": np.__version__,
        "cases": ",".join(case[0] for case in CASES),
        "estimator": "LogisticRegression(C=c, solver='lbfgs', fit_intercept=True, tol=1e-10, max_iter=10000)",
    }
    save_file(out, str(path), metadata=meta)
    print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
