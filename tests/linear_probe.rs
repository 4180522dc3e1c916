//! Linear-probe parity with scikit-learn: `LogisticRegression(C, solver="lbfgs")` fitted by
//! scripts/reference/make_probe_fixtures.py on overlapping Gaussian blobs (5 classes / dim 16 /
//! C 0.5, 3 classes / dim 8 / C 10, and a 2-class case, where sklearn uses the binomial loss).

use florence::eval::linear_probe::{LogisticRegression, ProbeConfig, few_shot_indices, top_k_accuracy};
use safetensors::{Dtype, SafeTensors};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/linear_probe.safetensors");
const CASES: [&str; 3] = ["c5d16", "c3d8", "c2d6"];

/// A tensor as f64 values and its shape.
fn tensor(st: &SafeTensors, name: &str) -> (Vec<f64>, Vec<usize>) {
    let t = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    let b = t.data();
    let values = match t.dtype() {
        Dtype::F32 => b.chunks_exact(4).map(|c| f64::from(f32::from_le_bytes(c.try_into().unwrap()))).collect(),
        Dtype::F64 => b.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect(),
        Dtype::I64 => b.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64).collect(),
        other => panic!("{name}: unexpected dtype {other:?}"),
    };
    (values, t.shape().to_vec())
}

fn features(st: &SafeTensors, name: &str) -> (Vec<f32>, usize) {
    let (v, shape) = tensor(st, name);
    // Stored as f32, so this narrowing is exact.
    (v.into_iter().map(|x| x as f32).collect(), shape[1])
}

fn labels(st: &SafeTensors, name: &str) -> Vec<usize> {
    tensor(st, name).0.into_iter().map(|y| y as usize).collect()
}

fn argmax(row: &[f64]) -> usize {
    (0..row.len()).fold(0, |best, k| if row[k] > row[best] { k } else { best })
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold(0.0, |m, (x, y)| m.max((x - y).abs()))
}

fn max_abs(a: &[f64]) -> f64 {
    a.iter().fold(0.0, |m, x| m.max(x.abs()))
}

#[test]
fn matches_sklearn_lbfgs() {
    let bytes = std::fs::read(FIXTURE).expect("run scripts/reference/make_probe_fixtures.py");
    let st = SafeTensors::deserialize(&bytes).unwrap();
    for case in CASES {
        let (train_x, dim) = features(&st, &format!("{case}.train_x"));
        let train_y = labels(&st, &format!("{case}.train_y"));
        let (test_x, _) = features(&st, &format!("{case}.test_x"));
        let test_y = labels(&st, &format!("{case}.test_y"));
        let (coef, coef_shape) = tensor(&st, &format!("{case}.coef"));
        let (intercept, _) = tensor(&st, &format!("{case}.intercept"));
        let (proba, proba_shape) = tensor(&st, &format!("{case}.test_proba"));
        let c = tensor(&st, &format!("{case}.c")).0[0];
        let sk_iter = tensor(&st, &format!("{case}.n_iter")).0[0];
        let classes = proba_shape[1];

        let config = ProbeConfig { c, max_iter: 10_000, tol: 1e-10 };
        let model = LogisticRegression::fit(&train_x, dim, &train_y, classes, &config).unwrap();
        assert!(model.converged, "{case}: not converged after {} iterations", model.iterations);

        // Tolerances: the objective is strictly convex (L2 penalty), so both optimisers approach
        // the same unique optimum, both in f64 on the same f32-valued features. Neither reaches
        // the requested gradient tolerance 1e-10: sklearn (scipy's L-BFGS-B, ftol = 64 eps) and
        // this side (the same rule) stop when a step no longer lowers f by more than f64 can
        // resolve, at max|grad| ~1e-7 (sklearn) and ~2e-8 (here) on the c5d16 case. The distance
        // left to the optimum is ~ |grad| / (smallest Hessian eigenvalue, >= 1/(C n)): each side
        // sits ~1e-6 from the optimum in probability on c5d16, so the two differ by ~1.4e-6 there
        // (measured; the other cases agree to 1e-8 and better). 1e-5 leaves a 7x margin for other
        // platforms' summation order; coefficients differ by ~5e-7 relative, far inside 1e-3.
        let ours = model.predict_proba(&test_x).unwrap();
        let proba_err = max_abs_diff(&ours, &proba);

        // sklearn's coef_: classes x dim; for two classes 1 x dim, the class-1 logit, which this
        // side stores as weights = [-d/2, d/2].
        let (our_coef, our_intercept) = if coef_shape[0] == 1 {
            let d: Vec<f64> = (0..dim).map(|j| model.weights[dim + j] - model.weights[j]).collect();
            (d, vec![model.bias[1] - model.bias[0]])
        } else {
            (model.weights.clone(), model.bias.clone())
        };
        let coef_rel = max_abs_diff(&our_coef, &coef) / max_abs(&coef);
        let intercept_rel = max_abs_diff(&our_intercept, &intercept) / max_abs(&intercept).max(1.0);

        let sk_pred: Vec<usize> = proba.chunks_exact(classes).map(argmax).collect();
        let sk_acc = sk_pred.iter().zip(&test_y).filter(|(p, y)| p == y).count() as f64 / test_y.len() as f64;
        let our_acc = top_k_accuracy(&model.decision_function(&test_x).unwrap(), classes, &test_y, 1).unwrap();
        let pred = model.predict(&test_x).unwrap();
        let pred_acc = pred.iter().zip(&test_y).filter(|(p, y)| p == y).count() as f64 / test_y.len() as f64;

        eprintln!(
            "{case}: iterations {} (sklearn {sk_iter}), max |proba diff| {proba_err:.2e}, coef rel {coef_rel:.2e}, \
             intercept rel {intercept_rel:.2e}, top-1 {our_acc} (sklearn {sk_acc})",
            model.iterations
        );
        assert!(proba_err <= 1e-5, "{case}: probabilities differ by {proba_err:e}");
        assert!(coef_rel <= 1e-3, "{case}: coefficients differ by {coef_rel:e} relative");
        assert!(intercept_rel <= 1e-3, "{case}: intercepts differ by {intercept_rel:e} relative");
        assert_eq!(our_acc, sk_acc, "{case}: top-1 accuracy");
        assert_eq!(pred_acc, our_acc, "{case}: predict vs top_k_accuracy");
        assert_eq!(top_k_accuracy(&ours, classes, &test_y, classes).unwrap(), 1.0);
    }
}

#[test]
fn few_shot_probe_on_the_fixture() {
    let bytes = std::fs::read(FIXTURE).expect("run scripts/reference/make_probe_fixtures.py");
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (train_x, dim) = features(&st, "c5d16.train_x");
    let train_y = labels(&st, "c5d16.train_y");
    let classes = 5;
    let shots = few_shot_indices(&train_y, classes, 4, 7).unwrap();
    assert_eq!(shots, few_shot_indices(&train_y, classes, 4, 7).unwrap());
    assert_eq!(shots.len(), 4 * classes);
    for k in 0..classes {
        assert_eq!(shots.iter().filter(|&&i| train_y[i] == k).count(), 4);
    }
    let x: Vec<f32> = shots.iter().flat_map(|&i| train_x[i * dim..(i + 1) * dim].to_vec()).collect();
    let y: Vec<usize> = shots.iter().map(|&i| train_y[i]).collect();
    let model = LogisticRegression::fit(&x, dim, &y, classes, &ProbeConfig::default()).unwrap();
    assert!(model.converged);
    assert!(few_shot_indices(&train_y, classes, 1000, 7).unwrap_err().contains("class 0 has"));
}
