//! Gradient cache: the parameter gradients computed sub-batch by sub-batch equal plain
//! full-batch backpropagation (tiny model, repeated labels, sub-batches that do not divide the
//! batch).

mod common;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::Distribution;
use common::{device, fixture_path, replica_device};
use florence::train::{
    ContrastiveBatch, StepOptions, all_gather, all_reduce_sum, data_parallel_gradients, full_batch_gradients,
    full_batch_gradients_with, grad_cache_gradients,
};
use florence::{Florence, FlorenceConfig};

/// Largest |a - b| / max(1, |b|max) over every parameter's gradient, and how many were compared.
struct Compare<'a> {
    a: &'a GradientsParams,
    b: &'a GradientsParams,
    worst: f32,
    compared: usize,
    missing: Vec<String>,
}

impl ModuleVisitor for Compare<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        match (self.a.get::<D>(param.id), self.b.get::<D>(param.id)) {
            (Some(a), Some(b)) => {
                let a: Vec<f32> = a.into_data().iter::<f32>().collect();
                let b: Vec<f32> = b.into_data().iter::<f32>().collect();
                let scale = b.iter().fold(1.0f32, |m, x| m.max(x.abs()));
                let err = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max) / scale;
                self.worst = self.worst.max(err);
                self.compared += 1;
            }
            _ => self.missing.push(format!("{:?}", param.id)),
        }
    }
}

fn tiny_batch(plain: &Device) -> ContrastiveBatch {
    let plain = plain.clone();
    let n = 7;
    let images = Tensor::<4>::random([n, 3, 64, 64], Distribution::Normal(0.0, 1.0), &plain);
    // Tiny vocabulary 1000: BOS 998, EOS 999 (the max id, where the text tower pools).
    let mut ids = vec![999i64; n * 16];
    for (r, len) in [3usize, 5, 9, 2, 14, 7, 4].iter().enumerate() {
        ids[r * 16] = 998;
        for j in 1..=*len {
            ids[r * 16 + j] = ((r * 31 + j * 17) % 990) as i64;
        }
        for j in (len + 1)..16 {
            ids[r * 16 + j] = 999;
        }
    }
    let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [n, 16]), &plain);
    ContrastiveBatch { images, ids, labels: vec![0, 1, 0, 2, 1, 3, 0] }
}

fn compare(model: &Florence, a: &GradientsParams, b: &GradientsParams) -> f32 {
    let mut cmp = Compare { a, b, worst: 0.0, compared: 0, missing: vec![] };
    model.visit(&mut cmp);
    assert!(cmp.missing.is_empty(), "parameters without a gradient: {:?}", cmp.missing);
    assert!(cmp.compared > 100);
    cmp.worst
}

#[test]
fn grad_cache_equals_full_batch_gradients() {
    let plain = device();
    let config = FlorenceConfig::preset("tiny").unwrap();
    // `train()` moves a plain model onto the autodiff backend with its parameters tracked.
    let model: Florence = Florence::load(&config, fixture_path("tiny_swin.safetensors"), &plain).unwrap().train();
    let batch = tiny_batch(&plain);

    let full = full_batch_gradients(&model, &batch, None).unwrap();
    for chunk in [3, 1] {
        let cached = grad_cache_gradients(&model, &batch, chunk, None).unwrap();
        assert!((cached.loss - full.loss).abs() < 1e-5, "loss {} vs {}", cached.loss, full.loss);
        let mut cmp = Compare { a: &cached.grads, b: &full.grads, worst: 0.0, compared: 0, missing: vec![] };
        model.visit(&mut cmp);
        assert!(cmp.missing.is_empty(), "parameters without a gradient: {:?}", cmp.missing);
        eprintln!("chunk {chunk}: {} parameter gradients, max relative error {:.2e}", cmp.compared, cmp.worst);
        assert!(cmp.compared > 100);
        assert!(cmp.worst < 1e-4, "chunk {chunk}: {}", cmp.worst);
    }

    // A batch whose parts disagree in size is an error, not a panic.
    let bad = ContrastiveBatch { labels: vec![0, 1], ..batch };
    assert!(grad_cache_gradients(&model, &bad, 2, None).is_err());
}

