//! Recognising a checkpoint file by its first bytes (never by its extension) and reading its
//! tensors lazily.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use burn::store::burn_pack::Tensor as PackTensor;
use burn::store::{BurnpackStore, ModuleStore, SafetensorsStore, bridge};

use crate::error::CheckpointError;

/// Container formats florence reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `torch.save` output: a zip archive (PyTorch >= 1.6) or a legacy pickle.
    Pytorch,
    /// Hugging Face safetensors.
    Safetensors,
    /// Burn's native burnpack (`.bpk`).
    Burnpack,
}

impl Format {
    /// Short name used in messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pytorch => "pytorch",
            Self::Safetensors => "safetensors",
            Self::Burnpack => "burnpack",
        }
    }
}

/// Detects the format from the file's first bytes.
pub fn detect(path: &Path) -> Result<Format, CheckpointError> {
    let unknown = |reason: String| CheckpointError::UnknownFormat { path: path.into(), reason };
    let mut f = std::fs::File::open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            CheckpointError::NotFound(path.into())
        } else {
            unknown(e.to_string())
        }
    })?;
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len == 0 {
        return Err(unknown("the file is empty".into()));
    }
    let limits = crate::limits::get();
    crate::limits::check_bytes("the file", len, limits.max_checkpoint_bytes, "max_checkpoint_bytes")
        .map_err(|limit| CheckpointError::Limit { path: path.into(), limit })?;
    let mut head = [0u8; 16];
    let n = f.read(&mut head).map_err(|e| unknown(e.to_string()))?;
    let head = &head[..n];
    if head.starts_with(b"PK\x03\x04") || (head.len() >= 2 && head[0] == 0x80 && (2..=5).contains(&head[1])) {
        return Ok(Format::Pytorch);
    }
    if head.starts_with(b"BURN") || head.starts_with(b"NRUB") {
        return Ok(Format::Burnpack);
    }
    if head.len() >= 9 {
        let header = u64::from_le_bytes(head[..8].try_into().unwrap_or_default());
        if head[8] == b'{' && header.saturating_add(8) <= len {
            return Ok(Format::Safetensors);
        }
    }
    let shown: String = head.iter().take(8).map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ");
    Err(unknown(format!("unrecognised first bytes {shown}")))
}

/// Every tensor in the file, by its key in the file (nested PyTorch dicts are flattened with
/// dots, e.g. `model.image_encoder.norm.weight`). Data is read only when a tensor is used.
pub fn read_tensors(path: &Path, format: Format) -> Result<BTreeMap<String, PackTensor>, CheckpointError> {
    let tensors = read_all(path, format)?;
    let limit = crate::limits::get().max_checkpoint_tensors as u64;
    crate::limits::check("the number of tensors", tensors.len() as u64, limit, "max_checkpoint_tensors")
        .map_err(|limit| CheckpointError::Limit { path: path.into(), limit })?;
    Ok(tensors)
}

fn read_all(path: &Path, format: Format) -> Result<BTreeMap<String, PackTensor>, CheckpointError> {
    let corrupt = |reason: String| CheckpointError::Corrupt { path: path.into(), format: format.name(), reason };
    match format {
        Format::Pytorch => {
            // florence's pickle limits are stricter than those of Burn's reader, and checked first.
            check_pickle(path)?;
            let reader = burn::store::pytorch_reader::PytorchReader::new(path).map_err(|e| corrupt(e.to_string()))?;
            Ok(reader.into_tensors().into_iter().map(|(k, t)| (k, bridge::from_pytorch(t))).collect())
        }
        Format::Safetensors => {
            let mut store = SafetensorsStore::from_file(path);
            Ok(store.get_all_tensors().map_err(|e| corrupt(e.to_string()))?.clone())
        }
        Format::Burnpack => {
            let mut store = BurnpackStore::from_file(path).auto_extension(false);
            Ok(store.get_all_tensors().map_err(|e| corrupt(e.to_string()))?.clone())
        }
    }
}

/// The pickle of a PyTorch checkpoint against [`crate::limits`]: its size, nesting depth and
/// number of tensor storages, before Burn's reader builds any object from it.
fn check_pickle(path: &Path) -> Result<(), CheckpointError> {
    use super::pickle_scan::{PickleLimits, PickleProblem, check_pth};
    use crate::limits::LimitError;
    let l = crate::limits::get();
    let limits = PickleLimits {
        max_bytes: l.max_pickle_bytes,
        max_depth: l.max_pickle_depth,
        max_tensors: l.max_checkpoint_tensors,
    };
    let over = |what: &str, value: u64, limit: u64, limit_name: &'static str, unit: &'static str| {
        let limit = LimitError { what: what.into(), value, limit, limit_name, unit };
        CheckpointError::Limit { path: path.into(), limit }
    };
    match check_pth(path, &limits) {
        Ok(_) => Ok(()),
        Err(PickleProblem::TooLarge { bytes, limit }) => {
            Err(over("its pickle", bytes, limit, "max_pickle_bytes", " bytes"))
        }
        Err(PickleProblem::TooDeep { depth, limit }) => {
            Err(over("the nesting depth of its pickle", depth as u64, limit as u64, "max_pickle_depth", ""))
        }
        Err(PickleProblem::TooManyTensors { count, limit }) => {
            Err(over("the number of tensors", count as u64, limit as u64, "max_checkpoint_tensors", ""))
        }
        Err(problem @ PickleProblem::Malformed(_)) => {
            Err(CheckpointError::Corrupt { path: path.into(), format: "pytorch", reason: problem.to_string() })
        }
    }
}
