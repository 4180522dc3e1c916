//! Resource limits: every bound florence puts on what a user can hand it, in one place.
//!
//! A size that comes from outside (an image file, a checkpoint, a config, a label list, a text,
//! an annotation file, a request body) is checked against these limits *before* anything of
//! that size is allocated, so hostile or mistaken input gives a [`LimitError`] naming the field
//! and the limit, never an out-of-memory abort. The defaults admit every public checkpoint of
//! the family and every image PIL opens; where a user needs more, [`set`] raises them for the
//! whole process (the CLI, the trainer and a service read the same values).
//!
//! ```
//! use florence::limits::{self, Limits};
//! // For the whole process: `limits::set(Limits { max_image_side: 32_768, ..limits::get() })`.
//! // For one piece of work on this thread:
//! let bigger = Limits { max_image_side: 32_768, ..limits::get() };
//! let side = limits::with(bigger, || florence::preprocess::DecodeOptions::default().max_width);
//! assert_eq!(side, 32_768);
//! assert_eq!(limits::get().max_image_side, 16_384);
//! ```
//!
//! Burn's PyTorch reader has fixed limits of its own (a 100 MiB pickle, 1000 levels of nesting,
//! 2 GiB per tensor on 32-bit targets and 10 GiB elsewhere); florence's pickle limits are
//! stricter and are checked before that reader runs, so its limits are never the ones reached.

use std::sync::RwLock;

/// The limits in force (see the module docs). Every field is a maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Width and height of a decoded image, in pixels. Default 16384.
    pub max_image_side: u32,
    /// Bytes of an image file, and of its decoded pixel buffer (also the decoders' allocation
    /// limit). Default 512 MiB: for 8-bit RGB that is 178,956,970 pixels, twice PIL's
    /// `Image.MAX_IMAGE_PIXELS`, where PIL raises `DecompressionBombError`.
    pub max_image_bytes: u64,
    /// Bytes of a checkpoint file. Default 64 GiB (the largest public checkpoint of the family,
    /// UniCL Swin-B in f32, is under 2 GiB).
    pub max_checkpoint_bytes: u64,
    /// Tensors in a checkpoint. Default 100,000 (UniCL Swin-B holds about 500).
    pub max_checkpoint_tensors: usize,
    /// Bytes of a PyTorch checkpoint's pickle (`data.pkl`). Default 32 MiB (Burn's own reader
    /// stops at 100 MiB; UniCL's pickles are tens of KiB).
    pub max_pickle_bytes: u64,
    /// Nesting depth of a PyTorch checkpoint's pickle. Default 64 (Burn's reader: 1000; a state
    /// dict nests fewer than 10 levels).
    pub max_pickle_depth: usize,
    /// A model's input side (`image.image_size`). Default 16384, the largest decoded image.
    pub max_model_image_size: usize,
    /// Any width of a model config (embedding dims, projection dim, text width, patch size,
    /// window size, vocabulary entries are bounded separately). Default 65,536.
    pub max_model_width: usize,
    /// Blocks of one stage, or layers of a tower, or stages. Default 1024.
    pub max_model_depth: usize,
    /// Vocabulary size and context length of a text tower. Default 1,048,576.
    pub max_model_vocab: usize,
    /// Parameters of a whole model, computed from its config before anything is allocated.
    /// Default 4 billion (16 GB in f32; Florence's CoSwin-H tower has 637 million).
    pub max_model_params: u64,
    /// Labels of a zero-shot classifier. Default 100,000 (ImageNet-22k has 21,841).
    pub max_labels: usize,
    /// Prompt templates of a zero-shot classifier. Default 1,000 (CLIP's ImageNet set has 80).
    pub max_templates: usize,
    /// Bytes of one text to encode (a label, a caption, a query). Default 1 MiB: tokenizing
    /// more than that can only be truncated to the context length anyway.
    pub max_text_bytes: usize,
    /// Bytes of a label, template, caption or annotation file (JSONL/CSV/COCO JSON). Default
    /// 1 GiB (COCO's train2017 instances file is 448 MiB).
    pub max_annotation_bytes: u64,
    /// Bytes of one request body sent to `florence serve`. Default 32 MiB.
    pub max_request_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        DEFAULT
    }
}

