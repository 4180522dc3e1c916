//! One f32 matrix in a safetensors file, with string metadata and a `format` tag: how florence
//! stores derived data (zero-shot class embeddings, retrieval indexes). Written atomically
//! ([`crate::files::write_atomic`]), so a crash never leaves half a file.

use std::collections::HashMap;
use std::path::Path;

use crate::error::{FlorenceError, Result};

/// A matrix read back: its metadata (without `format`), shape and row-major values.
pub(crate) struct MatrixFile {
    pub meta: HashMap<String, String>,
    pub rows: usize,
    pub cols: usize,
    pub values: Vec<f32>,
}

/// Writes `values` (`rows x cols`, row-major) as tensor `name`, with `format` and `meta` in the
/// file's metadata. `what` names the data in errors.
pub(crate) fn save(
    path: &Path,
    format: &str,
    name: &str,
    (rows, cols): (usize, usize),
    values: &[f32],
    meta: impl IntoIterator<Item = (&'static str, String)>,
    what: &str,
) -> Result<()> {
    let err = |e: safetensors::SafeTensorError| FlorenceError::Input(format!("cannot serialise {what}: {e}"));
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![rows, cols], &bytes).map_err(err)?;
    let mut all: HashMap<String, String> = meta.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    all.insert("format".to_string(), format.to_string());
    let out = safetensors::serialize([(name, view)], Some(all)).map_err(err)?;
    crate::files::write_bytes_atomic(path, &out)
}

/// Reads a file written by [`save`] with the same `format` and `name`; `bad` turns a reason into
/// the caller's "not a ... file" error.
pub(crate) fn load(path: &Path, format: &str, name: &str, bad: impl Fn(String) -> FlorenceError) -> Result<MatrixFile> {
    let bytes = std::fs::read(path).map_err(|source| FlorenceError::Io { path: path.to_path_buf(), source })?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
    let mut meta = header.metadata().clone().unwrap_or_default();
    if meta.remove("format").as_deref() != Some(format) {
        return Err(bad("no `format` metadata".into()));
    }
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
    let t = st.tensor(name).map_err(|e| bad(e.to_string()))?;
    if t.dtype() != safetensors::Dtype::F32 || t.shape().len() != 2 {
        return Err(bad(format!("`{name}` is {:?} {:?}, expected an F32 matrix", t.dtype(), t.shape())));
    }
    let values = t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    Ok(MatrixFile { meta, rows: t.shape()[0], cols: t.shape()[1], values })
}

/// Parses a JSON list stored in the metadata under `key` (`default` when the key is absent).
pub(crate) fn meta_list(
    m: &MatrixFile,
    key: &str,
    default: &str,
    bad: impl Fn(String) -> FlorenceError,
) -> Result<Vec<String>> {
    serde_json::from_str(m.meta.get(key).map(String::as_str).unwrap_or(default)).map_err(|e| bad(format!("{key}: {e}")))
}
