//! What a checkpoint holds, read from its tensor names and shapes alone: the architecture (where
//! the shapes determine it), the parameter count and the dtypes. Used by `florence info` and by
//! the CLI when `--config` is absent.
//!
//! Shapes determine everything but two text-tower settings: the head count (the packed
//! `in_proj_weight` is `[3W, W]` for any number of heads) and whether attention is causal (the
//! mask is not saved). The image size is read from the saved shift masks (`attn_mask`,
//! `[windows, N, N]` at stage 0); a file without them does not say it. So an inferred config is
//! accepted only when it equals a preset in every field the shapes fix; otherwise
//! [`infer_config`] says what it found and asks for `--config`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::format::{self, Format};
use super::keys::{self, Convention};
use crate::config::{EmbeddingKind, FlorenceConfig, PRESETS};
use crate::error::{FlorenceError, Result};

/// A summary of a checkpoint file.
#[derive(Debug, Clone)]
pub struct CheckpointInfo {
    /// File format.
    pub format: Format,
    /// Naming convention (None for Burn's own naming).
    pub convention: Option<Convention>,
    /// Tensors in the file (after unwrapping `{'model': ...}`).
    pub tensors: usize,
    /// Parameters: elements of every floating-point tensor except the recomputed buffers.
    pub parameters: usize,
    /// Tensor count per dtype (`F16`, `F32`, `I64`, ...).
    pub dtypes: BTreeMap<String, usize>,
    /// The architecture read from the shapes: every field the shapes fix.
    pub shapes: ShapeFacts,
}

/// Architecture facts that tensor shapes fix. `None` where the file does not say.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShapeFacts {
    /// `patch` or `conv`.
    pub embedding: Option<EmbeddingKind>,
    /// Patch size (stem kernel for `patch`).
    pub patch_size: Option<usize>,
    /// C.
    pub embed_dim: Option<usize>,
    /// Blocks per stage.
    pub depths: Vec<usize>,
    /// Heads per stage (from the relative-position tables).
    pub num_heads: Vec<usize>,
    /// Window side at stage 0.
    pub window_size: Option<usize>,
    /// MLP hidden width / C at stage 0, as a percentage (400 = ratio 4).
    pub mlp_ratio_pct: Option<usize>,
    /// Image size, from stage 0's shift mask.
    pub image_size: Option<usize>,
    /// Text vocabulary.
    pub vocab_size: Option<usize>,
    /// Text context length.
    pub context_length: Option<usize>,
    /// Text width.
    pub width: Option<usize>,
    /// Text layers.
    pub layers: Option<usize>,
    /// Projection width.
    pub projection_dim: Option<usize>,
}

impl ShapeFacts {
    /// Whether `c` agrees with every fact the file gives.
    pub fn matches(&self, c: &FlorenceConfig) -> bool {
        let i = &c.image;
        let t = &c.text;
        let eq = |fact: Option<usize>, v: usize| fact.is_none_or(|f| f == v);
        self.embedding.is_none_or(|e| e == i.embedding)
            && (i.embedding == EmbeddingKind::Conv || eq(self.patch_size, i.patch_size))
            && eq(self.embed_dim, i.embed_dim)
            && self.depths == i.depths
            && self.num_heads == i.num_heads
            && eq(self.window_size, stage0_window(c))
            && eq(self.mlp_ratio_pct, (i.mlp_ratio * 100.0).round() as usize)
            && eq(self.image_size, i.image_size)
            && eq(self.vocab_size, t.vocab_size)
            && eq(self.context_length, t.context_length)
            && eq(self.width, t.width)
            && eq(self.layers, t.layers)
            && eq(self.projection_dim, c.projection_dim)
    }
}

/// The window at stage 0 after timm's clamp (the stem has stride 4 for both embeddings).
fn stage0_window(c: &FlorenceConfig) -> usize {
    let r = c.image.image_size / 4;
    crate::image::geometry::clamp_window((r, r), c.image.window_size).0.0
}

/// Reads a checkpoint's index (not its data) and summarises it.
pub fn inspect(path: impl AsRef<Path>) -> Result<CheckpointInfo> {
    let path = path.as_ref();
    let format = format::detect(path)?;
    let raw = format::read_tensors(path, format)?;
    let burn_names = format == Format::Burnpack || raw.keys().any(|k| k.ends_with(".gamma"));
    let unwrapped = keys::strip_wrappers(raw);
    let convention = (!burn_names).then(|| keys::detect(unwrapped.keys()));
    let mut shapes: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut dtypes = BTreeMap::new();
    let mut parameters = 0;
    for (k, t) in &unwrapped {
        let name = match convention {
            Some(conv) => keys::canonical(k, conv),
            None => burn_to_unicl(k),
        };
        *dtypes.entry(format!("{:?}", t.dtype)).or_insert(0) += 1;
        if t.dtype.is_float() && !keys::is_known_buffer(&name) {
            parameters += t.shape.iter().product::<usize>();
        }
        shapes.insert(name, t.shape.to_vec());
    }
    if !shapes.keys().any(|n| n.starts_with("image_encoder.") || n.starts_with("text_encoder.")) {
        let sample = shapes.keys().take(5).cloned().collect::<Vec<_>>().join(", ");
        return Err(crate::error::CheckpointError::NotAFlorenceModel {
            path: path.into(),
            count: shapes.len(),
            sample,
        }
        .into());
    }
    Ok(CheckpointInfo { format, convention, tensors: shapes.len(), parameters, dtypes, shapes: facts(&shapes) })
}

