//! Mixed-precision training on flex (which computes f16 and bf16 natively): half-precision
//! working weights and activations, f32 master weights and AdamW state, the loss in f32, dynamic
//! loss scaling for f16, and exact resume. The device keeps f32 as its default float type, so
//! several runs, in either precision, share one process.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{DType, Tensor};
use florence::data::synthetic::{Layout, Split, SyntheticConfig, write_dataset};
use florence::progress::Recorder;
use florence::train::{TrainConfig, TrainState, Trainer, latest_checkpoint};

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

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn dtype_of(model: &florence::Florence) -> DType {
    model.logit_scale.val().dtype()
}

/// `precision` ("f16" or "bf16") training of `tiny-clip` with AdamW's default epsilon (1e-8,
/// which is 0 in f16 and only works because AdamW's state is f32):
/// - the working weights (forward and backward) are `dtype`, the master weights f32;
/// - every parameter tensor moves, the layer-norm gains near 1 included (without f32 master
///   weights, bf16 rounds their lr-1e-3 updates away: 27 of 150 tensors stayed put);
/// - losses are finite, checkpoints hold the f32 master weights, and f16 runs keep their loss
///   scale in the checkpoint state;
/// - a run stopped after 2 steps and resumed equals the uninterrupted 4-step run bit for bit.
fn train(precision: &str, dtype: DType) {
    // Initialisation draws from the device's one RNG: runs of parallel tests would interleave.
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let root = std::env::temp_dir().join(format!("florence-{precision}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let synth = SyntheticConfig { size: 32, ..SyntheticConfig::default() };
    write_dataset(&synth, Split::Train, 24, &root.join("data"), Layout::Captions, &mut |_, _| {}).unwrap();
    let cfg = |output: &str| {
        TrainConfig::parse(
            &format!(
                r#"
model = "tiny-clip"
output = "{output}"
batch_size = 8
seed = 3
precision = "{precision}"
checkpoint_every = 2
[[data]]
kind = "jsonl"
path = "data/captions.jsonl"
[augment]
enabled = false
[optimizer]
lr = 1e-3
total_steps = 4
"#
            ),
            true,
        )
        .unwrap()
    };

    let mut a = Trainer::new(cfg("run-a"), &root).unwrap();
    assert_eq!(dtype_of(a.model()), dtype);
    assert_eq!(dtype_of(a.weights()), DType::F32);
    let before = flat(a.weights());
    let s = a.run(None, &mut Recorder::default()).unwrap();
    assert_eq!(s.step, 4);
    assert!(a.model().devices()[0].is_autodiff());
    assert_eq!(dtype_of(a.model()), dtype);
    let lines = florence::train::metrics::read_metrics(&root.join("run-a").join("metrics.jsonl")).unwrap();
    eprintln!("{precision} metrics: {lines:?}");
    assert_eq!(lines.len(), 4);
    assert!(lines.iter().all(|l| l.loss.is_some_and(f32::is_finite)));

    let after = flat(a.weights());
    let frozen = before.iter().zip(&after).filter(|(x, y)| x == y).count();
    eprintln!("{precision}: {frozen} of {} master parameter tensors unchanged after 4 steps at lr 1e-3", before.len());
    assert_eq!(frozen, 0, "{precision}: {frozen} parameter tensors did not move");
    // The working copy is the master rounded to `dtype`.
    let (work, master) = (flat(a.model()), after.clone());
    let rounded = |x: f32| Tensor::<1>::from_floats([x], &a.model().devices()[0]).cast(dtype).into_scalar::<f32>();
    assert_eq!(work[0][0], rounded(master[0][0]));

    // Checkpoints and the final file hold the f32 master weights; f16 keeps its loss scale.
    let st = std::fs::read(root.join("run-a").join("final.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&st).unwrap();
    assert!(
        st.tensors()
            .iter()
            .filter(|(k, _)| !k.contains("relative_position_index"))
            .all(|(_, v)| v.dtype() == safetensors::Dtype::F32)
    );
    let ckpt = latest_checkpoint(&root.join("run-a")).unwrap().unwrap();
    let state: TrainState = serde_json::from_slice(&std::fs::read(ckpt.join("state.json")).unwrap()).unwrap();
    assert_eq!(state.loss_scaler.is_some(), dtype == DType::F16);
    if let Some(s) = state.loss_scaler {
        // Each overflow halves the scale from 2^16; the log says which steps were skipped.
        let overflows = lines.iter().filter(|l| l.overflow == Some(true)).count();
        eprintln!("f16 loss scale after 4 steps: {} ({overflows} overflowed steps skipped)", s.scale);
        assert_eq!(s.scale, 65536.0 / (1u32 << overflows) as f32);
        assert!(overflows < 4, "no f16 step was applied");
    } else {
        assert!(lines.iter().all(|l| l.loss_scale.is_none() && l.overflow.is_none()));
    }

    // Stopped after step 2 and resumed in a new trainer.
    let mut b = Trainer::new(cfg("run-b"), &root).unwrap();
    b.run(Some(2), &mut Recorder::default()).unwrap();
    drop(b);
    let mut b = Trainer::resume(cfg("run-b"), &root).unwrap();
    assert_eq!(b.step(), 2);
    b.run(None, &mut Recorder::default()).unwrap();
    assert!(flat(b.weights()) == after, "{precision}: a resumed run must reproduce the uninterrupted one bit for bit");
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn f16_training_with_f32_master_weights() {
    train("f16", DType::F16);
}

#[test]
fn bf16_training_with_f32_master_weights() {
    train("bf16", DType::BF16);
}
