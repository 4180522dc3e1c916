//! `florence convert` and `florence info`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use burn::tensor::DType;
use florence::{Florence, FlorenceConfig};

use crate::common::{config, device, resolve};

#[derive(clap::Args, Debug)]
pub struct ConvertArgs {
    /// Input checkpoint (.pth, .safetensors, .bpk, hf://..., or a registry name).
    pub input: String,
    /// Output file: .safetensors or .pth (UniCL layout, loads into UniCL's PyTorch model; .pth as
    /// `torch.save({"model": state_dict})` writes it), or .bpk (Burn).
    pub output: PathBuf,
    /// Preset or config JSON (default: inferred from the input's shapes).
    #[arg(long, short = 'c')]
    pub config: Option<String>,
    /// Float type for .safetensors and .pth output: f32, f16 or bf16.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
}

#[derive(clap::Args, Debug)]
pub struct InfoArgs {
    /// Checkpoint (.pth, .safetensors, .bpk, hf://..., or a registry name).
    pub weights: String,
    /// JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn convert(a: ConvertArgs) -> Result<ExitCode> {
    let dtype = match a.dtype.as_str() {
        "f32" => DType::F32,
        "f16" => DType::F16,
        "bf16" => DType::BF16,
        other => bail!("--dtype {other}: use f32, f16 or bf16"),
    };
    let input = resolve(&a.input, false)?;
    let cfg = config(a.config.as_deref(), &input)?;
    let dev = device(None)?;
    let model = Florence::load(&cfg, &input.path, &dev)?;
    let ext = a.output.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "safetensors" => model.save_safetensors(&a.output, dtype)?,
        "pth" | "pt" => model.save_pth(&a.output, dtype)?,
        "bpk" | "burnpack" => model.save_burnpack(&a.output)?,
        _ => bail!("unknown output type `{}`: use .safetensors, .pth or .bpk", a.output.display()),
    }
    eprintln!("wrote {}", a.output.display());
    Ok(ExitCode::SUCCESS)
}

pub fn info(a: InfoArgs) -> Result<ExitCode> {
    let weights = resolve(&a.weights, false)?;
    let path = weights.path;
    let info = florence::checkpoint::inspect(&path)?;
    let inferred = florence::checkpoint::infer_config(&path);
    let s = &info.shapes;
    if a.json {
        let v = serde_json::json!({
            "file": path,
            "format": info.format.name(),
            "convention": info.convention.map(|c| format!("{c:?}")),
            "tensors": info.tensors,
            "parameters": info.parameters,
            "dtypes": info.dtypes,
            "preset": inferred.as_ref().ok().map(|(n, _)| *n),
            "config": inferred.as_ref().ok().map(|(_, c)| serde_json::to_value(c).unwrap_or_default()),
            "inference_error": inferred.as_ref().err().map(|e| e.to_string()),
            "registry": weights.entry.map(|e| e.name),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("file:        {}", path.display());
    if let Some(e) = weights.entry {
        println!("registry:    {} (preset {}, {})", e.name, e.preset, e.licence);
    }
    println!("format:      {}", info.format.name());
    if let Some(c) = info.convention {
        println!("naming:      {c:?}");
    }
    println!("tensors:     {}", info.tensors);
    println!("parameters:  {} ({:.2}M)", info.parameters, info.parameters as f64 / 1e6);
    println!("dtypes:      {}", info.dtypes.iter().map(|(k, v)| format!("{k} x{v}")).collect::<Vec<_>>().join(", "));
    println!(
        "image tower: {} embedding, C={}, depths {:?}, heads {:?}, window {}, image size {}",
        match s.embedding {
            Some(florence::EmbeddingKind::Patch) => "patch (Swin)",
            Some(florence::EmbeddingKind::Conv) => "conv (CoSwin)",
            None => "unknown",
        },
        s.embed_dim.map_or("?".into(), |v| v.to_string()),
        s.depths,
        s.num_heads,
        s.window_size.map_or("?".into(), |v| v.to_string()),
        s.image_size.map_or("? (no shift masks in the file)".into(), |v| v.to_string()),
    );
    println!(
        "text tower:  vocab {}, context {}, width {}, layers {} (heads: not stored in shapes)",
        s.vocab_size.map_or("?".into(), |v| v.to_string()),
        s.context_length.map_or("?".into(), |v| v.to_string()),
        s.width.map_or("?".into(), |v| v.to_string()),
        s.layers.map_or("?".into(), |v| v.to_string()),
    );
    println!("projection:  {}", s.projection_dim.map_or("?".into(), |v| v.to_string()));
    match inferred {
        Ok((name, c)) => println!("preset:      {name} ({} parameters by config)", FlorenceConfig::num_params(&c)),
        Err(e) => println!("preset:      none ({e})"),
    }
    Ok(ExitCode::SUCCESS)
}