/// Burn's names (`.gamma`/`.beta`, enum variants in paths) mapped to UniCL's for shape lookup.
fn burn_to_unicl(k: &str) -> String {
    let k = k.replace(".downsample.Merge.", ".downsample.").replace(".downsample.Conv.", ".downsample.");
    if let Some(s) = k.strip_suffix(".gamma") {
        format!("{s}.weight")
    } else if let Some(s) = k.strip_suffix(".beta") {
        format!("{s}.bias")
    } else {
        k
    }
}

fn facts(s: &BTreeMap<String, Vec<usize>>) -> ShapeFacts {
    let get = |k: &str| s.get(k);
    let mut f = ShapeFacts::default();
    if let Some(w) = get("image_encoder.patch_embed.proj.weight").filter(|w| w.len() == 4) {
        f.embed_dim = Some(w[0]);
        f.patch_size = Some(w[2]);
    }
    let stage_blocks = |i: usize| -> usize {
        let prefix = format!("image_encoder.layers.{i}.blocks.");
        s.keys()
            .filter_map(|k| k.strip_prefix(&prefix)?.split('.').next()?.parse::<usize>().ok())
            .collect::<BTreeSet<_>>()
            .len()
    };
    let mut i = 0;
    while stage_blocks(i) > 0 {
        f.depths.push(stage_blocks(i));
        // The table is [(2w-1)^2, heads].
        if let Some(t) = get(&format!("image_encoder.layers.{i}.blocks.0.attn.relative_position_bias_table"))
            && t.len() == 2
        {
            f.num_heads.push(t[1]);
            if i == 0 {
                f.window_size = Some(((t[0] as f64).sqrt().round() as usize).div_ceil(2));
            }
        }
        i += 1;
    }
    let has = |suffix: &str| s.keys().any(|k| k.starts_with("image_encoder.layers.") && k.contains(suffix));
    f.embedding = if has(".downsample.reduction.") {
        Some(EmbeddingKind::Patch)
    } else if has(".downsample.proj.") {
        Some(EmbeddingKind::Conv)
    } else {
        None
    };
    // Shapes come from the user's file: read them with `first()`, never by index.
    let dim0 = |k: &str| get(k).and_then(|v| v.first().copied());
    if let (Some(c), Some(h)) = (f.embed_dim, dim0("image_encoder.layers.0.blocks.0.mlp.fc1.bias")) {
        f.mlp_ratio_pct = Some(h * 100 / c.max(1));
    }
    // Stage 0's shift mask is [(side/w)^2, w*w, w*w]; the stage-0 side times the stem stride (4)
    // is the image size the weights were saved for.
    if let (Some(w), Some(m)) = (f.window_size, dim0("image_encoder.layers.0.blocks.1.attn_mask")) {
        let per_side = (m as f64).sqrt().round() as usize;
        f.image_size = Some(per_side * w * 4);
    }
    if let Some(e) = get("text_encoder.token_embedding.weight") {
        f.vocab_size = e.first().copied();
        f.width = e.get(1).copied();
    }
    f.context_length = dim0("text_encoder.positional_embedding");
    let layers = s
        .keys()
        .filter_map(|k| k.strip_prefix("text_encoder.resblocks.")?.split('.').next()?.parse::<usize>().ok())
        .collect::<BTreeSet<_>>()
        .len();
    f.layers = (layers > 0).then_some(layers);
    f.projection_dim = get("image_projection").and_then(|p| p.get(1).copied());
    f
}

/// The preset whose architecture the checkpoint's shapes match, e.g. `unicl-swin-b` for the
/// released Swin-B file. An error lists what the shapes say when no preset (or more than one
/// differing preset) matches, and asks for `--config`.
pub fn infer_config(path: impl AsRef<Path>) -> Result<(&'static str, FlorenceConfig)> {
    let info = inspect(path.as_ref())?;
    let mut found: Vec<(&'static str, FlorenceConfig)> = Vec::new();
    for name in PRESETS {
        let c = FlorenceConfig::preset(name)?;
        if info.shapes.matches(&c) {
            found.push((name, c));
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(FlorenceError::Config(format!(
            "{}: no preset matches this checkpoint's shapes ({:?}). The text head count and the causal mask cannot be read from shapes; write a config JSON (`florence info` prints the facts; start from a preset's `to_json`) and pass it with --config",
            path.as_ref().display(),
            info.shapes
        ))),
        _ => Err(FlorenceError::Config(format!(
            "{}: the shapes fit several presets ({}); pass --config to choose",
            path.as_ref().display(),
            found.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
        ))),
    }
}
