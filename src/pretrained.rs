//! The weights registry: every public checkpoint of the family that florence knows of, with
//! where it comes from, what it is, how to prepare images for it, and how to check the file.
//!
//! The public checkpoints are UniCL's (Yang et al., CVPR 2022, <https://github.com/microsoft/UniCL>):
//! a Swin-T or Swin-B image tower and UniCL's 12-layer CLIP-BPE text tower, trained on the data
//! each name says. Every fact below comes from a public source named in the entry's `sources`:
//!
//! * file names, training data, architectures and accuracies: the model zoo of the UniCL
//!   README, pinned to a commit. The README of 2023-11-10 says that all its earlier download links
//!   (`https://projects4jw.blob.core.windows.net/unicl/release/FILE`) are broken and that all
//!   checkpoints are on the GitHub release `v1.0`; the asset names of that release could not be
//!   established from a public source here, so those entries name the release page and no URL.
//! * the one checkpoint on the Hugging Face hub (`in21k_yfcc14m_gcc15m_swin_base.pth`, in the Space
//!   `CVPR/unicl-zero-shot-img-recog`, pinned to the commit that added it): its SHA-256 from the
//!   hub's file page. The page shows its size only rounded ("303 MB"), so the exact byte count
//!   is not known and is not checked; the hash is.
//! * preprocessing: UniCL's evaluation transform (`data/build.py`, with `config.py`'s defaults:
//!   224 pixels, bicubic, `TEST.CROP = True`), i.e. [`PreprocessConfig::unicl`]`(224)`.
//! * licence: the UniCL repository is MIT-licensed; see each entry's `licence_note`.
//!
//! No size or hash is guessed: where a source gives none the field is `None`, and
//! [`resolve`] checks only what is known.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::FlorenceConfig;
use crate::error::{FlorenceError, Result};
use crate::hub::{self, HubFile};
use crate::preprocess::{IMAGENET_MEAN, IMAGENET_STD, PreprocessConfig, ResizeFilter};
use crate::progress::{Progress, Silent};

/// One known checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    /// The registry name, `unicl-swin-{t,b}-<training data>`.
    pub name: &'static str,
    /// Other names that resolve to this entry.
    pub aliases: &'static [&'static str],
    /// What the checkpoint is: architecture, training data, the accuracies its source reports.
    pub description: &'static str,
    /// The [`crate::PRESETS`] name of its architecture.
    pub preset: &'static str,
    /// Where florence downloads it from: an `hf://` reference ([`crate::hub`]) pinned to a
    /// commit, or `None` when the file is not on the Hugging Face hub.
    pub hub: Option<&'static str>,
    /// Where a person gets the file: the hub file page, or the page the source points to.
    pub download_page: &'static str,
    /// The file name the source gives.
    pub file: &'static str,
    /// Size in bytes, when a public source gives it exactly.
    pub size: Option<u64>,
    /// SHA-256 of the file (lower-case hex), when a public source gives it.
    pub sha256: Option<&'static str>,
    /// How images are prepared for these weights.
    pub preprocess: PreprocessConfig,
    /// The licence, in short.
    pub licence: &'static str,
    /// Where the licence is stated, and what is not stated.
    pub licence_note: &'static str,
    /// The public pages the facts of this entry come from.
    pub sources: &'static [&'static str],
}

/// UniCL's evaluation transform at 224: `PreprocessConfig::unicl(224)` as a constant
/// (`Resize(256, BICUBIC)`, `CenterCrop(224)`, ImageNet mean and std).
const UNICL_224: PreprocessConfig = PreprocessConfig {
    resize_shorter: 256,
    crop: 224,
    filter: ResizeFilter::Bicubic,
    mean: IMAGENET_MEAN,
    std: IMAGENET_STD,
};

