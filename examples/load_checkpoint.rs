//! Load a checkpoint strictly and show what it holds: the load report, the architecture, the
//! per-stage feature maps for an image of the config's size, and the logit scale.
//!
//! ```sh
//! cargo run --release --example load_checkpoint                      # the bundled tiny fixture
//! cargo run --release --example load_checkpoint -- --config unicl-swin-b \
//!     --weights in21k_yfcc14m_gcc15m_swin_base.pth                  # a released UniCL checkpoint
//! ```

use burn::module::Module;
use burn::prelude::*;
use florence::FlorenceConfig;

fn main() -> anyhow::Result<()> {
    let mut config = "tiny".to_string();
    let mut weights = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny_swin_fp16.pth").to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--config" => {
                config = args.next().ok_or_else(|| anyhow::anyhow!("--config needs a preset or a JSON file"))?
            }
            "--weights" => weights = args.next().ok_or_else(|| anyhow::anyhow!("--weights needs a path"))?,
            other => anyhow::bail!(
                "unknown argument `{other}`; usage: load_checkpoint [--config PRESET|FILE] [--weights PATH]"
            ),
        }
    }
    let device = florence::device::default_device()?;
    eprintln!("device: {device:?}");
    let config = FlorenceConfig::from_preset_or_file(&config)?;
    let mut model = config.init(&device)?;
    let report = model.load_weights(&weights)?;
    println!("loaded {weights}");
    println!(
        "  format {:?}, naming {:?}, {} parameter tensors, {} buffers verified, dtypes {:?}",
        report.format, report.convention, report.loaded, report.buffers_checked, report.dtypes
    );
    println!("  {} parameters, logit scale exp(s) = {:.4}", model.num_params(), model.scale_value());
    let s = config.image.image_size;
    let image = Tensor::<4>::random([1, 3, s, s], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
    let (maps, _) = model.image_encoder.forward_stages(image.clone())?;
    for (i, m) in maps.iter().enumerate() {
        println!("  stage {i}: {:?} (NHWC), {} channels, stride {}", m.tensor.dims(), m.channels, m.stride);
    }
    let emb = model.encode_image(image)?;
    println!("  image embedding: {:?}, norm {:.6}", emb.dims(), emb.powi_scalar(2).sum().sqrt().into_scalar::<f32>());
    Ok(())
}