/// Data parallelism over several replicas, each a fork of the model with its own autodiff graph
/// on its own thread: the all-gathered loss and the reduced gradients equal full-batch
/// backpropagation, for 2 and 3 replicas (3 does not divide the batch of 7), with and without
/// the gradient cache inside each replica. Replica 0 is on the test device and the others on
/// [`common::replica_device`]: on flex, which has one device, the same one; in CI's wgpu run,
/// a second wgpu device (`wgpu:cpu`), so the all-gather and the gradient reduction cross devices.
#[test]
fn data_parallel_equals_full_batch_gradients() {
    let plain = device();
    let config = FlorenceConfig::preset("tiny").unwrap();
    let model: Florence = Florence::load(&config, fixture_path("tiny_swin.safetensors"), &plain).unwrap().train();
    let batch = tiny_batch(&plain);
    let full = full_batch_gradients(&model, &batch, None).unwrap();
    let other = replica_device().autodiff();
    eprintln!("replica devices: {:?}, then {:?}", model.devices()[0], other);
    for (replicas, chunk) in [(2usize, None), (3, Some(2))] {
        let reps: Vec<Florence> =
            (0..replicas).map(|i| if i == 0 { model.clone() } else { model.clone().fork(&other) }).collect();
        let dp = data_parallel_gradients(&reps, &batch, StepOptions { chunk, ..Default::default() }).unwrap();
        assert!((dp.loss - full.loss).abs() < 1e-5, "loss {} vs {}", dp.loss, full.loss);
        let worst = compare(&model, &dp.grads, &full.grads);
        eprintln!("{replicas} replicas, chunk {chunk:?}: max relative gradient error {worst:.2e}");
        assert!(worst < 1e-4, "{replicas} replicas: {worst}");
    }
}

/// Stochastic depth draws its masks from the step seed and each pair's row in the batch, so the
/// gradient cache's two forwards of a sub-batch, any sub-batch size and any number of replicas
/// drop the same branches as full-batch backpropagation does: the gradients agree as closely as
/// without drop path. A different seed, or none, gives other gradients (so the masks are real).
#[test]
fn stochastic_depth_is_replayed_exactly_in_the_gradient_cache_and_over_replicas() {
    let plain = device();
    let mut config = FlorenceConfig::preset("tiny").unwrap();
    config.image.drop_path_rate = 0.5;
    config.text.drop_path_rate = 0.5;
    let model: Florence = Florence::load(&config, fixture_path("tiny_swin.safetensors"), &plain).unwrap().train();
    let batch = tiny_batch(&plain);
    let seeded = |seed| StepOptions { drop_path_seed: Some(seed), ..Default::default() };
    let full = full_batch_gradients_with(&model, &batch, seeded(42)).unwrap();
    let other = replica_device().autodiff();
    for (replicas, chunk) in [(1usize, Some(1)), (1, Some(3)), (3, Some(2)), (2, None)] {
        let reps: Vec<Florence> =
            (0..replicas).map(|i| if i == 0 { model.clone() } else { model.clone().fork(&other) }).collect();
        let dp = data_parallel_gradients(&reps, &batch, StepOptions { chunk, ..seeded(42) }).unwrap();
        assert!((dp.loss - full.loss).abs() < 1e-5, "loss {} vs {}", dp.loss, full.loss);
        let worst = compare(&model, &dp.grads, &full.grads);
        eprintln!("drop path 0.5, {replicas} replicas, chunk {chunk:?}: max relative gradient error {worst:.2e}");
        assert!(worst < 1e-4, "{replicas} replicas, chunk {chunk:?}: {worst}");
    }
    let plain_grads = full_batch_gradients(&model, &batch, None).unwrap();
    let reseeded = full_batch_gradients_with(&model, &batch, seeded(43)).unwrap();
    for (name, g) in [("no drop path", &plain_grads), ("seed 43", &reseeded)] {
        let diff = compare(&model, &g.grads, &full.grads);
        eprintln!("{name} vs seed 42: max relative gradient difference {diff:.2e}");
        assert!(diff > 1e-2, "{name}: drop path changed nothing ({diff})");
    }
    // Inference is untouched by the rates: the encoder with rates equals the one without.
    let frozen = model.valid();
    let rateless =
        Florence::load(&FlorenceConfig::preset("tiny").unwrap(), fixture_path("tiny_swin.safetensors"), &plain)
            .unwrap();
    let u = frozen.encode_image(batch.images.clone()).unwrap().into_data();
    assert_eq!(u, rateless.encode_image(batch.images.clone()).unwrap().into_data());
}