/// The UniCL README of 2023-11-10 (current): the model zoo, and "All previous links are broken.
/// Please find all checkpoints here: <https://github.com/microsoft/UniCL/releases/tag/v1.0>".
const README: &str = "https://github.com/microsoft/UniCL/blob/9983bf89660f16dc923530a14d56a83b4699dcbc/README.md";
/// The UniCL README of 2022-10-05, the last one that links `yfcc14m_swin_base.pth` and
/// `in21k_yfcc14m_gcc15m_swin_base.pth` (the next commit, e725f01, removed the first row and
/// emptied the second one's link).
const README_2022: &str = "https://github.com/microsoft/UniCL/blob/bf8f52f8c97af92fd15c4b0be78109686a7a5f22/README.md";
/// The hub's page of the Swin-B file in the Space `CVPR/unicl-zero-shot-img-recog`: "add ckpt a574e10",
/// "SHA256: e4bde31b...5dc4", "Pointer size: 134 Bytes", "Size of remote file: 303 MB" (rounded, not an exact
/// size).
const HF_FILE_PAGE: &str =
    "https://huggingface.co/spaces/CVPR/unicl-zero-shot-img-recog/blob/main/in21k_yfcc14m_gcc15m_swin_base.pth";
/// The same SHA-256 is shown for the copy in the Space `jw2yang/unicl-img-recog-demo`.
const HF_MIRROR_PAGE: &str =
    "https://huggingface.co/spaces/jw2yang/unicl-img-recog-demo/blob/main/in21k_yfcc14m_gcc15m_swin_base.pth";
/// The Space's commit that added the checkpoint ("add ckpt", 2022-06-09).
const HF_COMMIT: &str =
    "https://huggingface.co/spaces/CVPR/unicl-zero-shot-img-recog/commits/a574e108c8b09cd23cdb57e47dcdd0630faf1c31";
/// The Space's README, whose metadata says `license: mit`.
const HF_README: &str = "https://huggingface.co/spaces/CVPR/unicl-zero-shot-img-recog/blob/\
     2e5ae2104cc29624db3e9ff2afb93e881b0aeb31/README.md";
/// Where the README says all checkpoints are now.
const RELEASE: &str = "https://github.com/microsoft/UniCL/releases/tag/v1.0";
/// UniCL's evaluation transform.
const EVAL_TRANSFORM: &str =
    "https://github.com/microsoft/UniCL/blob/9983bf89660f16dc923530a14d56a83b4699dcbc/data/build.py";
/// The repository's licence (MIT, Copyright (c) Microsoft Corporation).
const LICENSE: &str = "https://github.com/microsoft/UniCL/blob/9983bf89660f16dc923530a14d56a83b4699dcbc/LICENSE";
const SWIN_T_CONFIG: &str =
    "https://github.com/microsoft/UniCL/blob/9983bf89660f16dc923530a14d56a83b4699dcbc/configs/unicl_swin_tiny.yaml";
const SWIN_B_CONFIG: &str =
    "https://github.com/microsoft/UniCL/blob/9983bf89660f16dc923530a14d56a83b4699dcbc/configs/unicl_swin_base.yaml";

const REPO_LICENCE_NOTE: &str = "The microsoft/UniCL repository is MIT-licensed (LICENSE); its README states no \
    separate licence for the checkpoints, and none for their training data. The v1.0 release page could not be \
    checked here.";

/// An entry for a checkpoint that is only on UniCL's GitHub release.
const fn release(
    name: &'static str,
    preset: &'static str,
    file: &'static str,
    description: &'static str,
    sources: &'static [&'static str],
) -> Entry {
    Entry {
        name,
        aliases: &[],
        description,
        preset,
        hub: None,
        download_page: RELEASE,
        file,
        size: None,
        sha256: None,
        preprocess: UNICL_224,
        licence: "MIT (repository)",
        licence_note: REPO_LICENCE_NOTE,
        sources,
    }
}

