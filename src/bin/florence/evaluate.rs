//! `florence eval`: zero-shot, linear-probe and few-shot accuracy on labelled image folders.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use florence::eval::{ProbeConfig, few_shot, linear_probe, zero_shot_folder};
use florence::zeroshot::Templates;

use crate::common::{Bar, ModelArgs, load};

#[derive(clap::Subcommand, Debug)]
pub enum EvalCommand {
    /// Zero-shot top-1/top-5 on a folder of class sub-folders (folder names are the labels).
    ZeroShot {
        #[command(flatten)]
        model: ModelArgs,
        /// ROOT/CLASS/IMAGE folder.
        #[arg(long)]
        folder: PathBuf,
        /// Prompt templates: imagenet, simple, none, or a file.
        #[arg(long, default_value = "simple")]
        templates: String,
        /// Candidate labels, one per line (default: the folder's class names). Must include
        /// every class of the folder; extra labels are distractors.
        #[arg(long)]
        labels_file: Option<PathBuf>,
        /// JSON on stdout (with per-class accuracy).
        #[arg(long)]
        json: bool,
    },
    /// Logistic regression on frozen image features: fit on --train, score --test.
    LinearProbe {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        probe: ProbeArgs,
    },
    /// Linear probes fitted on k images per class, averaged over several draws.
    FewShot {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        probe: ProbeArgs,
        /// Training images per class.
        #[arg(long, short = 'k', default_value_t = 5)]
        k: usize,
        /// Number of random draws.
        #[arg(long, default_value_t = 5)]
        trials: usize,
        /// Seed of the first draw.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

#[derive(clap::Args, Debug)]
pub struct ProbeArgs {
    /// Training folder (ROOT/CLASS/IMAGE).
    #[arg(long)]
    train: PathBuf,
    /// Test folder; its classes must exist in the training folder.
    #[arg(long)]
    test: PathBuf,
    /// Inverse L2 strength, as scikit-learn's C.
    #[arg(long, default_value_t = 1.0)]
    c: f64,
    /// L-BFGS iterations at most.
    #[arg(long, default_value_t = 1000)]
    max_iter: usize,
    /// JSON on stdout.
    #[arg(long)]
    json: bool,
}

impl ProbeArgs {
    fn config(&self) -> ProbeConfig {
        ProbeConfig { c: self.c, max_iter: self.max_iter, ..ProbeConfig::default() }
    }
}

pub fn run(cmd: EvalCommand) -> Result<ExitCode> {
    match cmd {
        EvalCommand::ZeroShot { model, folder, templates, labels_file, json } => {
            let l = load(&model)?;
            let mut bar = Bar::new(model.quiet);
            let candidates = match &labels_file {
                Some(f) => Some(
                    std::fs::read_to_string(f)
                        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", f.display()))?
                        .lines()
                        .map(|l| l.trim().to_string())
                        .filter(|l| !l.is_empty())
                        .collect::<Vec<_>>(),
                ),
                None => None,
            };
            let templates = Templates::parse(&templates)?;
            let r = zero_shot_folder(
                &l.model,
                &l.tokenizer,
                &l.preprocessor,
                &folder,
                &templates,
                candidates.as_deref(),
                model.batch_size,
                &mut bar,
            )?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "zero-shot on {}: top-1 {:.4}, top-5 {:.4} ({} images, {} classes)",
                    folder.display(),
                    r.top1,
                    r.top5,
                    r.n,
                    r.classes
                );
                for c in &r.per_class {
                    println!("  {:<24} {:.4}  ({} images)", c.class, c.top1, c.n);
                }
            }
            for s in &r.skipped {
                eprintln!("skipped {}: {}", s.path.display(), s.reason);
            }
        }
        EvalCommand::LinearProbe { model, probe } => {
            let l = load(&model)?;
            let mut bar = Bar::new(model.quiet);
            let r = linear_probe(
                &l.model,
                &l.preprocessor,
                &probe.train,
                &probe.test,
                &probe.config(),
                model.batch_size,
                &mut bar,
            )?;
            if probe.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "linear probe: top-1 {:.4}, top-5 {:.4} ({} train, {} test images, {} classes, {} iterations{})",
                    r.top1,
                    r.top5,
                    r.train_n,
                    r.test_n,
                    r.classes,
                    r.iterations,
                    if r.converged { "" } else { ", not converged" }
                );
            }
        }
        EvalCommand::FewShot { model, probe, k, trials, seed } => {
            let l = load(&model)?;
            let mut bar = Bar::new(model.quiet);
            let r = few_shot(
                &l.model,
                &l.preprocessor,
                &probe.train,
                &probe.test,
                k,
                trials,
                seed,
                &probe.config(),
                model.batch_size,
                &mut bar,
            )?;
            if probe.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!("{k}-shot: top-1 {:.4} ± {:.4} over {trials} draws", r.mean_top1, r.std_top1);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
