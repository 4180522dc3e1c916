//! One strict loader for any Burn module: the checks of [`crate::checkpoint`] (every key present,
//! nothing unexpected, exact shapes, float dtypes, finite values, recomputed buffers equal to
//! the file's) applied to any [`ModuleSnapshot`] through a [`Layout`], the per-model part: its
//! key-map table, the buffers it recomputes, and conversions of the file's tensors (see
//! [`super::convert`]).
//!
//! Nothing is applied until everything has been checked, so a bad file leaves the module as it
//! was. Errors are [`CheckpointError`]s naming the key (and both shapes for a mismatch).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use burn::prelude::*;
use burn::store::burn_pack::Tensor as PackTensor;
use burn::store::{
    ApplyError, BurnToPyTorchAdapter, FloatCastAdapter, ModuleAdapter, ModuleContext, ModuleSnapshot,
    PyTorchToBurnAdapter, bridge,
};
use burn::tensor::DType;

use super::LoadReport;
use super::format::{self, Format};
use super::keys::Convention;
use crate::error::{CheckpointError, Result};

/// The per-model part of loading: how the file's keys map to the module's parameter paths and
/// which of them are buffers the model recomputes. PyTorch-layout files arrive with PyTorch
/// names and shapes (`[out, in]` Linear weights, `weight`/`bias` norm names), Burn's own files
/// (burnpack, or any file with Burn's `gamma`/`beta` norm names) with Burn's, and skip the
/// renaming.
pub trait Layout<M> {
    /// Maps the file's keys (nested dicts flattened with dots) to the module's paths, in
    /// PyTorch naming; may convert tensors (a packed projection split in three, a 2D kernel
    /// inflated to 3D: see [`super::convert`]). Returns the convention recognised, if the model
    /// has several.
    fn rename(&self, tensors: BTreeMap<String, PackTensor>) -> (Vec<PackTensor>, Option<Convention>);

    /// Whether a renamed key belongs to this model at all; a file with none is
    /// [`Layout::not_this_model`].
    fn recognises(&self, key: &str) -> bool;

    /// The error for a file none of whose keys the model recognises.
    fn not_this_model(&self, path: &Path, count: usize, sample: String) -> CheckpointError {
        CheckpointError::NotThisModel { path: path.into(), count, sample }
    }

    /// `None` when `t` is not a buffer the model recomputes; else `Ok(true)` when it equals the
    /// recomputed value, `Ok(false)` when the model has no such buffer (reported as unexpected),
    /// and an error (usually [`CheckpointError::BufferMismatch`]) when it differs.
    fn check_buffer(&self, module: &M, t: &PackTensor) -> Option<Result<bool>> {
        let _ = (module, t);
        None
    }
}

/// A [`Layout`] from a table of key renames: each file key has `strip_prefix` removed (keys
/// without it are left out, as a container's other entries are), then every `(from, to)`
/// substring rename is applied in order; no buffers. Enough for a module whose fields are named
/// after its checkpoint's keys.
#[derive(Debug, Clone, Default)]
pub struct KeyMap {
    /// A prefix the file puts before every key of this module (e.g. `backbone.`).
    pub strip_prefix: String,
    /// Substring renames, applied in order (e.g. `("in_proj_weight", "in_proj.weight")`).
    pub renames: Vec<(String, String)>,
}

impl KeyMap {
    /// The module-path name of a file key, or `None` when it lacks the prefix.
    pub fn map(&self, key: &str) -> Option<String> {
        let rest = key.strip_prefix(self.strip_prefix.as_str())?;
        Some(self.renames.iter().fold(rest.to_string(), |k, (from, to)| k.replace(from.as_str(), to)))
    }
}

impl<M> Layout<M> for KeyMap {
    fn rename(&self, tensors: BTreeMap<String, PackTensor>) -> (Vec<PackTensor>, Option<Convention>) {
        let renamed = tensors
            .into_iter()
            .filter_map(|(k, mut t)| {
                t.name = self.map(&k)?;
                Some(t)
            })
            .collect();
        (renamed, None)
    }

    fn recognises(&self, _key: &str) -> bool {
        true
    }
}

/// 0-D PyTorch scalars (`logit_scale`) into the `[1]` parameter Burn uses.
#[derive(Clone)]
struct ScalarToRank1;

