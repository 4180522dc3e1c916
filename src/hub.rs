//! Weights from a local file or from the Hugging Face hub.
//!
//! A weights reference is a local path, or `hf://[models/|datasets/|spaces/]OWNER/REPO[@REV]/FILE`
//! (models is the default kind), e.g. the UniCL Swin-B checkpoint that lives in a Space:
//! `hf://spaces/CVPR/unicl-zero-shot-img-recog/in21k_yfcc14m_gcc15m_swin_base.pth`.
//!
//! Hub files go through hf-hub's cache, laid out as the Python `huggingface_hub` lays it out
//! (`$HF_HOME/hub`, default `~/.cache/huggingface/hub`: `spaces--CVPR--unicl-…/refs/main` holds
//! the commit, `snapshots/<commit>/<file>` the file), so files downloaded by Python are reused.
//! With `HF_HUB_OFFLINE=1` only the cache is consulted. Downloading needs the `hub` feature;
//! cache look-ups work without it.

use std::path::{Path, PathBuf};

use crate::error::{FlorenceError, Result};
use crate::progress::Progress;

/// The kind of hub repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoKind {
    /// `models--owner--name` in the cache.
    Model,
    /// `datasets--owner--name`.
    Dataset,
    /// `spaces--owner--name`.
    Space,
}

/// A parsed `hf://` reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubFile {
    /// Model, dataset or Space.
    pub kind: RepoKind,
    /// `owner/name`.
    pub repo: String,
    /// Branch, tag or commit (default `main`).
    pub revision: String,
    /// Path of the file inside the repository.
    pub file: String,
}

impl HubFile {
    /// Parses `hf://[models/|datasets/|spaces/]OWNER/REPO[@REV]/FILE`.
    pub fn parse(spec: &str) -> Result<Self> {
        let usage = || {
            FlorenceError::Hub(format!(
                "`{spec}` is not a hub reference; write hf://OWNER/REPO/FILE, hf://spaces/OWNER/REPO/FILE or hf://OWNER/REPO@REVISION/FILE"
            ))
        };
        let rest = spec.strip_prefix("hf://").ok_or_else(usage)?;
        let (kind, rest) = if let Some(r) = rest.strip_prefix("spaces/") {
            (RepoKind::Space, r)
        } else if let Some(r) = rest.strip_prefix("datasets/") {
            (RepoKind::Dataset, r)
        } else if let Some(r) = rest.strip_prefix("models/") {
            (RepoKind::Model, r)
        } else {
            (RepoKind::Model, rest)
        };
        let mut parts = rest.splitn(3, '/');
        let (owner, name, file) = match (parts.next(), parts.next(), parts.next()) {
            (Some(o), Some(n), Some(f)) if !o.is_empty() && !n.is_empty() && !f.is_empty() => (o, n, f),
            _ => return Err(usage()),
        };
        let (name, revision) = match name.split_once('@') {
            Some((n, r)) if !n.is_empty() && !r.is_empty() => (n, r.to_string()),
            Some(_) => return Err(usage()),
            None => (name, "main".to_string()),
        };
        Ok(Self { kind, repo: format!("{owner}/{name}"), revision, file: file.to_string() })
    }

    fn hf_repo(&self) -> hf_hub::Repo {
        let kind = match self.kind {
            RepoKind::Model => hf_hub::RepoType::Model,
            RepoKind::Dataset => hf_hub::RepoType::Dataset,
            RepoKind::Space => hf_hub::RepoType::Space,
        };
        hf_hub::Repo::with_revision(self.repo.clone(), kind, self.revision.clone())
    }

    /// The cached copy, if the cache at `cache_dir` has it. A branch or tag is looked up through
    /// `refs/<revision>`; a full commit hash names its snapshot folder directly (Python's cache
    /// has no ref file for a commit).
    pub fn cached(&self, cache_dir: &Path) -> Option<PathBuf> {
        if self.revision.len() == 40 && self.revision.chars().all(|c| c.is_ascii_hexdigit()) {
            let folder = self.hf_repo().folder_name();
            let p = cache_dir.join(folder).join("snapshots").join(&self.revision).join(&self.file);
            return p.exists().then_some(p);
        }
        hf_hub::Cache::new(cache_dir.to_path_buf()).repo(self.hf_repo()).get(&self.file)
    }
}

