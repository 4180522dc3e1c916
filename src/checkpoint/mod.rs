//! One strict loader for every checkpoint florence accepts, and UniCL-layout saving.
//!
//! Accepted: UniCL `.pth` files as released (`{'model': state_dict}`, fp16 weights, int64
//! `relative_position_index`, `attn_mask` buffers, a 0-D `logit_scale`), the two other UniCL
//! naming conventions ([`keys`]), `.safetensors` in any of those namings, and Burn's burnpack.
//! The format is recognised from the file's bytes, not its extension. Half-precision (f16, bf16)
//! tensors are converted to the model's float type.
//!
//! Loading is strict: every parameter must be present with its exact shape and nothing else may
//! be in the file, except the known buffers that florence recomputes from the config
//! (`image_encoder.layers.*.blocks.*.attn.relative_position_index` and
//! `image_encoder.layers.*.blocks.*.attn_mask`). Those are not ignored: each is compared with the
//! recomputed value, and a difference means the config does not match the checkpoint.
//!
//! # Key mappings
//!
//! Module fields are named after the UniCL keys, so the map is nearly the identity. The only
//! differences between a UniCL key and the Burn parameter path:
//!
//! | UniCL checkpoint | Burn module | why |
//! |---|---|---|
//! | `*.in_proj_weight` `[3W, W]`, `*.in_proj_bias` | `*.in_proj.weight` `[W, 3W]`, `*.in_proj.bias` | `nn.MultiheadAttention` packs q/k/v as raw tensors; florence uses a `Linear` |
//! | `*.weight` `[out, in]` of every `nn.Linear` | `*.weight` `[in, out]` | Burn's `Linear` layout (transposed by `PyTorchToBurnAdapter`) |
//! | LayerNorm `*.weight`, `*.bias` | `*.gamma`, `*.beta` | Burn's `LayerNorm` names |
//! | `logit_scale` `[]` | `logit_scale` `[1]` | Burn has no rank-0 tensors |
//! | `layers.{i}.downsample.*` | `layers.{i}.downsample.*` (enum variant skipped) | `Downsample::{Merge, Conv}` |
//! | `*.attn.relative_position_index`, `*.attn_mask` | not parameters | recomputed, and checked |

pub mod convert;
pub mod format;
pub mod infer;
pub mod keys;
pub mod loader;
mod pickle_scan;
mod pth;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use burn::prelude::*;
use burn::store::burn_pack::Tensor as PackTensor;
use burn::store::{BurnToPyTorchAdapter, BurnpackStore, ModuleSnapshot, bridge};
use burn::tensor::DType;

pub use format::Format;
pub use infer::{CheckpointInfo, ShapeFacts, infer_config, inspect};
pub use keys::Convention;

use crate::config::FlorenceConfig;
use crate::error::{CheckpointError, FlorenceError, Result};
use crate::image::geometry::relative_position_index;
use crate::model::Florence;

/// What a successful load found.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// Container format.
    pub format: Format,
    /// Key convention (`None` for burnpack files, which use Burn's own names).
    pub convention: Option<Convention>,
    /// Parameters loaded.
    pub loaded: usize,
    /// Buffers compared with their recomputed values.
    pub buffers_checked: usize,
    /// How many tensors of each dtype the file held (e.g. `F16: 175`).
    pub dtypes: BTreeMap<String, usize>,
}

/// The two-tower model's checkpoint layout: UniCL's three key conventions ([`keys`]) mapped to
/// convention A, the packed `in_proj` rename, and the recomputed `relative_position_index` /
/// `attn_mask` buffers compared with the config's.
struct FlorenceLayout;

impl loader::Layout<Florence> for FlorenceLayout {
    fn rename(&self, tensors: BTreeMap<String, PackTensor>) -> (Vec<PackTensor>, Option<Convention>) {
        let unwrapped = keys::strip_wrappers(tensors);
        let conv = keys::detect(unwrapped.keys());
        let renamed = unwrapped
            .into_iter()
            .map(|(k, mut t)| {
                t.name = keys::canonical(&k, conv);
                t
            })
            .collect();
        (renamed, Some(conv))
    }

    fn recognises(&self, key: &str) -> bool {
        key.starts_with("image_encoder.") || key.starts_with("text_encoder.") || key == "logit_scale"
    }

    fn not_this_model(&self, path: &Path, count: usize, sample: String) -> CheckpointError {
        CheckpointError::NotAFlorenceModel { path: path.into(), count, sample }
    }

    fn check_buffer(&self, model: &Florence, t: &PackTensor) -> Option<Result<bool>> {
        keys::is_known_buffer(&t.name).then(|| model.check_buffer(t))
    }
}