impl ModuleAdapter for ScalarToRank1 {
    fn adapt(&self, t: PackTensor, _: ModuleContext<'_>) -> PackTensor {
        if !t.shape.is_empty() {
            return t;
        }
        let (name, dtype) = (t.name.clone(), t.dtype);
        bridge::map_data(t, name, dtype, [1].into(), |d: TensorData| {
            let dtype = d.dtype();
            TensorData::from_bytes_vec(d.as_bytes().to_vec(), [1], dtype)
        })
    }
    fn clone_box(&self) -> Box<dyn ModuleAdapter> {
        Box::new(self.clone())
    }
}

/// Whether `found` fits a parameter of shape `expected` (a 0-D scalar fits `[1]`).
fn shape_fits(expected: &[usize], found: &[usize]) -> bool {
    expected == found || (expected == [1] && found.is_empty())
}

pub(crate) fn dtype_name(d: DType) -> String {
    format!("{d:?}")
}

/// The number of NaN or infinite values in float `data` and the flat index of the first, or
/// `None` when every value is finite (or the data is not float).
fn non_finite(data: &TensorData) -> Option<(usize, usize)> {
    // Read from the little-endian bytes rather than `TensorData::iter`, whose slice cast
    // panics on bytes that are not aligned for the element type (file data need not be).
    // A value is NaN or infinite exactly when its exponent bits are all ones.
    let (width, exponent): (usize, u64) = match data.dtype() {
        DType::F64 => (8, 0x7ff0_0000_0000_0000),
        DType::F32 | DType::Flex32 => (4, 0x7f80_0000),
        DType::F16 => (2, 0x7c00),
        DType::BF16 => (2, 0x7f80),
        _ => return None,
    };
    let mut bad = data.as_bytes().chunks_exact(width).enumerate().filter_map(|(i, c)| {
        let bits = c.iter().rev().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        (bits & exponent == exponent).then_some(i)
    });
    let first = bad.next()?;
    Some((1 + bad.count(), first))
}

/// Replaces each uninitialised float parameter by a broadcast view of one zero of its lazy shape,
/// on its lazy device: shape and dtype for [`ModuleSnapshot::collect`], without an allocation.
/// Used on a copy of the module only (a clone shares the parameters' lazy state, which mapping
/// the copy leaves untouched).
struct Placeholders;

impl burn::module::ModuleMapper for Placeholders {
    fn map_float<const D: usize>(&mut self, param: burn::module::Param<Tensor<D>>) -> burn::module::Param<Tensor<D>> {
        if param.is_initialized() {
            return param;
        }
        let dims: [usize; D] = param.lazy_shape().dims();
        let zero = Tensor::<D>::zeros([1; D], &param.lazy_device()).expand(dims);
        burn::module::Param::initialized(param.id, zero)
    }
}