/// The default limits (see each field).
pub const DEFAULT: Limits = Limits {
    max_image_side: 16_384,
    max_image_bytes: 512 << 20,
    max_checkpoint_bytes: 64 << 30,
    max_checkpoint_tensors: 100_000,
    max_pickle_bytes: 32 << 20,
    max_pickle_depth: 64,
    max_model_image_size: 16_384,
    max_model_width: 65_536,
    max_model_depth: 1024,
    max_model_vocab: 1 << 20,
    max_model_params: 4_000_000_000,
    max_labels: 100_000,
    max_templates: 1_000,
    max_text_bytes: 1 << 20,
    max_annotation_bytes: 1 << 30,
    max_request_bytes: 32 << 20,
};

static CURRENT: RwLock<Limits> = RwLock::new(DEFAULT);

thread_local! {
    static SCOPED: std::cell::Cell<Option<Limits>> = const { std::cell::Cell::new(None) };
}

/// The limits in force: those of the innermost [`with`] on this thread, else the process's.
pub fn get() -> Limits {
    // A poisoned lock still holds a complete `Limits` (it is `Copy` and written whole).
    SCOPED.with(|s| s.get()).unwrap_or_else(|| *CURRENT.read().unwrap_or_else(|e| e.into_inner()))
}

/// Replaces the limits for this process (every later check reads the new values).
pub fn set(limits: Limits) {
    *CURRENT.write().unwrap_or_else(|e| e.into_inner()) = limits;
}

/// Runs `f` with `limits` in force on this thread only (e.g. per request in a service, or in
/// a test), then restores what was there, also when `f` panics. Threads that `f` starts see the
/// process's limits.
pub fn with<T>(limits: Limits, f: impl FnOnce() -> T) -> T {
    struct Restore(Option<Limits>);
    impl Drop for Restore {
        fn drop(&mut self) {
            SCOPED.with(|s| s.set(self.0));
        }
    }
    let _restore = Restore(SCOPED.with(|s| s.replace(Some(limits))));
    f()
}

/// A value from outside that is larger than its limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{what} is {value}{unit}, more than the limit of {limit}{unit} (`Limits::{limit_name}`; raise it with `florence::limits::set` if this is intended)"
)]
pub struct LimitError {
    /// What was measured, e.g. ``image.image_size`` or `checkpoint tensors`.
    pub what: String,
    /// Its value.
    pub value: u64,
    /// The limit it exceeds.
    pub limit: u64,
    /// The [`Limits`] field that holds the limit.
    pub limit_name: &'static str,
    /// Unit appended to both numbers (`""` or `" bytes"`).
    pub unit: &'static str,
}

/// `Ok` when `value <= limit`, otherwise the [`LimitError`] for `what`.
pub fn check(what: impl Into<String>, value: u64, limit: u64, limit_name: &'static str) -> Result<(), LimitError> {
    check_in(what, value, limit, limit_name, "")
}

/// [`check`] for a size in bytes (the message says so).
pub fn check_bytes(
    what: impl Into<String>,
    value: u64,
    limit: u64,
    limit_name: &'static str,
) -> Result<(), LimitError> {
    check_in(what, value, limit, limit_name, " bytes")
}

fn check_in(
    what: impl Into<String>,
    value: u64,
    limit: u64,
    limit_name: &'static str,
    unit: &'static str,
) -> Result<(), LimitError> {
    if value <= limit { Ok(()) } else { Err(LimitError { what: what.into(), value, limit, limit_name, unit }) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_names_the_field_and_the_limit() {
        assert!(check("x", 3, 3, "max_labels").is_ok());
        let e = check("`image.image_size`", 1_000_000_000, 16_384, "max_model_image_size").unwrap_err();
        let m = e.to_string();
        assert!(m.contains("`image.image_size` is 1000000000"), "{m}");
        assert!(m.contains("limit of 16384"), "{m}");
        assert!(m.contains("Limits::max_model_image_size"), "{m}");
        let b = check_bytes("data.pkl", 10, 5, "max_pickle_bytes").unwrap_err().to_string();
        assert!(b.contains("10 bytes") && b.contains("5 bytes"), "{b}");
    }

    #[test]
    fn scoped_limits_apply_to_this_thread_only_and_are_restored() {
        let before = get();
        let small = Limits { max_labels: 3, ..before };
        let inner = with(small, || {
            let other = std::thread::spawn(get).join().unwrap();
            (get().max_labels, other.max_labels)
        });
        assert_eq!(inner, (3, before.max_labels));
        assert_eq!(get(), before);
        let caught = std::panic::catch_unwind(|| with(small, || panic!("inside")));
        assert!(caught.is_err());
        assert_eq!(get(), before);
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        assert_eq!(Limits::default(), DEFAULT);
        assert_eq!(DEFAULT.max_image_bytes, 536_870_912);
        assert_eq!(DEFAULT.max_image_side, 16_384);
    }
}
