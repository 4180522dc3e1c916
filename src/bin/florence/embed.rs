//! `florence embed`: normalised embeddings as JSON, in argument order.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use florence::ops::to_vec_f32 as host;

use crate::common::{ModelArgs, load};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Images to embed.
    #[arg(long, short = 'i')]
    pub image: Vec<PathBuf>,
    /// Texts to embed (each is tokenized on its own; over-long texts are truncated as CLIP does).
    #[arg(long, short = 't')]
    pub text: Vec<String>,
    /// Write the JSON here instead of stdout.
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
}

fn rows(v: Vec<f32>, n: usize) -> Vec<Vec<f32>> {
    if n == 0 {
        return Vec::new();
    }
    let d = v.len() / n;
    v.chunks_exact(d).map(<[f32]>::to_vec).collect()
}

pub fn run(a: Args) -> Result<ExitCode> {
    if a.image.is_empty() && a.text.is_empty() {
        bail!("nothing to embed: give --image and/or --text");
    }
    let m = load(&a.model)?;
    let mut image_embeddings = Vec::new();
    for chunk in a.image.chunks(a.model.batch_size.max(1)) {
        // Decoded and preprocessed in parallel, one batch at a time (never the whole list).
        let e = m.model.encode_image(m.preprocessor.load_batch(chunk, &m.device)?)?;
        image_embeddings.extend(rows(host(e)?, chunk.len()));
    }
    let mut text_embeddings = Vec::new();
    for chunk in a.text.chunks(a.model.batch_size.max(1)) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let e = m.model.encode_text(m.tokenizer.tokenize(&refs, &m.device)?)?;
        text_embeddings.extend(rows(host(e)?, refs.len()));
    }
    let logit_scale = host(m.model.logit_scale.val())?[0];
    let out = serde_json::json!({
        "image_embeddings": image_embeddings,
        "text_embeddings": text_embeddings,
        "logit_scale": logit_scale,
        "scale": logit_scale.exp(),
    });
    let text = serde_json::to_string(&out)?;
    match &a.output {
        Some(p) => {
            std::fs::write(p, text + "\n").map_err(|e| anyhow::anyhow!("cannot write {}: {e}", p.display()))?;
            eprintln!("wrote {} image and {} text embeddings to {}", a.image.len(), a.text.len(), p.display());
        }
        None => println!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}