/// Loads the checkpoint at `path` into `module`, strictly, with `layout` mapping its keys.
pub fn load_module<M: ModuleSnapshot, L: Layout<M>>(module: &mut M, path: &Path, layout: &L) -> Result<LoadReport> {
    let format = format::detect(path)?;
    let raw = format::read_tensors(path, format)?;
    let mut dtypes = BTreeMap::new();
    for t in raw.values() {
        *dtypes.entry(dtype_name(t.dtype)).or_insert(0) += 1;
    }
    let burn_names = format == Format::Burnpack || raw.keys().any(|k| k.ends_with(".gamma"));
    let (tensors, convention, expected_adapter): (Vec<PackTensor>, _, Option<Box<dyn ModuleAdapter>>) = if burn_names {
        (raw.into_values().collect(), None, None)
    } else {
        let (renamed, conv) = layout.rename(raw);
        (renamed, conv, Some(Box::new(BurnToPyTorchAdapter)))
    };
    if !tensors.iter().any(|t| layout.recognises(&t.name)) {
        let sample = tensors.iter().take(5).map(|t| t.name.clone()).collect::<Vec<_>>().join(", ");
        return Err(layout.not_this_model(path, tensors.len(), sample).into());
    }

    // What the module expects, in the file's naming, with each tensor's position in the module
    // tree (so that a mismatch is reported at the earliest layer). Burn's own files keep enum
    // variant names in their paths (`downsample.Merge.norm.gamma`); PyTorch layouts do not.
    let skip_enum_variants = !burn_names;
    // Collected from a copy whose uninitialised parameters are placeholders: collecting the
    // module itself would run every lazy initialiser, random values that the checkpoint then
    // replaces (for `unicl-swin-b`, seconds, and one more copy of the model at the peak).
    let snapshot = module.clone().map(&mut Placeholders).collect(None, expected_adapter, skip_enum_variants);
    let float = snapshot.iter().map(|t| t.dtype).find(|d| d.is_float()).unwrap_or(DType::F32);
    let expected: HashMap<String, (usize, Vec<usize>)> =
        snapshot.into_iter().enumerate().map(|(i, t)| (t.name.clone(), (i, t.shape.to_vec()))).collect();

    let mut params = Vec::with_capacity(expected.len());
    let mut unexpected = Vec::new();
    let mut mismatched: Option<(usize, CheckpointError)> = None;
    let mut buffers_checked = 0;
    for t in tensors {
        if !burn_names && let Some(checked) = layout.check_buffer(module, &t) {
            if checked? {
                buffers_checked += 1;
            } else {
                unexpected.push(t.name.clone());
            }
            continue;
        }
        match expected.get(&t.name) {
            None => unexpected.push(t.name.clone()),
            Some((pos, shape)) => {
                if !shape_fits(shape, &t.shape) {
                    if mismatched.as_ref().is_none_or(|(p, _)| pos < p) {
                        let e = CheckpointError::ShapeMismatch {
                            key: t.name.clone(),
                            expected: shape.clone(),
                            found: t.shape.to_vec(),
                        };
                        mismatched = Some((*pos, e));
                    }
                    continue;
                }
                if !t.dtype.is_float() {
                    return Err(CheckpointError::DType { key: t.name.clone(), found: dtype_name(t.dtype) }.into());
                }
                params.push(t);
            }
        }
    }
    if let Some((_, e)) = mismatched {
        return Err(e.into());
    }
    let present: HashSet<&str> = params.iter().map(|t| t.name.as_str()).collect();
    let mut missing: Vec<String> = expected.keys().filter(|k| !present.contains(k.as_str())).cloned().collect();
    if !missing.is_empty() {
        missing.sort();
        return Err(CheckpointError::MissingKeys { keys: missing }.into());
    }
    if !unexpected.is_empty() {
        unexpected.sort();
        return Err(CheckpointError::UnexpectedKeys { keys: unexpected }.into());
    }

    // Every tensor's data is read (once) and checked before any is applied: a NaN or an
    // infinity would otherwise make every output NaN without an error.
    let params = params
        .into_iter()
        .map(|t| {
            let name = t.name.clone();
            // Read from a clone and dropped after the check: the tensor itself stays lazy (its
            // bytes are read again, one tensor at a time, when applied), so the whole file is
            // never held in memory next to the model.
            let data = bridge::into_data(t.clone()).map_err(|e| CheckpointError::Corrupt {
                path: path.into(),
                format: format.name(),
                reason: format!("tensor `{name}`: {e}"),
            })?;
            if let Some((count, first)) = non_finite(&data) {
                return Err(CheckpointError::NonFinite { key: name, count, first });
            }
            Ok(t)
        })
        .collect::<Result<Vec<_>, CheckpointError>>()?;

    // Everything is accounted for; apply.
    let cast = FloatCastAdapter::to(float);
    let adapter: Box<dyn ModuleAdapter> =
        if burn_names { Box::new(cast) } else { Box::new(PyTorchToBurnAdapter.chain(ScalarToRank1).chain(cast)) };
    let loaded = params.len();
    // The checked tensors are read again as they are applied; should that second read fail, the
    // module is put back as it was (the copy shares its parameters, so it costs nothing).
    let before = module.clone();
    let result = module.apply(params, None, Some(adapter), skip_enum_variants);
    if !result.errors.is_empty() || !result.missing.is_empty() {
        *module = before;
    }
    if let Some(e) = result.errors.first() {
        return Err(match e {
            ApplyError::ShapeMismatch { path, expected, found } => {
                CheckpointError::ShapeMismatch { key: path.clone(), expected: expected.to_vec(), found: found.to_vec() }
            }
            ApplyError::DTypeMismatch { path, found, .. } => {
                CheckpointError::DType { key: path.clone(), found: dtype_name(*found) }
            }
            other => CheckpointError::Corrupt { path: path.into(), format: format.name(), reason: other.to_string() },
        }
        .into());
    }
    if !result.missing.is_empty() {
        return Err(
            CheckpointError::MissingKeys { keys: result.missing.iter().map(|(p, _)| p.clone()).collect() }.into()
        );
    }
    Ok(LoadReport { format, convention, loaded, buffers_checked, dtypes })
}
