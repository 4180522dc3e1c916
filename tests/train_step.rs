//! Optimiser groups and a short training run: weight decay reaches only the decayed group, and a
//! few AdamW steps with the gradient cache lower the UniCL loss of a tiny model.

mod common;

use std::collections::HashMap;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::Distribution;
use common::{device, fixture_path};
use florence::train::{ContrastiveBatch, OptimizerConfig, decay_table, grad_cache_gradients};
use florence::{Florence, FlorenceConfig};

fn tiny() -> Florence {
    let config = FlorenceConfig::preset("tiny").unwrap();
    Florence::load(&config, fixture_path("tiny_swin.safetensors"), &device()).unwrap().train()
}

fn opt(total: usize) -> OptimizerConfig {
    OptimizerConfig {
        lr: 1e-3,
        min_lr: 1e-4,
        warmup_steps: 2,
        total_steps: total,
        weight_decay: 0.5,
        betas: (0.9, 0.999),
        eps: 1e-8,
        clip_grad_norm: Some(1.0),
    }
}

#[derive(Default)]
struct Values(HashMap<ParamId, Vec<f32>>, Vec<ParamId>);
impl ModuleVisitor for Values {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        self.0.insert(p.id, p.val().into_data().iter::<f32>().collect());
        self.1.push(p.id);
    }
}

#[derive(Default)]
struct Zeros(GradientsParams);
impl ModuleVisitor for Zeros {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        self.0.register(p.id, p.val().zeros_like().inner());
    }
}

#[test]
fn weight_decay_only_on_the_decayed_group() {
    let model = tiny();
    let table = decay_table(&model);
    let decayed = |needle: &str| table.iter().filter(|(p, _)| p.contains(needle)).all(|(_, d)| *d);
    let kept = |needle: &str| table.iter().filter(|(p, _)| p.contains(needle)).all(|(_, d)| !*d);
    assert!(decayed("qkv.weight") && decayed("fc1.weight") && decayed("c_fc.weight") && decayed("image_projection"));
    assert!(kept("token_embedding") && kept("positional_embedding") && kept("relative_position_bias_table"));
    assert!(kept("norm") && kept("ln_") && kept("bias") && kept("logit_scale"));
    let n_decay = table.iter().filter(|(_, d)| *d).count();
    assert!(n_decay > 20 && n_decay < table.len());

    // With zero gradients AdamW's update is 0, so only the decoupled decay moves parameters:
    // decayed ones scale by exactly (1 - lr * wd), the others stay put.
    let mut before = Values::default();
    model.visit(&mut before);
    let mut zeros = Zeros::default();
    model.visit(&mut zeros);
    let cfg = opt(10);
    let mut optim = cfg.init(&model).unwrap();
    let lr = 0.1;
    let stepped = optim.step(lr, model, zeros.0);
    let mut after = Values::default();
    stepped.visit(&mut after);
    for (id, (path, decays)) in before.1.iter().zip(&table) {
        let factor = if *decays { 1.0 - (lr as f32) * cfg.weight_decay } else { 1.0 };
        let err = before.0[id].iter().zip(&after.0[id]).map(|(b, a)| (b * factor - a).abs()).fold(0.0f32, f32::max);
        assert!(err < 1e-6, "{path}: decays={decays}, error {err}");
    }
}

#[test]
fn a_few_steps_lower_the_loss() {
    let plain = device();
    let mut model = tiny();
    let n = 8;
    let images = Tensor::<4>::random([n, 3, 64, 64], Distribution::Normal(0.0, 1.0), &plain);
    let mut ids = vec![999i64; n * 16];
    for r in 0..n {
        ids[r * 16] = 998;
        for j in 1..=(3 + r) {
            ids[r * 16 + j] = ((r * 37 + j * 11) % 990) as i64;
        }
    }
    let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [n, 16]), &plain);
    let batch = ContrastiveBatch { images, ids, labels: vec![0, 1, 2, 3, 0, 1, 4, 5] };
    let cfg = opt(12);
    let mut optim = cfg.init(&model).unwrap();
    let mut losses = Vec::new();
    for step in 0..cfg.total_steps {
        let out = grad_cache_gradients(&model, &batch, 4, None).unwrap();
        losses.push(out.loss);
        model = optim.step(cfg.lr_at(step), model, out.grads);
    }
    eprintln!("losses: {losses:?}");
    assert!(losses.iter().all(|l| l.is_finite()));
    assert!(losses[losses.len() - 1] < 0.8 * losses[0], "{losses:?}");
}
