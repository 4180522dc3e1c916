//! `encode_image` (batch 8 at 224) and `encode_text` (batch 64, 77 tokens) of `unicl-swin-t` on
//! the default device. Weights: `FLORENCE_BENCH_WEIGHTS` (any checkpoint the loader takes; the
//! PyTorch comparison in `scripts/bench/bench_towers.py` sets it so both sides run the same
//! weights), else random initialisation. A timing is a measurement, never a test assertion.
//!
//! ```sh
//! cargo bench --bench towers
//! python scripts/bench/bench_towers.py   # the same, next to PyTorch, with the ratio
//! ```

use burn::prelude::*;
use criterion::{Criterion, criterion_group, criterion_main};
use florence::{Florence, FlorenceConfig};

fn model(device: &Device) -> Florence {
    let config = FlorenceConfig::preset("unicl-swin-t").expect("preset");
    match std::env::var("FLORENCE_BENCH_WEIGHTS") {
        Ok(path) => Florence::load(&config, &path, device).expect("weights"),
        Err(_) => config.init(device).expect("model"),
    }
}

fn towers(c: &mut Criterion) {
    let device = florence::device::default_device().expect("device");
    let m = model(&device);
    let images = Tensor::<4>::random([8, 3, 224, 224], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
    // 64 prompts of varied length: BOS, tokens, EOS, EOS padding to 77.
    let mut ids = vec![49407i64; 64 * 77];
    for r in 0..64 {
        let n = 4 + r % 20;
        ids[r * 77] = 49406;
        for t in 1..=n {
            ids[r * 77 + t] = ((r * 131 + t * 17) % 49000) as i64;
        }
    }
    let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [64, 77]), &device);
    let mut g = c.benchmark_group("unicl-swin-t");
    g.sample_size(10);
    g.bench_function("encode_image_b8_224", |b| {
        b.iter(|| m.encode_image(images.clone()).expect("forward").into_data())
    });
    g.bench_function("encode_text_b64", |b| b.iter(|| m.encode_text(ids.clone()).expect("forward").into_data()));
    g.finish();
}

criterion_group!(benches, towers);
criterion_main!(benches);