const T_SOURCES: &[&str] = &[README, RELEASE, SWIN_T_CONFIG, EVAL_TRANSFORM, LICENSE];
const B_SOURCES: &[&str] = &[README, RELEASE, SWIN_B_CONFIG, EVAL_TRANSFORM, LICENSE];
const B_SOURCES_2022: &[&str] = &[README_2022, RELEASE, SWIN_B_CONFIG, EVAL_TRANSFORM, LICENSE];

static REGISTRY: &[Entry] = &[
    // Size and hash: HF_FILE_PAGE (the SHA-256 only; the size is shown rounded) and HF_MIRROR_PAGE.
    Entry {
        name: "unicl-swin-b-in21k-yfcc14m-gcc15m",
        aliases: &["unicl-swin-b"],
        description: "UniCL Swin-B trained on ImageNet-21K + YFCC-14M + GCC-15M; the checkpoint of UniCL's Hugging \
            Face demo. README (2022-10-05): 57.9% zero-shot top-1 on ImageNet-1K.",
        preset: "unicl-swin-b",
        hub: Some(
            "hf://spaces/CVPR/unicl-zero-shot-img-recog@a574e108c8b09cd23cdb57e47dcdd0630faf1c31/\
             in21k_yfcc14m_gcc15m_swin_base.pth",
        ),
        download_page: HF_FILE_PAGE,
        file: "in21k_yfcc14m_gcc15m_swin_base.pth",
        size: None,
        sha256: Some("e4bde31bbce5118e5442ff3fae209dec489ff2ccd1fff7847fa0dea162e65dc4"),
        preprocess: UNICL_224,
        licence: "MIT",
        licence_note: "The Space's README metadata declares `license: mit`; the microsoft/UniCL repository is \
            MIT-licensed too. No separate licence is stated for the checkpoint itself or for its training data.",
        sources: &[
            HF_FILE_PAGE,
            HF_COMMIT,
            HF_MIRROR_PAGE,
            HF_README,
            README_2022,
            SWIN_B_CONFIG,
            EVAL_TRANSFORM,
            LICENSE,
        ],
    },
    release(
        "unicl-swin-b-in21k-yfcc14m",
        "unicl-swin-b",
        "in21k_yfcc14m_swin_base.pth",
        "UniCL Swin-B trained on ImageNet-21K + YFCC-14M. README: 44.3% zero-shot top-1 on ImageNet-1K, 52.2% \
            zero-shot on 14 datasets.",
        B_SOURCES,
    ),
    release(
        "unicl-swin-b-in21k-yfcc14m-half",
        "unicl-swin-b",
        "in21k_yfcc14m_half_swin_base.pth",
        "UniCL Swin-B trained on half of ImageNet-21K + half of YFCC-14M. README: 41.1% zero-shot top-1 on \
            ImageNet-1K, 48.5% zero-shot on 14 datasets.",
        B_SOURCES,
    ),
    release(
        "unicl-swin-b-in21k",
        "unicl-swin-b",
        "in21k_swin_base.pth",
        "UniCL Swin-B trained on ImageNet-21K. README: 29.9% zero-shot top-1 on ImageNet-1K, 42.4% zero-shot on \
            14 datasets.",
        B_SOURCES,
    ),
    release(
        "unicl-swin-b-yfcc14m",
        "unicl-swin-b",
        "yfcc14m_swin_base.pth",
        "UniCL Swin-B trained on YFCC-14M. README (2022-10-05; the row was removed on 2022-10-18): 37.8% zero-shot \
            top-1 on ImageNet-1K.",
        B_SOURCES_2022,
    ),
    release(
        "unicl-swin-t-in21k-yfcc14m",
        "unicl-swin-t",
        "in21k_yfcc14m.pth",
        "UniCL Swin-T trained on ImageNet-21K + YFCC-14M. README: 40.5% zero-shot top-1 on ImageNet-1K, 49.1% \
            zero-shot on 14 datasets.",
        T_SOURCES,
    ),
    release(
        "unicl-swin-t-in21k-yfcc14m-half",
        "unicl-swin-t",
        "in21k_yfcc14m_half.pth",
        "UniCL Swin-T trained on half of ImageNet-21K + half of YFCC-14M. README: 36.4% zero-shot top-1 on \
            ImageNet-1K, 45.5% zero-shot on 14 datasets.",
        T_SOURCES,
    ),
    release(
        "unicl-swin-t-in22k",
        "unicl-swin-t",
        "in22k.pth",
        "UniCL Swin-T trained on ImageNet-22K. README: 66.8% zero-shot top-1 on ImageNet-1K, 38.9% zero-shot on 14 \
            datasets.",
        T_SOURCES,
    ),
    release(
        "unicl-swin-t-in21k",
        "unicl-swin-t",
        "in21k.pth",
        "UniCL Swin-T trained on ImageNet-21K. README: 28.5% zero-shot top-1 on ImageNet-1K, 37.8% zero-shot on 14 \
            datasets.",
        T_SOURCES,
    ),
    release(
        "unicl-swin-t-yfcc14m",
        "unicl-swin-t",
        "yfcc14m.pth",
        "UniCL Swin-T trained on YFCC-14M. README: 30.1% zero-shot top-1 on ImageNet-1K, 36.3% zero-shot on 14 \
            datasets.",
        T_SOURCES,
    ),
    release(
        "unicl-swin-t-in1k-gcc15m",
        "unicl-swin-t",
        "in1k_gcc15m.pth",
        "UniCL Swin-T trained on ImageNet-1K + GCC-15M (image-label training augmented by image-text pairs). \
            README: 81.8% top-1 on ImageNet-1K, 45.1% zero-shot on 14 datasets.",
        T_SOURCES,
    ),
    release(
        "unicl-swin-t-in1k-yfcc14m",
        "unicl-swin-t",
        "in1k_yfcc14m.pth",
        "UniCL Swin-T trained on ImageNet-1K + YFCC-14M (image-label training augmented by image-text pairs). \
            README: 81.1% top-1 on ImageNet-1K, 40.0% zero-shot on 14 datasets.",
        T_SOURCES,
    ),
    release(
        "unicl-swin-t-in1k-gcc3m",
        "unicl-swin-t",
        "in1k_gcc3m.pth",
        "UniCL Swin-T trained on ImageNet-1K + GCC-3M (image-label training augmented by image-text pairs). \
            README: 80.2% top-1 on ImageNet-1K, 39.0% zero-shot on 14 datasets.",
        T_SOURCES,
    ),
    release(
        "unicl-swin-t-in1k",
        "unicl-swin-t",
        "in1k.pth",
        "UniCL Swin-T trained on ImageNet-1K (image-label training). README: 79.9% top-1 on ImageNet-1K, 30.2% \
            zero-shot on 14 datasets.",
        T_SOURCES,
    ),
];

