//! Zero-shot classification: an image, a set of labels, ranked with probabilities.
//!
//! ```sh
//! cargo run --release --example zero_shot            # bundled shapes model, a held-out image, 36 labels
//! cargo run --release --example zero_shot -- --image assets/shapes/images/green_cross.png
//! cargo run --release --example zero_shot -- --weights in21k_yfcc14m_gcc15m_swin_base.pth \
//!     --config unicl-swin-b --image my.jpg --labels "cat,dog,coffee mug" --templates imagenet
//! cargo run --release --features hub --example zero_shot -- --weights unicl-swin-b --image my.jpg \
//!     --labels "cat,dog,coffee mug" --templates imagenet      # a registry name: downloaded, checked
//! ```
//!
//! Without `--weights` the model is the bundled shapes model (`assets/shapes/`): a small CoSwin
//! Florence trained with UniCL on florence's synthetic shapes data, in which the colour-shape
//! pair of the default image (a yellow circle) never occurred: ranking it first among all 36
//! pairs takes a text tower that composes colour and shape. On held-out pairs the model is right
//! 33% of the time (chance: 3%), and the right colour is almost always in the top 5
//! (`assets/shapes/results.json`).

use florence::preprocess::{DecodeOptions, Preprocessor, decode_image_file};
use florence::progress::Silent;
use florence::text::tokenizer::Tokenizer;
use florence::zeroshot::{Templates, ZeroShotClassifier, parse_label_list};
use florence::{Florence, FlorenceConfig};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn main() -> anyhow::Result<()> {
    let mut weights: Option<String> = None;
    let mut config: Option<String> = None;
    let mut image = format!("{ROOT}/assets/shapes/images/yellow_circle.png");
    let mut labels =
        std::fs::read_to_string(format!("{ROOT}/assets/shapes/labels.txt"))?.lines().collect::<Vec<_>>().join(",");
    let mut templates = format!("{ROOT}/assets/shapes/shapes-templates.txt");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or_else(|| anyhow::anyhow!("{a} needs a value"));
        match a.as_str() {
            "--weights" => weights = Some(value()?),
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
    // No --weights: the bundled shapes model and its config. --weights NAME (a registry name):
    // its file, preset and preprocessing. --weights FILE without --config: the preset the
    // checkpoint's shapes match.
    let (weights, config) = match weights {
        Some(w) => (w, config),
        None => (
            format!("{ROOT}/assets/shapes/model.safetensors"),
            config.or(Some(format!("{ROOT}/assets/shapes/config.json"))),
        ),
    };
    if !std::path::Path::new(&weights).exists() && florence::pretrained::find(&weights).is_ok() {
        eprintln!("weights {weights}: from the hub cache, else downloaded once (no progress shown) and checked");
    }
    let resolved = florence::pretrained::resolve_reference(&weights, &mut Silent)?;
    let weights = resolved.path;
    let mut config = match (config, resolved.entry) {
        (Some(c), _) => FlorenceConfig::from_preset_or_file(&c)?,
        (None, Some(entry)) => entry.config()?,
        (None, None) => florence::checkpoint::infer_config(&weights)?.1,
    };
    if let Some(entry) = resolved.entry
        && config.preprocess.is_none()
    {
        config.preprocess = Some(entry.preprocess.clone());
    }
    let model = Florence::load(&config, &weights, &device)?;
    let tokenizer = Tokenizer::clip()?.with_context_length(config.text.context_length);
    let labels = parse_label_list(&labels);
    let classifier =
        ZeroShotClassifier::build(&model, &tokenizer, &labels, &Templates::parse(&templates)?, 64, &mut Silent)?;

    let preprocessor = Preprocessor::new(config.preprocess())?;
    let pixels = preprocessor.batch(&[decode_image_file(&image, &DecodeOptions::default())?], &device)?;
    let top = classifier.classify(&model, pixels, 5)?.remove(0);
    println!("{}", image.strip_prefix(&format!("{ROOT}/")).unwrap_or(&image));
    for p in top {
        println!("  {:>6.2}%  {}", p.probability * 100.0, p.label);
    }
    Ok(())
}
