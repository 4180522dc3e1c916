//! Half-precision training on flex, shared by `half_precision.rs` (f16) and `bf16_training.rs`
//! (bf16). Each precision is its own test binary: the float type is set on the device once per
//! process, before any tensor exists.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{DType, Tensor};
use florence::data::synthetic::{Layout, Split, SyntheticConfig, write_dataset};
use florence::progress::Recorder;
use florence::train::{TrainConfig, Trainer};

/// Every parameter tensor of `model`, as f32 values, in traversal order.
fn flat(model: &florence::Florence) -> Vec<Vec<f32>> {
    struct Flat(Vec<Vec<f32>>);
    impl ModuleVisitor for Flat {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            self.0.push(p.val().into_data().convert::<f32>().iter::<f32>().collect());
        }
    }
    let mut f = Flat(Vec::new());
    model.visit(&mut f);
    f.0
}

/// A few steps of `precision` ("f16" or "bf16") training of `tiny-clip` with AdamW epsilon
/// `eps`: parameters and activations in `dtype`, finite f32 losses, checkpoints in `dtype`.
pub fn train(precision: &str, dtype: DType, st_dtype: safetensors::Dtype, eps: f64) {
    let root = std::env::temp_dir().join(format!("florence-{precision}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let synth = SyntheticConfig { size: 32, ..SyntheticConfig::default() };
    write_dataset(&synth, Split::Train, 24, &root.join("data"), Layout::Captions, &mut |_, _| {}).unwrap();
    let cfg = TrainConfig::parse(
        &format!(
            r#"
model = "tiny-clip"
output = "run"
batch_size = 8
seed = 3
precision = "{precision}"
checkpoint_every = 3
[[data]]
kind = "jsonl"
path = "data/captions.jsonl"
[augment]
enabled = false
[optimizer]
lr = 1e-3
eps = {eps:e}
total_steps = 3
"#
        ),
        true,
    )
    .unwrap();
    let mut t = Trainer::new(cfg, &root).unwrap();
    assert_eq!(t.model().logit_scale.val().dtype(), dtype);
    let before = flat(t.model());
    let s = t.run(None, &mut Recorder::default()).unwrap();
    assert_eq!(s.step, 3);
    let lines = florence::train::metrics::read_metrics(&root.join("run").join("metrics.jsonl")).unwrap();
    eprintln!("{precision} metrics: {lines:?}");
    assert_eq!(lines.len(), 3);
    assert!(lines.iter().all(|l| l.loss.is_some_and(f32::is_finite)));
    // The optimiser moved the parameters. Burn keeps no f32 master copy, so an update below half
    // an ulp of its parameter is rounded away (README, "Half precision"): count how many.
    let after = flat(t.model());
    // (Token-embedding rows of tokens absent from the batch get no gradient and stay put in any
    // precision, so the count is per tensor.)
    let frozen = before.iter().zip(&after).filter(|(a, b)| a == b).count();
    eprintln!("{precision}: {frozen} of {} parameter tensors unchanged after 3 steps at lr 1e-3", before.len());
    assert!(frozen * 4 < before.len(), "{precision}: {frozen} of {} parameter tensors did not move", before.len());
    assert!(t.model().devices()[0].is_autodiff());
    // The checkpoint keeps the model's dtype.
    let st = std::fs::read(root.join("run").join("final.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&st).unwrap();
    assert!(st.tensors().iter().any(|(_, v)| v.dtype() == st_dtype));
    std::fs::remove_dir_all(&root).ok();
}