/// Burn's balanced gradient checkpointing recomputes memory-bound activations in backward; the
/// gradients must not change.
#[test]
fn gradient_checkpointing_keeps_the_gradients() {
    let plain = device();
    let config = FlorenceConfig::preset("tiny").unwrap();
    let model: Florence = Florence::load(&config, fixture_path("tiny_swin.safetensors"), &plain).unwrap().train();
    let batch = tiny_batch(&plain);
    let full = full_batch_gradients(&model, &batch, None).unwrap();
    let ckpt_device = plain.clone().autodiff().gradient_checkpointing();
    let ckpt: Florence = Florence::load(&config, fixture_path("tiny_swin.safetensors"), &ckpt_device).unwrap().train();
    assert!(ckpt.logit_scale.val().gradient_checkpointing_strategy().is_some());
    let g = data_parallel_gradients(std::slice::from_ref(&ckpt), &batch, StepOptions::default()).unwrap();
    assert!((g.loss - full.loss).abs() < 1e-5);
    // Parameter ids differ between the two loads; compare by position.
    let (a, b) = (flat_grads(&ckpt, &g.grads), flat_grads(&model, &full.grads));
    assert_eq!(a.len(), b.len());
    // Recomputation changes f32 summation order only: relative to the largest gradient, as the
    // other comparisons in this file.
    let scale = b.iter().fold(1.0f32, |m, x| m.max(x.abs()));
    let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max) / scale;
    eprintln!("gradient checkpointing: max relative gradient difference {worst:.2e} (largest gradient {scale:.1})");
    assert!(worst < 1e-4, "{worst}");
}

fn flat_grads(model: &Florence, g: &GradientsParams) -> Vec<f32> {
    struct Flat<'a>(&'a GradientsParams, Vec<f32>);
    impl ModuleVisitor for Flat<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            self.1.extend(self.0.get::<D>(p.id).expect("gradient").into_data().iter::<f32>());
        }
    }
    let mut f = Flat(g, Vec::new());
    model.visit(&mut f);
    f.1
}

/// The collectives, with parts on the test device and on [`common::replica_device`] (two
/// devices in CI's wgpu run): every result lands on its part's device.
#[test]
fn all_gather_and_all_reduce() {
    let (d, e) = (device(), replica_device());
    let parts = vec![
        Tensor::<2>::from_floats([[1.0, 2.0], [3.0, 4.0]], &d),
        Tensor::<2>::from_floats([[5.0, 6.0]], &e),
        Tensor::<2>::from_floats([[7.0, 8.0], [9.0, 10.0], [11.0, 12.0]], &d),
    ];
    let gathered = all_gather(parts).unwrap();
    assert_eq!(gathered.len(), 3);
    for (g, want) in gathered.into_iter().zip([&d, &e, &d]) {
        assert_eq!(&g.device(), want);
        assert_eq!(g.dims(), [6, 2]);
        assert_eq!(g.into_data().iter::<f32>().collect::<Vec<_>>(), (1..=12).map(|x| x as f32).collect::<Vec<_>>());
    }
    let sums =
        all_reduce_sum(vec![Tensor::<1>::from_floats([1.0, 2.0], &d), Tensor::<1>::from_floats([10.0, 20.0], &e)])
            .unwrap();
    assert_eq!(sums[1].device(), e);
    assert!(sums.iter().all(|s| s.clone().into_data().iter::<f32>().collect::<Vec<_>>() == vec![11.0, 22.0]));
    assert!(all_gather(vec![]).is_err());
    assert!(all_gather(vec![Tensor::<2>::zeros([1, 2], &d), Tensor::<2>::zeros([1, 3], &d)]).is_err());
}
