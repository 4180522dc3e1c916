//! What every command shares: loading weights (local, hub or a registry name), choosing the
//! config and the device, the tokenizer and the preprocessor, and the progress bar.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use florence::preprocess::{DecodeOptions, Preprocessor};
use florence::pretrained::Resolved;
use florence::progress::Progress;
use florence::text::tokenizer::Tokenizer;
use florence::{Florence, FlorenceConfig};
use indicatif::{ProgressBar, ProgressStyle};

/// Options that pick the model.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// Checkpoint: a local .pth/.safetensors/.bpk file, hf://[spaces/]OWNER/REPO[@REV]/FILE, or a
    /// registry name (`florence weights` lists them; downloaded once, then checked against its SHA-256).
    #[arg(long, short = 'w')]
    pub weights: String,
    /// Preset name or config JSON file. Default: the registry entry's preset, else inferred from
    /// the checkpoint's shapes.
    #[arg(long, short = 'c')]
    pub config: Option<String>,
    /// Device: flex, wgpu, vulkan, metal, cuda, tch, optionally with which one (cuda:1, wgpu:cpu,
    /// wgpu:integrated:0). Default: $FLORENCE_DEVICE, else the first backend compiled in.
    #[arg(long)]
    pub device: Option<String>,
    /// A tokenizer.json to use instead of the bundled CLIP BPE tokenizer.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Apply EXIF orientation when decoding (the reference does not).
    #[arg(long)]
    pub exif: bool,
    /// Images or texts per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// No progress bars.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// A loaded model with everything needed to feed it.
pub struct Loaded {
    pub model: Florence,
    pub device: Device,
    pub tokenizer: Tokenizer,
    pub preprocessor: Preprocessor,
    pub decode: DecodeOptions,
}

pub fn device(name: Option<&str>) -> Result<Device> {
    let name = match name {
        Some(n) => n.to_string(),
        None => florence::device::default_name()?,
    };
    let device = florence::device::device_by_name(&name)?;
    eprintln!("device: {name} ({device:?})");
    Ok(device)
}

/// The config from `--config`, else the registry entry's preset, else the preset the checkpoint's
/// shapes match. With a registry entry the images are prepared as the entry says, unless a config
/// file has its own `preprocess` section.
pub fn config(spec: Option<&str>, weights: &Resolved) -> Result<FlorenceConfig> {
    match (spec, weights.entry) {
        (Some(s), entry) => {
            let mut c = FlorenceConfig::from_preset_or_file(s)?;
            if let Some(e) = entry
                && c.preprocess.is_none()
            {
                c.preprocess = Some(e.preprocess.clone());
                let what = || format!("--config {s} with the preprocessing of the weights `{}`", e.name);
                c.validate().with_context(what)?;
            }
            Ok(c)
        }
        (None, Some(e)) => {
            eprintln!("config: {} (the weights registry's preset for {})", e.preset, e.name);
            Ok(e.config()?)
        }
        (None, None) => {
            let (name, c) = florence::checkpoint::infer_config(&weights.path)
                .context("cannot tell the architecture from the checkpoint; pass --config PRESET|FILE")?;
            eprintln!("config: {name} (inferred from the checkpoint's tensor shapes)");
            Ok(c)
        }
    }
}

/// `--weights`: a file, an hf:// reference or a registry name, as a local file.
pub fn resolve(weights: &str, quiet: bool) -> Result<Resolved> {
    let mut bar = Bar::new(quiet);
    let r = match florence::pretrained::resolve_reference(weights, &mut bar) {
        Ok(r) => r,
        Err(e @ florence::FlorenceError::UnknownWeights { .. }) => {
            return Err(anyhow::Error::new(e).context(format!(
                "`{weights}` is not a file, an hf:// reference or a registry name (`florence weights` lists them)"
            )));
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(e) = r.entry {
        let checked = if e.sha256.is_some() { "SHA-256 checked" } else { "no SHA-256 known to check" };
        eprintln!("weights: {} ({}, {checked})", e.name, r.path.display());
    }
    Ok(r)
}

pub fn load(a: &ModelArgs) -> Result<Loaded> {
    let weights = resolve(&a.weights, a.quiet)?;
    let config = config(a.config.as_deref(), &weights)?;
    let path = weights.path;
    let device = device(a.device.as_deref())?;
    let model = Florence::load(&config, &path, &device).with_context(|| format!("loading {}", path.display()))?;
    let tokenizer = match &a.tokenizer {
        Some(p) => Tokenizer::from_file(p)?,
        None => {
            if config.text.vocab_size != 49_408 {
                bail!(
                    "this model's text vocabulary has {} tokens but the bundled CLIP tokenizer has 49408; pass --tokenizer FILE",
                    config.text.vocab_size
                );
            }
            Tokenizer::clip()?
        }
    }
    .with_context_length(config.text.context_length);
    let decode = DecodeOptions { apply_exif_orientation: a.exif, ..DecodeOptions::default() };
    let preprocessor = Preprocessor::new(config.preprocess())?.with_decode_options(decode.clone());
    Ok(Loaded { model, device, tokenizer, preprocessor, decode })
}

/// An indicatif bar on stderr behind florence's [`Progress`]; hidden with `--quiet` or when
/// stderr is not a terminal (indicatif's default). Warnings are always printed.
pub struct Bar {
    bar: Option<ProgressBar>,
    quiet: bool,
}

impl Bar {
    pub fn new(quiet: bool) -> Self {
        Self { bar: None, quiet }
    }
}

impl Progress for Bar {
    fn start(&mut self, task: &str, total: usize) {
        if self.quiet {
            return;
        }
        let bar = ProgressBar::new(total as u64);
        let style = if task.starts_with("download") || task.starts_with("verify") {
            "{prefix} {bar:40} {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})"
        } else if task == "train" {
            // The trainer's message carries loss, learning rate and images/s.
            "{prefix} {bar:30} {pos}/{len} steps, {msg} (eta {eta})"
        } else {
            "{prefix} {bar:40} {pos}/{len} ({per_sec}, eta {eta})"
        };
        if let Ok(s) = ProgressStyle::with_template(style) {
            bar.set_style(s);
        }
        bar.set_prefix(task.to_string());
        self.bar = Some(bar);
    }
    fn advance(&mut self, n: usize) {
        if let Some(b) = &self.bar {
            b.inc(n as u64);
        }
    }
    fn warn(&mut self, message: &str) {
        match &self.bar {
            Some(b) => b.suspend(|| eprintln!("warning: {message}")),
            None => eprintln!("warning: {message}"),
        }
    }
    fn message(&mut self, message: &str) {
        if let Some(b) = &self.bar {
            b.set_message(message.to_string());
        }
    }
    fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}