/// Every known checkpoint, the one florence can download first.
pub fn registry() -> &'static [Entry] {
    REGISTRY
}

/// The entry called `name` (or with that alias). An unknown name is
/// [`FlorenceError::UnknownWeights`], listing the known names.
pub fn find(name: &str) -> Result<&'static Entry> {
    REGISTRY
        .iter()
        .find(|e| e.name == name || e.aliases.contains(&name))
        .ok_or_else(|| FlorenceError::UnknownWeights { name: name.to_string(), available: known_names() })
}

/// `a, b, c (aliases: x = a)`.
fn known_names() -> String {
    let names = REGISTRY.iter().map(|e| e.name).collect::<Vec<_>>().join(", ");
    let aliases =
        REGISTRY.iter().flat_map(|e| e.aliases.iter().map(move |a| format!("{a} = {}", e.name))).collect::<Vec<_>>();
    if aliases.is_empty() { names } else { format!("{names} (aliases: {})", aliases.join(", ")) }
}

impl Entry {
    /// The model config for these weights: the preset, with the entry's preprocessing.
    pub fn config(&self) -> Result<FlorenceConfig> {
        let mut c = FlorenceConfig::preset(self.preset)?;
        c.preprocess = Some(self.preprocess.clone());
        c.validate()?;
        Ok(c)
    }

