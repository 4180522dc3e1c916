//! `florence classify`: zero-shot classification of images.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use florence::progress::Progress;
use florence::zeroshot::{Templates, ZeroShotClassifier, imagenet_classes, parse_label_list};

use crate::common::{Bar, ModelArgs, load};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Images to classify.
    #[arg(long, short = 'i', required = true, num_args = 1..)]
    pub image: Vec<PathBuf>,
    /// Comma-separated labels, e.g. "cat,dog,a red car".
    #[arg(long, conflicts_with_all = ["labels_file", "imagenet", "classifier"])]
    pub labels: Option<String>,
    /// A file with one label per line.
    #[arg(long, conflicts_with_all = ["imagenet", "classifier"])]
    pub labels_file: Option<PathBuf>,
    /// The 1000 ImageNet-1K classes (UniCL's list).
    #[arg(long, conflicts_with = "classifier")]
    pub imagenet: bool,
    /// A classifier saved earlier with --save-classifier (skips building the class embeddings).
    #[arg(long)]
    pub classifier: Option<PathBuf>,
    /// Save the class embeddings to reuse them with --classifier.
    #[arg(long)]
    pub save_classifier: Option<PathBuf>,
    /// Prompt templates: imagenet (UniCL's 81), simple (CLIP's 7), none, or a file (one per line, with `{}`).
    #[arg(long, default_value = "imagenet")]
    pub templates: String,
    /// Labels to show per image.
    #[arg(long, short = 'k', default_value_t = 5)]
    pub top_k: usize,
    /// JSON on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn labels(a: &Args) -> Result<Vec<String>> {
    if let Some(l) = &a.labels {
        return Ok(parse_label_list(l));
    }
    if let Some(f) = &a.labels_file {
        let text = std::fs::read_to_string(f).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", f.display()))?;
        return Ok(text.lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect());
    }
    if a.imagenet {
        return Ok(imagenet_classes());
    }
    bail!("give the labels: --labels \"a,b,c\", --labels-file FILE, --imagenet or --classifier FILE")
}

pub fn run(a: Args) -> Result<ExitCode> {
    let m = load(&a.model)?;
    let mut bar = Bar::new(a.model.quiet);
    let classifier = match &a.classifier {
        Some(p) => ZeroShotClassifier::load(p, &m.device)?,
        None => {
            let labels = labels(&a)?;
            let templates = Templates::parse(&a.templates)?;
            ZeroShotClassifier::build(&m.model, &m.tokenizer, &labels, &templates, a.model.batch_size, &mut bar)?
        }
    };
    if let Some(p) = &a.save_classifier {
        classifier.save(p)?;
        eprintln!("saved the classifier ({} labels) to {}", classifier.labels().len(), p.display());
    }

    // One batch at a time, decoded and preprocessed in parallel; a file that fails is reported
    // and counted, and the rest of its batch goes on.
    let mut results = Vec::new();
    let mut failed = 0;
    bar.start("classify", a.image.len());
    for chunk in a.image.chunks(a.model.batch_size.max(1)) {
        let mut ok = Vec::new();
        let mut imgs = Vec::new();
        for (p, r) in chunk.iter().zip(m.preprocessor.preprocess_files(chunk)) {
            match r {
                Ok(img) => {
                    ok.push(p.clone());
                    imgs.push(img);
                }
                Err(e) => {
                    failed += 1;
                    bar.warn(&e.to_string());
                    results.push(serde_json::json!({"image": p, "error": e.to_string()}));
                }
            }
        }
        if !imgs.is_empty() {
            let batch = m.preprocessor.stack(imgs, &m.device)?;
            for (p, preds) in ok.iter().zip(classifier.classify(&m.model, batch, a.top_k)?) {
                results.push(serde_json::json!({"image": p, "predictions": preds}));
            }
        }
        bar.advance(chunk.len());
    }
    bar.finish();
    // Keep the order of the command line.
    let pos = |v: &serde_json::Value| a.image.iter().position(|p| serde_json::json!(p) == v["image"]);
    results.sort_by_key(|v| pos(v));

    if a.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        for r in &results {
            println!("{}", r["image"].as_str().unwrap_or("?"));
            match r.get("predictions").and_then(|p| p.as_array()) {
                Some(preds) => {
                    for p in preds {
                        println!(
                            "  {:>7.3}%  {}",
                            p["probability"].as_f64().unwrap_or(0.0) * 100.0,
                            p["label"].as_str().unwrap_or("?")
                        );
                    }
                }
                None => println!("  error: {}", r["error"].as_str().unwrap_or("?")),
            }
        }
    }
    if failed > 0 {
        eprintln!("{failed} of {} images could not be read", a.image.len());
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
