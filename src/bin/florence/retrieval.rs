//! `florence index` and `florence search`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use florence::preprocess::decode_image_file;
use florence::retrieval::{ImageIndex, list_images, rank_texts};
use florence::zeroshot::parse_label_list;

use crate::common::{Bar, ModelArgs, load};

#[derive(clap::Args, Debug)]
pub struct IndexArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Folder of images (searched recursively for jpg, png, webp, gif, bmp, tiff).
    #[arg(long)]
    pub folder: PathBuf,
    /// Where to write the index (.safetensors).
    #[arg(long, short = 'o')]
    pub output: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct SearchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// An index written by `florence index` (for --text).
    #[arg(long, requires = "text")]
    pub index: Option<PathBuf>,
    /// Find the images of the index that best match this text.
    #[arg(long, conflicts_with = "image")]
    pub text: Option<String>,
    /// Rank texts (--texts or --texts-file) for this image.
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// Comma-separated texts to rank for --image.
    #[arg(long)]
    pub texts: Option<String>,
    /// A file with one text per line to rank for --image.
    #[arg(long)]
    pub texts_file: Option<PathBuf>,
    /// Results to show.
    #[arg(long, short = 'k', default_value_t = 5)]
    pub top_k: usize,
    /// JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn index(a: IndexArgs) -> Result<ExitCode> {
    let paths = list_images(&a.folder)?;
    if paths.is_empty() {
        bail!("no images (jpg, png, webp, gif, bmp, tiff) under {}", a.folder.display());
    }
    let m = load(&a.model)?;
    let mut bar = Bar::new(a.model.quiet);
    let (index, skipped) =
        ImageIndex::build(&m.model, &m.preprocessor, &m.decode, &paths, a.model.batch_size, &mut bar)?;
    if index.is_empty() {
        bail!("none of the {} files under {} could be read", paths.len(), a.folder.display());
    }
    index.save(&a.output)?;
    eprintln!("indexed {} images into {} ({} skipped)", index.len(), a.output.display(), skipped.len());
    Ok(ExitCode::SUCCESS)
}

pub fn search(a: SearchArgs) -> Result<ExitCode> {
    if let Some(text) = &a.text {
        let Some(index_path) = &a.index else { bail!("--text searches an index: give --index FILE") };
        let index = ImageIndex::load(index_path)?;
        let m = load(&a.model)?;
        let hits = index.search_text(&m.model, &m.tokenizer, text, a.top_k)?;
        if a.json {
            let v: Vec<_> =
                hits.iter().map(|h| serde_json::json!({"path": index.paths()[h.index], "score": h.score})).collect();
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            for h in &hits {
                println!("{:>8.4}  {}", h.score, index.paths()[h.index].display());
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some(image) = &a.image else { bail!("give --text (with --index) or --image (with --texts or --texts-file)") };
    let texts: Vec<String> = match (&a.texts, &a.texts_file) {
        (Some(t), _) => parse_label_list(t),
        (None, Some(f)) => std::fs::read_to_string(f)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", f.display()))?
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect(),
        (None, None) => bail!("--image ranks texts: give --texts \"a,b\" or --texts-file FILE"),
    };
    let m = load(&a.model)?;
    let img = decode_image_file(image, &m.decode)?;
    let batch = m.preprocessor.batch(&[img], &m.device)?;
    let hits = rank_texts(&m.model, &m.tokenizer, batch, &texts, a.top_k)?.remove(0);
    if a.json {
        let v: Vec<_> = hits.iter().map(|h| serde_json::json!({"text": texts[h.index], "score": h.score})).collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for h in &hits {
            println!("{:>8.4}  {}", h.score, texts[h.index]);
        }
    }
    Ok(ExitCode::SUCCESS)
}