    /// The parsed hub reference, when the file is on the hub.
    pub fn hub_file(&self) -> Option<Result<HubFile>> {
        self.hub.map(HubFile::parse)
    }
}

/// The local file of `entry`: the hub cache's copy, else downloaded (with progress in bytes),
/// then checked against the entry's size and SHA-256 where they are known. A mismatch is
/// [`FlorenceError::WeightsSize`] or [`FlorenceError::WeightsHash`]; an entry that is not on the
/// hub is [`FlorenceError::WeightsNotOnHub`], naming where to get it.
pub fn resolve(entry: &Entry, progress: &mut dyn Progress) -> Result<PathBuf> {
    resolve_in(entry, &hub::default_cache_dir(), hub::offline(), progress)
}

/// [`resolve`] with an explicit hub cache folder and offline switch.
///
/// The entry's revision is a commit; a copy of the same file cached under `main` (as an
/// `hf://` reference without a revision downloads it) is used instead of downloading again when
/// the entry has a SHA-256 and that copy matches it.
pub fn resolve_in(entry: &Entry, cache_dir: &Path, offline: bool, progress: &mut dyn Progress) -> Result<PathBuf> {
    let Some(spec) = entry.hub else {
        return Err(FlorenceError::WeightsNotOnHub {
            name: entry.name.to_string(),
            file: entry.file.to_string(),
            page: entry.download_page.to_string(),
            preset: entry.preset.to_string(),
        });
    };
    let file = HubFile::parse(spec)?;
    if file.cached(cache_dir).is_none() && entry.sha256.is_some() && file.revision != "main" {
        let main = HubFile { revision: "main".to_string(), ..file.clone() };
        if let Some(p) = main.cached(cache_dir)
            && verify_file_with(&p, entry.size, entry.sha256, progress).is_ok()
        {
            return Ok(p);
        }
    }
    let path = hub::resolve_weights_in(spec, cache_dir, offline, progress)?;
    verify_file_with(&path, entry.size, entry.sha256, progress)?;
    Ok(path)
}

/// Checks `path` against a size in bytes and a SHA-256 (hex, either case), each when given; the
/// hash is computed by streaming the file. A wrong size is [`FlorenceError::WeightsSize`] (checked
/// first: it needs no reading), a wrong hash [`FlorenceError::WeightsHash`], naming the file and
/// both values.
pub fn verify_file(path: &Path, size: Option<u64>, sha256: Option<&str>) -> Result<()> {
    verify_file_with(path, size, sha256, &mut Silent)
}

/// [`verify_file`], reporting the hashing as a `verify FILE` task counted in bytes.
pub fn verify_file_with(
    path: &Path,
    size: Option<u64>,
    sha256: Option<&str>,
    progress: &mut dyn Progress,
) -> Result<()> {
    let io = |source| FlorenceError::Io { path: path.to_path_buf(), source };
    let found_size = std::fs::metadata(path).map_err(io)?.len();
    if let Some(expected) = size
        && expected != found_size
    {
        return Err(FlorenceError::WeightsSize { path: path.to_path_buf(), expected, found: found_size });
    }
    let Some(expected) = sha256 else { return Ok(()) };
    let found = sha256_file(path, progress)?;
    if !found.eq_ignore_ascii_case(expected.trim()) {
        return Err(FlorenceError::WeightsHash {
            path: path.to_path_buf(),
            expected: expected.trim().to_ascii_lowercase(),
            found,
        });
    }
    Ok(())
}

