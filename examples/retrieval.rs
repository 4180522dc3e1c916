//! Text-to-image and image-to-text retrieval over a folder of photos.
//!
//! ```sh
//! cargo run --release --example retrieval                       # bundled photos, bundled test model
//! cargo run --release --example retrieval -- --weights W --config unicl-swin-b \
//!     --folder ~/Pictures --query "a cat sleeping on a sofa"
//! ```
//!
//! Without `--weights` the model is the random-weight `tiny-clip` test checkpoint.

use florence::preprocess::{DecodeOptions, Preprocessor, decode_image_file};
use florence::progress::Recorder;
use florence::retrieval::{ImageIndex, list_images, rank_texts};
use florence::text::tokenizer::Tokenizer;
use florence::{Florence, FlorenceConfig};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn main() -> anyhow::Result<()> {
    let mut weights = format!("{ROOT}/tests/fixtures/tiny_clip_fp16.pth");
    let mut config = "tiny-clip".to_string();
    let mut folder = format!("{ROOT}/assets/images");
    let mut query = "a photo of a cat".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or_else(|| anyhow::anyhow!("{a} needs a value"));
        match a.as_str() {
            "--weights" => weights = value()?,
            "--config" => config = value()?,
            "--folder" => folder = value()?,
            "--query" => query = value()?,
            other => anyhow::bail!(
                "unknown argument `{other}`; usage: retrieval [--weights W --config C] [--folder DIR] [--query TEXT]"
            ),
        }
    }
    let device = florence::device::default_device()?;
    let config = FlorenceConfig::from_preset_or_file(&config)?;
    let model = Florence::load(&config, &weights, &device)?;
    let tokenizer = Tokenizer::clip()?.with_context_length(config.text.context_length);
    let preprocessor = Preprocessor::new(config.preprocess())?;
    let decode = DecodeOptions::default();

    // Paths print as the user gave them: the default folder relative to the crate's root.
    let shown = |p: &std::path::Path| p.strip_prefix(ROOT).unwrap_or(p).display().to_string();
    let paths = list_images(folder.as_ref())?;
    let mut progress = Recorder::default();
    let (index, skipped) = ImageIndex::build(&model, &preprocessor, &decode, &paths, 16, &mut progress)?;
    println!("indexed {} images ({} skipped)", index.len(), skipped.len());
    for w in &progress.warnings {
        eprintln!("warning: {w}");
    }

    println!("query: {query:?}");
    for h in index.search_text(&model, &tokenizer, &query, 3)? {
        println!("  {:.4}  {}", h.score, shown(&index.paths()[h.index]));
    }

    let Some(first) = index.paths().first() else {
        anyhow::bail!("no readable images under {folder}");
    };
    let texts: Vec<String> = ["a cat", "a cup of coffee", "a rocket launch", "an astronaut"].map(String::from).to_vec();
    let pixels = preprocessor.batch(&[decode_image_file(first, &decode)?], &device)?;
    println!("texts for {}:", shown(first));
    for h in rank_texts(&model, &tokenizer, pixels, &texts, texts.len())?.remove(0) {
        println!("  {:.4}  {}", h.score, texts[h.index]);
    }
    Ok(())
}