impl Florence {
    /// Builds the model for `config` and loads `path` into it (see [`Florence::load_weights`]).
    pub fn load(config: &FlorenceConfig, path: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let mut model = config.init(device)?;
        model.load_weights(path)?;
        Ok(model)
    }

    /// Loads a checkpoint into this model, strictly (see [`loader::load_module`]): every key,
    /// shape, dtype and buffer is checked, and every tensor's data is read and checked for NaN
    /// and infinite values, before any tensor is applied, so a bad file leaves the model
    /// unchanged.
    pub fn load_weights(&mut self, path: impl AsRef<Path>) -> Result<LoadReport> {
        loader::load_module(self, path.as_ref(), &FlorenceLayout)
    }

    /// Compares a known buffer with the value the model recomputes. `Ok(false)` when the model
    /// has no such block (the key is then reported as unexpected).
    fn check_buffer(&self, t: &PackTensor) -> Result<bool> {
        let parts: Vec<&str> = t.name.split('.').collect();
        // image_encoder.layers.{i}.blocks.{j}.attn.relative_position_index | .attn_mask
        let (Some(i), Some(j)) =
            (parts.get(2).and_then(|s| s.parse::<usize>().ok()), parts.get(4).and_then(|s| s.parse::<usize>().ok()))
        else {
            return Ok(false);
        };
        let Some(stage) = self.image_encoder.layers.get(i) else { return Ok(false) };
        let Some(block) = stage.blocks.get(j) else { return Ok(false) };
        let mismatch = |reason: String| -> FlorenceError {
            CheckpointError::BufferMismatch { key: t.name.clone(), reason }.into()
        };
        let data = bridge::to_data(t).map_err(|e| mismatch(format!("unreadable: {e}")))?;
        if t.name.ends_with("relative_position_index") {
            let (wh, ww) = block.attn.window_2d();
            let want = relative_position_index([wh, ww]);
            let n = wh * ww;
            if t.shape.as_slice() != [n, n] {
                return Err(mismatch(format!(
                    "shape {:?}, but a {wh}x{ww} window needs [{n}, {n}] (window_size in the config?)",
                    t.shape.as_slice()
                )));
            }
            let got: Vec<i64> = data.iter::<i64>().collect();
            if got != want {
                return Err(mismatch("values differ from the Swin relative position index".into()));
            }
        } else {
            let (h, w) = stage.resolution;
            let Some(want) =
                stage.shift_mask(h, w, &self.logit_scale.device(), DType::F32).filter(|_| block.is_shifted())
            else {
                return Err(mismatch(format!(
                    "the checkpoint shifts the windows of this block, but with this config stage {i} is {h}x{w} and not shifted (image_size / window_size in the config?)"
                )));
            };
            if t.shape.as_slice() != want.dims() {
                return Err(mismatch(format!(
                    "shape {:?}, but at the config's image size stage {i} ({h}x{w}) has mask shape {:?} (image_size in the config?)",
                    t.shape.as_slice(),
                    want.dims()
                )));
            }
            let want: Vec<f32> = want.into_data().iter::<f32>().collect();
            if data.iter::<f32>().zip(want).any(|(a, b)| (a - b).abs() > 1e-3) {
                return Err(mismatch("values differ from the shifted-window mask".into()));
            }
        }
        Ok(true)
    }

    /// Every tensor of the UniCL layout (convention A), in the order both UniCL-layout writers
    /// store them: the parameters as PyTorch names and shapes (`[out, in]` Linear weights,
    /// `weight`/`bias` norm names, packed `in_proj_weight`, a 0-D `logit_scale`) in `dtype`,
    /// then the int64 `relative_position_index` and `dtype` `attn_mask` buffers of every block.
    /// Each entry is `(name, data, shape)`; `path` only labels errors.
    fn unicl_tensors(&self, path: &Path, dtype: DType) -> Result<Vec<(String, TensorData, Vec<usize>)>> {
        let write_err =
            |reason: String| -> FlorenceError { CheckpointError::Write { path: path.into(), reason }.into() };
        if !matches!(dtype, DType::F32 | DType::F16 | DType::BF16) {
            return Err(write_err(format!("unsupported dtype {dtype:?}: use F32, F16 or BF16")));
        }
        let mut entries: Vec<(String, TensorData, Vec<usize>)> = Vec::new();
        for t in self.collect(None, Some(Box::new(BurnToPyTorchAdapter)), true) {
            let name = keys::to_unicl(&t.name);
            let mut shape = t.shape.to_vec();
            if name == "logit_scale" {
                shape.clear();
            }
            let data = bridge::into_data(t).map_err(|e| write_err(e.to_string()))?.convert_dtype(dtype);
            entries.push((name, data, shape));
        }
        let device = self.logit_scale.device();
        for (i, stage) in self.image_encoder.layers.iter().enumerate() {
            let mask = stage.shift_mask(stage.resolution.0, stage.resolution.1, &device, DType::F32);
            for (j, block) in stage.blocks.iter().enumerate() {
                let (wh, ww) = block.attn.window_2d();
                let n = wh * ww;
                entries.push((
                    format!("image_encoder.layers.{i}.blocks.{j}.attn.relative_position_index"),
                    TensorData::new(relative_position_index([wh, ww]), [n, n]),
                    vec![n, n],
                ));
                if let (true, Some(m)) = (block.is_shifted(), &mask) {
                    let d = m.to_data().convert_dtype(dtype);
                    let shape = d.shape().to_vec();
                    entries.push((format!("image_encoder.layers.{i}.blocks.{j}.attn_mask"), d, shape));
                }
            }
        }
        Ok(entries)
    }