/// The SHA-256 of a file as lower-case hex, read in 1 MiB chunks (progress in bytes).
pub fn sha256_file(path: &Path, progress: &mut dyn Progress) -> Result<String> {
    let io = |source| FlorenceError::Io { path: path.to_path_buf(), source };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let total = f.metadata().map_err(io)?.len();
    let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
    progress.start(&format!("verify {name}"), usize::try_from(total).unwrap_or(usize::MAX));
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                progress.finish();
                return Err(io(e));
            }
        };
        hasher.update(&buf[..n]);
        progress.advance(n);
    }
    progress.finish();
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// A weights reference resolved to a file.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The local file.
    pub path: PathBuf,
    /// The registry entry, when the reference was a registry name.
    pub entry: Option<&'static Entry>,
}

/// Resolves what a user passes as weights: an existing local path or an `hf://` reference as
/// [`hub::resolve_weights`] does, else a registry name (downloaded and verified by [`resolve`]).
/// A string that is none of them is [`FlorenceError::UnknownWeights`] when it looks like a name
/// (no path separator, no extension), else the checkpoint-not-found error.
pub fn resolve_reference(spec: &str, progress: &mut dyn Progress) -> Result<Resolved> {
    resolve_reference_in(spec, &hub::default_cache_dir(), hub::offline(), progress)
}

/// [`resolve_reference`] with an explicit hub cache folder and offline switch.
pub fn resolve_reference_in(
    spec: &str,
    cache_dir: &Path,
    offline: bool,
    progress: &mut dyn Progress,
) -> Result<Resolved> {
    if spec.starts_with("hf://") || Path::new(spec).exists() {
        return Ok(Resolved { path: hub::resolve_weights_in(spec, cache_dir, offline, progress)?, entry: None });
    }
    match find(spec) {
        Ok(entry) => Ok(Resolved { path: resolve_in(entry, cache_dir, offline, progress)?, entry: Some(entry) }),
        Err(e) if looks_like_a_name(spec) => Err(e),
        Err(_) => {
            let path = hub::resolve_weights_in(spec, cache_dir, offline, progress)?;
            Ok(Resolved { path, entry: None })
        }
    }
}

