//! Zero-shot classification: a photo, a few labels, ranked with probabilities.
//!
//! ```sh
//! cargo run --release --example zero_shot            # bundled photo + labels, bundled test model
//! cargo run --release --example zero_shot -- --weights in21k_yfcc14m_gcc15m_swin_base.pth \
//!     --config unicl-swin-b --image my.jpg --labels "cat,dog,coffee mug" --templates imagenet
//! ```
//!
//! Without `--weights` the model is the random-weight `tiny-clip` test checkpoint, so the
//! probabilities show the pipeline working, not a real prediction.

use florence::preprocess::{DecodeOptions, Preprocessor, decode_image_file};
use florence::progress::Silent;
use florence::text::tokenizer::Tokenizer;
use florence::zeroshot::{Templates, ZeroShotClassifier, parse_label_list};
use florence::{Florence, FlorenceConfig};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn main() -> anyhow::Result<()> {
    let mut weights = format!("{ROOT}/tests/fixtures/tiny_clip_fp16.pth");
    let mut config: Option<String> = None;
    let mut image = format!("{ROOT}/assets/images/chelsea.png");
    let mut labels = "cat,dog,coffee mug,rocket,astronaut".to_string();
    let mut templates = "simple".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or_else(|| anyhow::anyhow!("{a} needs a value"));
        match a.as_str() {
            "--weights" => weights = value()?,
            "--config" => config = Some(value()?),
            "--image" => image = value()?,
            "--labels" => labels = value()?,
            "--templates" => templates = value()?,
            other => anyhow::bail!(
                "unknown argument `{other}`; usage: zero_shot [--weights W --config PRESET|FILE] [--image P] [--labels \"a,b\"] [--templates imagenet|simple|none|FILE]"
            ),
        }
    }
    let device = florence::device::default_device()?;
    // Without --config: the preset the checkpoint's shapes match (the bundled one is tiny-clip).
    let config = match config {
        Some(c) => FlorenceConfig::from_preset_or_file(&c)?,
        None => florence::checkpoint::infer_config(&weights)?.1,
    };
    let model = Florence::load(&config, &weights, &device)?;
    let tokenizer = Tokenizer::clip()?.with_context_length(config.text.context_length);
    let labels = parse_label_list(&labels);
    let classifier =
        ZeroShotClassifier::build(&model, &tokenizer, &labels, &Templates::parse(&templates)?, 64, &mut Silent)?;

    let preprocessor = Preprocessor::new(config.preprocess())?;
    let pixels = preprocessor.batch(&[decode_image_file(&image, &DecodeOptions::default())?], &device)?;
    let top = classifier.classify(&model, pixels, 5)?.remove(0);
    println!("{image}");
    for p in top {
        println!("  {:>6.2}%  {}", p.probability * 100.0, p.label);
    }
    if weights.ends_with("tiny_clip_fp16.pth") {
        eprintln!("(random-weight test model: pass --weights and --config for a real checkpoint)");
    }
    Ok(())
}
