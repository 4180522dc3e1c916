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
    let corrupt = |reason: String| CheckpointError::Corrupt { path: path.into(), format: format.name(), reason };
    match format {
        Format::Pytorch => {
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