/// The hub cache folder: `$HF_HOME/hub`, else `~/.cache/huggingface/hub` (hf-hub's rule, which
/// is also Python's).
pub fn default_cache_dir() -> PathBuf {
    hf_hub::Cache::from_env().path().clone()
}

/// True when `HF_HUB_OFFLINE` is set to `1`/`true`/`yes` (Python huggingface_hub's switch).
pub fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .map(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
        .unwrap_or(false)
}

/// A local path as is; an `hf://` reference from the cache, downloading it (with progress in
/// bytes) when it is missing and the hub is online.
pub fn resolve_weights(spec: &str, progress: &mut dyn Progress) -> Result<PathBuf> {
    resolve_weights_in(spec, &default_cache_dir(), offline(), progress)
}

/// [`resolve_weights`] with an explicit cache folder and offline switch.
pub fn resolve_weights_in(spec: &str, cache_dir: &Path, offline: bool, progress: &mut dyn Progress) -> Result<PathBuf> {
    if !spec.starts_with("hf://") {
        let p = PathBuf::from(spec);
        if p.exists() {
            return Ok(p);
        }
        return Err(FlorenceError::Checkpoint(crate::error::CheckpointError::NotFound(p)));
    }
    let f = HubFile::parse(spec)?;
    if let Some(p) = f.cached(cache_dir) {
        return Ok(p);
    }
    if offline {
        return Err(FlorenceError::Hub(format!(
            "{spec} is not in the hub cache {} and HF_HUB_OFFLINE is set; download it once online (unset HF_HUB_OFFLINE) or pass a local file",
            cache_dir.display()
        )));
    }
    download(&f, spec, cache_dir, progress)
}

#[cfg(feature = "hub")]
fn download(f: &HubFile, spec: &str, cache_dir: &Path, progress: &mut dyn Progress) -> Result<PathBuf> {
    struct Bytes<'a>(&'a mut dyn Progress);
    impl hf_hub::api::Progress for Bytes<'_> {
        fn init(&mut self, size: usize, filename: &str) {
            self.0.start(&format!("download {filename}"), size);
        }
        fn update(&mut self, size: usize) {
            self.0.advance(size);
        }
        fn finish(&mut self) {
            self.0.finish();
        }
    }
    let api = hf_hub::api::sync::ApiBuilder::from_cache(hf_hub::Cache::new(cache_dir.to_path_buf()))
        .with_progress(false)
        .build()
        .map_err(|e| FlorenceError::Hub(format!("cannot start the hub client: {e}")))?;
    api.repo(f.hf_repo()).download_with_progress(&f.file, Bytes(progress)).map_err(|e| {
        FlorenceError::Hub(format!(
            "cannot download {spec}: {e}. Check the repository and file name, your network, and HF_TOKEN for gated repositories; or set HF_HUB_OFFLINE=1 to use only the cache"
        ))
    })
}

#[cfg(not(feature = "hub"))]
fn download(_f: &HubFile, spec: &str, cache_dir: &Path, _progress: &mut dyn Progress) -> Result<PathBuf> {
    Err(FlorenceError::Hub(format!(
        "{spec} is not in the hub cache {} and this build has no `hub` feature to download it; rebuild with `--features hub` (the CLI has it) or download the file yourself",
        cache_dir.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_references() {
        let f =
            HubFile::parse("hf://spaces/CVPR/unicl-zero-shot-img-recog/in21k_yfcc14m_gcc15m_swin_base.pth").unwrap();
        assert_eq!(f.kind, RepoKind::Space);
        assert_eq!(f.repo, "CVPR/unicl-zero-shot-img-recog");
        assert_eq!(f.revision, "main");
        assert_eq!(f.file, "in21k_yfcc14m_gcc15m_swin_base.pth");
        let f = HubFile::parse("hf://owner/model@v1.0/sub/dir/w.safetensors").unwrap();
        assert_eq!(
            (f.kind, f.repo.as_str(), f.revision.as_str(), f.file.as_str()),
            (RepoKind::Model, "owner/model", "v1.0", "sub/dir/w.safetensors")
        );
        assert_eq!(HubFile::parse("hf://datasets/a/b/c").unwrap().kind, RepoKind::Dataset);
        for bad in ["hf://", "hf://owner", "hf://owner/repo", "hf://owner/repo/", "hf://o/r@/f", "owner/repo/file"] {
            assert!(HubFile::parse(bad).is_err(), "{bad}");
        }
    }
}
