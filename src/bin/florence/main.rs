//! `florence`: zero-shot classification, embeddings, retrieval and checkpoint tools on the
//! command line. A thin layer over the library; build with `--features cli`.

mod classify;
mod common;
mod convert;
mod embed;
mod evaluate;
mod retrieval;
mod train;
mod weights;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "florence", version, about = "Florence / UniCL vision-language model on Burn", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Zero-shot classification of images against labels written into prompt templates.
    Classify(classify::Args),
    /// Normalised image and text embeddings as JSON.
    Embed(embed::Args),
    /// Embed a folder of images into an index file for `search`.
    Index(retrieval::IndexArgs),
    /// Search an index with a text, or rank texts for an image.
    Search(retrieval::SearchArgs),
    /// Convert a checkpoint between .pth/.safetensors (UniCL layout) and Burn's .bpk.
    Convert(convert::ConvertArgs),
    /// What a checkpoint holds: format, architecture, parameters, dtypes.
    Info(convert::InfoArgs),
    /// Train or fine-tune with UniCL from a TOML/JSON config.
    Train(train::TrainArgs),
    /// Evaluate: zero-shot, linear probe or few-shot accuracy on labelled folders.
    #[command(subcommand)]
    Eval(evaluate::EvalCommand),
    /// Write the synthetic shapes dataset (images with captions, or class folders).
    Synth(train::SynthArgs),
    /// The registry of known public checkpoints, which `--weights NAME` resolves.
    Weights(weights::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Classify(a) => classify::run(a),
        Command::Embed(a) => embed::run(a),
        Command::Index(a) => retrieval::index(a),
        Command::Search(a) => retrieval::search(a),
        Command::Convert(a) => convert::convert(a),
        Command::Info(a) => convert::info(a),
        Command::Train(a) => train::train(a),
        Command::Eval(c) => evaluate::run(c),
        Command::Synth(a) => train::synth(a),
        Command::Weights(a) => weights::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
