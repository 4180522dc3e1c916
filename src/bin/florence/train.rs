//! `florence train` and `florence synth`: UniCL training from a config file, and the synthetic
//! shapes dataset the bundled model is trained on.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use florence::data::synthetic::{Layout, Split, SyntheticConfig, write_dataset};
use florence::train::{TrainConfig, Trainer};
use indicatif::ProgressBar;

use crate::common::Bar;

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// Training config, TOML or JSON (see README, "Training").
    #[arg(long, short = 'c')]
    pub config: PathBuf,
    /// Continue the run in the config's output folder from its newest checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Stop after this optimiser step (the run can be resumed later).
    #[arg(long)]
    pub stop_at: Option<usize>,
    /// No progress bar.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

pub fn train(a: TrainArgs) -> Result<ExitCode> {
    let cfg = TrainConfig::load(&a.config)?;
    let base = a.config.parent().map(Path::to_path_buf).unwrap_or_default();
    let base = if base.as_os_str().is_empty() { PathBuf::from(".") } else { base };
    let mut trainer = if a.resume { Trainer::resume(cfg, &base)? } else { Trainer::new(cfg, &base)? };
    eprintln!("training {} from step {} into {}", a.config.display(), trainer.step(), trainer.output().display());
    let mut bar = Bar::new(a.quiet);
    let s = trainer.run(a.stop_at, &mut bar)?;
    println!(
        "step {}: loss {}, {:.1} images/s, {} files skipped",
        s.step,
        s.last_loss.map_or("-".into(), |l| format!("{l:.4}")),
        s.images_per_s,
        s.skipped
    );
    if let Some(e) = &s.eval {
        println!(
            "zero-shot on the eval folder: top-1 {:.4}, top-5 {:.4} ({} images, {} classes)",
            e.top1, e.top5, e.n, e.classes
        );
    }
    if let Some(c) = &s.checkpoint {
        println!("checkpoint: {}", c.display());
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum SplitArg {
    /// Every colour-shape pair except the held-out ones.
    Train,
    /// Only the held-out colour-shape pairs.
    HeldOut,
    /// Every pair.
    All,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum LayoutArg {
    /// images/ + captions.jsonl + captions.csv (image-text training data).
    Captions,
    /// One folder per class, "red circle/000001.png" (image-label data, evaluation).
    Folders,
}

#[derive(clap::Args, Debug)]
pub struct SynthArgs {
    /// Output folder.
    #[arg(long, short = 'o')]
    pub out: PathBuf,
    /// Number of images.
    #[arg(long, short = 'n')]
    pub count: usize,
    /// Which colour-shape pairs to draw.
    #[arg(long, value_enum, default_value = "train")]
    pub split: SplitArg,
    /// File layout.
    #[arg(long, value_enum, default_value = "captions")]
    pub layout: LayoutArg,
    /// Seed (a different seed gives a disjoint-looking set of images).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Image side in pixels.
    #[arg(long, default_value_t = 64)]
    pub size: u32,
    /// No progress bar.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

pub fn synth(a: SynthArgs) -> Result<ExitCode> {
    let cfg = SyntheticConfig { size: a.size, seed: a.seed, ..SyntheticConfig::default() };
    cfg.validate().map_err(|e| anyhow::anyhow!("synthetic config: {e}"))?;
    let split = match a.split {
        SplitArg::Train => Split::Train,
        SplitArg::HeldOut => Split::HeldOut,
        SplitArg::All => Split::All,
    };
    let layout = match a.layout {
        LayoutArg::Captions => Layout::Captions,
        LayoutArg::Folders => Layout::ClassFolders,
    };
    let bar = (!a.quiet).then(|| ProgressBar::new(a.count as u64));
    let n = write_dataset(&cfg, split, a.count, &a.out, layout, &mut |done, _| {
        if let Some(b) = &bar {
            b.set_position(done as u64);
        }
    })
    .with_context(|| format!("writing {}", a.out.display()))?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    println!("{n} images written to {}", a.out.display());
    Ok(ExitCode::SUCCESS)
}