    /// Writes the model as `.safetensors` in the UniCL layout (convention A): PyTorch
    /// `[out, in]` Linear weights, `weight`/`bias` norm names, packed `in_proj_weight`, a 0-D
    /// `logit_scale`, and the `relative_position_index` / `attn_mask` buffers, so the file loads
    /// with `load_state_dict(strict=True)` into UniCL's model. `dtype` is the float type to store
    /// (`F32`, `F16` or `BF16`). The file is written beside the target and renamed into place
    /// ([`crate::files::write_atomic`]).
    pub fn save_safetensors(&self, path: impl AsRef<Path>, dtype: DType) -> Result<()> {
        let path = path.as_ref();
        let write_err =
            |reason: String| -> FlorenceError { CheckpointError::Write { path: path.into(), reason }.into() };
        let entries = self.unicl_tensors(path, dtype)?;
        let mut views = Vec::with_capacity(entries.len());
        for (name, data, shape) in &entries {
            let st = match data.dtype() {
                DType::F32 => safetensors::Dtype::F32,
                DType::F16 => safetensors::Dtype::F16,
                DType::BF16 => safetensors::Dtype::BF16,
                DType::I64 => safetensors::Dtype::I64,
                other => return Err(write_err(format!("cannot store dtype {other:?}"))),
            };
            let view = safetensors::tensor::TensorView::new(st, shape.clone(), data.as_bytes())
                .map_err(|e| write_err(format!("{name}: {e}")))?;
            views.push((name.clone(), view));
        }
        let meta =
            HashMap::from([("format".to_string(), "pt".to_string()), ("producer".to_string(), "florence".to_string())]);
        crate::files::write_atomic(path, |f| {
            safetensors::tensor::serialize_to_file(views, Some(meta), f.path()).map_err(std::io::Error::other)
        })
        .map_err(|e| write_err(e.to_string()))
    }

    /// Writes the model as a PyTorch checkpoint in UniCL's released format: exactly what
    /// `torch.save({"model": state_dict}, path)` writes (a zip archive with a protocol-2
    /// `data.pkl` and one raw storage per tensor), holding the same tensors as
    /// [`Florence::save_safetensors`]: `torch.load(path, weights_only=True)["model"]` is that
    /// file's state dict. `dtype` is the float type to store (`F32`, `F16` or `BF16`; UniCL
    /// released `F16`). The file is written beside the target and renamed into place
    /// ([`crate::files::write_atomic`]).
    pub fn save_pth(&self, path: impl AsRef<Path>, dtype: DType) -> Result<()> {
        let path = path.as_ref();
        let write_err =
            |reason: String| -> FlorenceError { CheckpointError::Write { path: path.into(), reason }.into() };
        let entries = self.unicl_tensors(path, dtype)?;
        let views: Vec<pth::Entry<'_>> = entries
            .iter()
            .map(|(name, data, shape)| pth::Entry { name, dtype: data.dtype(), shape, bytes: data.as_bytes() })
            .collect();
        crate::files::write_atomic(path, |f| pth::write_to(f, &pth::archive_name(path), &views).map(drop))
            .map_err(|e| write_err(e.to_string()))
    }

    /// Writes the model in Burn's native burnpack format (Burn parameter names).
    pub fn save_burnpack(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let mut store = BurnpackStore::from_file(path).auto_extension(false).overwrite(true);
        self.save_into(&mut store)
            .map_err(|e| CheckpointError::Write { path: path.into(), reason: e.to_string() }.into())
    }
}
