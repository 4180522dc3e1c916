//! Gradient cache: the parameter gradients computed sub-batch by sub-batch equal plain
//! full-batch backpropagation (tiny model, repeated labels, sub-batches that do not divide the
//! batch).

mod common;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::Distribution;
use common::{device, fixture_path};
use florence::train::{ContrastiveBatch, full_batch_gradients, grad_cache_gradients};
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

#[test]
fn grad_cache_equals_full_batch_gradients() {
    let plain = device();
    let config = FlorenceConfig::preset("tiny").unwrap();
    // `train()` moves a plain model onto the autodiff backend with its parameters tracked.
    let model: Florence = Florence::load(&config, fixture_path("tiny_swin.safetensors"), &plain).unwrap().train();

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
    let batch = ContrastiveBatch { images, ids, labels: vec![0, 1, 0, 2, 1, 3, 0] };

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