/// A registry name has no path separator and no extension.
fn looks_like_a_name(spec: &str) -> bool {
    !spec.is_empty() && !spec.contains(['/', '\\']) && Path::new(spec).extension().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Recorder;

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("florence-pretrained-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    // SHA-256 of the three bytes "abc" (FIPS 180-2, appendix B.1).
    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn entries_are_consistent() {
        let mut names = std::collections::BTreeSet::new();
        for e in registry() {
            for n in std::iter::once(&e.name).chain(e.aliases) {
                assert!(names.insert(*n), "name `{n}` is used twice");
                assert!(looks_like_a_name(n), "{n}");
            }
            assert!(crate::PRESETS.contains(&e.preset), "{}: preset {}", e.name, e.preset);
            let c = e.config().unwrap();
            assert_eq!(c.preprocess(), e.preprocess, "{}", e.name);
            assert_eq!(e.preprocess, PreprocessConfig::unicl(224), "{}", e.name);
            assert_eq!(e.preprocess.crop as usize, c.image.image_size, "{}", e.name);
            e.preprocess.validate().unwrap();
            if let Some(h) = e.hub_file() {
                let h = h.unwrap();
                assert_eq!(h.file, e.file, "{}", e.name);
                // Pinned: the revision is a full commit hash.
                assert!(h.revision.len() == 40 && h.revision.chars().all(|c| c.is_ascii_hexdigit()), "{}", e.name);
            }
            if let Some(s) = e.sha256 {
                assert!(s.len() == 64 && s.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')), "{}: {s}", e.name);
            }
            assert!(e.file.ends_with(".pth"), "{}", e.name);
            assert!(!e.sources.is_empty() && e.sources.iter().all(|s| s.starts_with("https://")), "{}", e.name);
            assert!(e.download_page.starts_with("https://"), "{}", e.name);
            assert!(!e.licence.is_empty() && !e.licence_note.is_empty() && !e.description.is_empty());
        }
        // The downloadable one comes first, and `unicl-swin-b` names it.
        assert!(registry()[0].hub.is_some());
        assert_eq!(find("unicl-swin-b").unwrap().name, registry()[0].name);
        assert_eq!(find("unicl-swin-t-in21k-yfcc14m").unwrap().file, "in21k_yfcc14m.pth");
    }

    #[test]
    fn unknown_names_list_the_known_ones() {
        let e = find("unicl-swin-x").unwrap_err();
        assert!(matches!(e, FlorenceError::UnknownWeights { .. }), "{e}");
        let msg = e.to_string();
        assert!(msg.contains("unicl-swin-x"), "{msg}");
        for entry in registry() {
            assert!(msg.contains(entry.name), "{msg}");
        }
        assert!(msg.contains("unicl-swin-b = unicl-swin-b-in21k-yfcc14m-gcc15m"), "{msg}");
    }

    #[test]
    fn verify_file_checks_size_and_hash() {
        let dir = tempdir("verify");
        let p = dir.join("w.pth");
        std::fs::write(&p, b"abc").unwrap();
        verify_file(&p, Some(3), Some(ABC)).unwrap();
        verify_file(&p, None, Some(&ABC.to_ascii_uppercase())).unwrap();
        verify_file(&p, Some(3), None).unwrap();
        verify_file(&p, None, None).unwrap();

        let wrong = "0".repeat(64);
        let e = verify_file(&p, Some(3), Some(&wrong)).unwrap_err();
        match &e {
            FlorenceError::WeightsHash { path, expected, found } => {
                assert_eq!((path, expected.as_str(), found.as_str()), (&p, wrong.as_str(), ABC));
            }
            other => panic!("{other}"),
        }
        let msg = e.to_string();
        assert!(msg.contains(&wrong) && msg.contains(ABC) && msg.contains(&p.display().to_string()), "{msg}");

        let e = verify_file(&p, Some(4), Some(ABC)).unwrap_err();
        assert!(matches!(e, FlorenceError::WeightsSize { expected: 4, found: 3, .. }), "{e}");
        assert!(e.to_string().contains(&p.display().to_string()), "{e}");
        let e = verify_file(&dir.join("missing.pth"), None, Some(ABC)).unwrap_err();
        assert!(matches!(e, FlorenceError::Io { .. }), "{e}");

        // Hashing reports its progress in bytes.
        let mut r = Recorder::default();
        assert_eq!(sha256_file(&p, &mut r).unwrap(), ABC);
        assert_eq!((r.started, r.done, r.finished), (vec![("verify w.pth".to_string(), 3)], 3, 1));
        // More than one read buffer.
        std::fs::write(&p, vec![b'a'; 3 << 20]).unwrap();
        let one = sha256_file(&p, &mut Silent).unwrap();
        assert_eq!(one, format!("{:x}", Sha256::digest(vec![b'a'; 3 << 20])));
        std::fs::remove_dir_all(&dir).ok();
    }

    /// A fake hub cache holding `content` as the file of `spec` at `commit`, with `refs/main`
    /// pointing at it when `main` is true.
    fn fake_cache(dir: &Path, spec: &str, commit: &str, content: &[u8], main: bool) -> PathBuf {
        let f = HubFile::parse(spec).unwrap();
        let repo = dir.join(format!("spaces--{}", f.repo.replace('/', "--")));
        let snap = repo.join("snapshots").join(commit);
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::write(snap.join(&f.file), content).unwrap();
        if main {
            std::fs::create_dir_all(repo.join("refs")).unwrap();
            std::fs::write(repo.join("refs/main"), commit).unwrap();
        }
        snap.join(&f.file)
    }

    #[test]
    fn resolve_uses_the_cache_and_checks_the_hash_offline() {
        let spec = "hf://spaces/owner/space@0123456789abcdef0123456789abcdef01234567/w.pth";
        let entry = Entry { name: "test", hub: Some(spec), file: "w.pth", sha256: Some(ABC), ..registry()[0].clone() };
        // Nothing cached and offline: a hub error, no download attempt.
        let empty = tempdir("resolve-empty");
        let dir = empty.clone();
        let e = resolve_in(&entry, &dir, true, &mut Silent).unwrap_err();
        assert!(matches!(e, FlorenceError::Hub(_)) && e.to_string().contains("HF_HUB_OFFLINE"), "{e}");
        let e = resolve_in(&registry()[0], &dir, true, &mut Silent).unwrap_err();
        assert!(e.to_string().contains("HF_HUB_OFFLINE"), "{e}");

        // The pinned commit cached: found and verified.
        let pinned = tempdir("resolve-pinned");
        let dir = pinned.clone();
        let p = fake_cache(&dir, spec, "0123456789abcdef0123456789abcdef01234567", b"abc", false);
        assert_eq!(resolve_in(&entry, &dir, true, &mut Silent).unwrap(), p);
        // A wrong hash is the typed error.
        let bad = Entry { sha256: Some("ff".repeat(32).leak()), ..entry.clone() };
        assert!(matches!(resolve_in(&bad, &dir, true, &mut Silent), Err(FlorenceError::WeightsHash { .. })));
        // Without a known hash the file is taken as it is.
        let unknown = Entry { sha256: None, ..entry.clone() };
        assert_eq!(resolve_in(&unknown, &dir, true, &mut Silent).unwrap(), p);

        // Only `main` cached: used when its hash is the entry's, not otherwise.
        let dir = tempdir("resolve-main");
        let p = fake_cache(&dir, spec, "fedcba9876543210fedcba9876543210fedcba98", b"abc", true);
        assert_eq!(resolve_in(&entry, &dir, true, &mut Silent).unwrap(), p);
        assert!(matches!(resolve_in(&bad, &dir, true, &mut Silent), Err(FlorenceError::Hub(_))));
        for d in [empty, pinned, dir] {
            std::fs::remove_dir_all(d).ok();
        }
    }

    #[test]
    fn references_resolve_to_files_hub_or_registry() {
        let dir = tempdir("reference");
        let local = dir.join("w.pth");
        std::fs::write(&local, b"abc").unwrap();
        let r = resolve_reference_in(local.to_str().unwrap(), &dir, true, &mut Silent).unwrap();
        assert_eq!((r.path, r.entry), (local, None));
        // An entry that is not on the hub names where to get it.
        let e = resolve_reference_in("unicl-swin-t-in21k-yfcc14m", &dir, true, &mut Silent).unwrap_err();
        assert!(matches!(e, FlorenceError::WeightsNotOnHub { .. }), "{e}");
        let msg = e.to_string();
        assert!(msg.contains("in21k_yfcc14m.pth") && msg.contains(RELEASE) && msg.contains("unicl-swin-t"), "{msg}");
        // A registry name, offline and not cached: the hub's offline error, not a download.
        let e = resolve_reference_in("unicl-swin-b", &dir, true, &mut Silent).unwrap_err();
        assert!(e.to_string().contains("HF_HUB_OFFLINE"), "{e}");
        // An unknown name lists the names; a missing path is still "does not exist".
        let e = resolve_reference_in("nope", &dir, true, &mut Silent).unwrap_err();
        assert!(matches!(e, FlorenceError::UnknownWeights { .. }), "{e}");
        let missing = dir.join("missing.pth");
        let e = resolve_reference_in(missing.to_str().unwrap(), &dir, true, &mut Silent).unwrap_err();
        assert!(matches!(e, FlorenceError::Checkpoint(crate::error::CheckpointError::NotFound(_))), "{e}");
        let e = resolve_reference_in("missing.pth", &dir, true, &mut Silent).unwrap_err();
        assert!(matches!(e, FlorenceError::Checkpoint(_)), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
