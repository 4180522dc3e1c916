//! The same model code on every backend compiled into this build: load the test checkpoint on
//! each device, embed the same photo and compare the results and the time.
//!
//! ```sh
//! cargo run --release --example backends                        # flex only
//! cargo run --release --example backends --features wgpu        # flex and wgpu
//! ```

use std::time::Instant;

use florence::preprocess::{DecodeOptions, Preprocessor, decode_image_file};
use florence::{Florence, FlorenceConfig};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn main() -> anyhow::Result<()> {
    let config = FlorenceConfig::preset("tiny-clip")?;
    let weights = format!("{ROOT}/tests/fixtures/tiny_clip_fp16.pth");
    let img = decode_image_file(format!("{ROOT}/assets/images/coffee.png"), &DecodeOptions::default())?;
    let pre = Preprocessor::new(config.preprocess())?;
    let mut reference: Option<Vec<f32>> = None;
    for name in florence::device::available() {
        let device = florence::device::device_by_name(name)?;
        let model = Florence::load(&config, &weights, &device)?;
        let pixels = pre.batch(std::slice::from_ref(&img), &device)?;
        let t = Instant::now();
        let e = florence::ops::to_vec_f32(model.encode_image(pixels)?)?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        let diff = reference.as_ref().map(|r| r.iter().zip(&e).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max));
        println!(
            "{name:>6}: embedding[0..3] = {:?}  ({ms:.1} ms, first call includes kernel compilation){}",
            &e[..3],
            diff.map(|d| format!(", max |diff| vs {} = {d:.2e}", florence::device::available()[0])).unwrap_or_default()
        );
        reference.get_or_insert(e);
    }
    Ok(())
}
