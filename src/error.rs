//! The library's error type. Every failure that a user can cause (a bad file, a wrong config,
//! an input of the wrong shape) is one of these; nothing a user supplies makes the crate panic.

use std::path::PathBuf;

/// Errors returned by florence.
#[derive(Debug, thiserror::Error)]
pub enum FlorenceError {
    /// A configuration that cannot describe a model (zero sizes, heads that do not divide the
    /// width, ...). The message names the field.
    #[error("invalid config: {0}")]
    Config(String),

    /// A preset name that does not exist.
    #[error("unknown preset `{name}`; available presets: {available}")]
    UnknownPreset {
        /// The name asked for.
        name: String,
        /// Comma-separated list of known presets.
        available: String,
    },

    /// A weights name that is not in the registry ([`crate::pretrained`]).
    #[error("unknown weights name `{name}`; known names: {available}")]
    UnknownWeights {
        /// The name asked for.
        name: String,
        /// Comma-separated list of the registry's names (and aliases).
        available: String,
    },

    /// A registry entry whose file is not on the Hugging Face hub, so florence cannot fetch it.
    #[error(
        "weights `{name}` ({file}) are not on the Hugging Face hub, so florence cannot download them: \
         get {file} from {page} and load that file by its path (preset `{preset}`)"
    )]
    WeightsNotOnHub {
        /// The registry name.
        name: String,
        /// The file name.
        file: String,
        /// Where the source says the file is.
        page: String,
        /// The preset of its architecture.
        preset: String,
    },

    /// A weights file whose size differs from the one its registry entry gives.
    #[error(
        "{path} is {found} bytes but the registry expects {expected}: the file is truncated, corrupt or not \
         the published checkpoint; delete it and download it again"
    )]
    WeightsSize {
        /// The file.
        path: PathBuf,
        /// The registry's size in bytes.
        expected: u64,
        /// The file's size in bytes.
        found: u64,
    },

    /// A weights file whose SHA-256 differs from the one its registry entry gives.
    #[error(
        "{path} has SHA-256 {found} but the registry expects {expected}: the file is corrupt or not the \
         published checkpoint; delete it and download it again"
    )]
    WeightsHash {
        /// The file.
        path: PathBuf,
        /// The registry's SHA-256 (lower-case hex).
        expected: String,
        /// The file's SHA-256 (lower-case hex).
        found: String,
    },

    /// An input tensor of the wrong rank, size or content (e.g. token ids out of the vocabulary).
    #[error("invalid input: {0}")]
    Input(String),

    /// The tokenizer file could not be loaded, or text could not be encoded.
    #[error("tokenizer: {0}")]
    Tokenizer(String),

    /// An image that cannot be decoded (unreadable, truncated, not an image, too large). `source`
    /// names the file, or `<bytes>` for in-memory data.
    #[error("cannot decode image {source_name}: {reason}")]
    Image {
        /// The file (or `<bytes>`).
        source_name: String,
        /// What went wrong and what to do.
        reason: String,
    },

    /// A label list that cannot define a classifier (empty, blank or duplicate labels), or a
    /// prompt-template set that cannot be used.
    #[error("labels: {0}")]
    Labels(String),

    /// A Hugging Face hub reference that cannot be resolved (offline and not cached, unknown
    /// repository or file, built without the `hub` feature).
    #[error("hub: {0}")]
    Hub(String),

    /// A checkpoint that cannot be read or does not fit the model.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),

    /// A file that could not be read or written.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating-system error.
        #[source]
        source: std::io::Error,
    },

    /// A size from outside (a config field, a file, a list, a text) beyond its limit in
    /// [`crate::limits`]. The message names the field and the limit.
    #[error(transparent)]
    Limit(#[from] crate::limits::LimitError),

    /// A config file that is not valid JSON for the expected structure.
    #[error("cannot parse config {path}: {source}")]
    ConfigParse {
        /// The file (or `<string>`).
        path: PathBuf,
        /// The parser's message, with line and column.
        #[source]
        source: serde_json::Error,
    },
}

/// What went wrong while reading, matching or writing a checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The file does not exist.
    #[error("checkpoint {0} does not exist")]
    NotFound(PathBuf),

    /// The file is neither a PyTorch pickle/zip, a safetensors file nor a Burn burnpack.
    #[error("{path} is not a checkpoint (expected a PyTorch .pth/.pt, a .safetensors or a Burn .bpk file): {reason}")]
    UnknownFormat {
        /// The file.
        path: PathBuf,
        /// What the first bytes looked like.
        reason: String,
    },

    /// The file has a known format but could not be parsed (truncated, corrupt).
    #[error(
        "cannot read checkpoint {path} ({format}): {reason}. The file may be truncated or corrupt; download it again"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// `pytorch`, `safetensors` or `burnpack`.
        format: &'static str,
        /// The reader's message.
        reason: String,
    },

    /// The checkpoint holds tensors, but none of a UniCL/Florence two-tower model.
    #[error(
        "{path} is not a UniCL/Florence checkpoint: none of its {count} tensors belong to an image or text tower (first keys: {sample}). Florence loads two-tower UniCL checkpoints (keys `image_encoder.*`, `text_encoder.*`, `image_projection`, ...)"
    )]
    NotAFlorenceModel {
        /// The file.
        path: PathBuf,
        /// How many tensors it holds.
        count: usize,
        /// A few of its keys.
        sample: String,
    },

    /// The file holds tensors, but none of the module being loaded (the generic loader's
    /// version of [`CheckpointError::NotAFlorenceModel`]).
    #[error(
        "{path} is not a checkpoint of this model: none of its {count} tensors belong to it (first keys: {sample})"
    )]
    NotThisModel {
        /// The file.
        path: PathBuf,
        /// How many tensors it holds.
        count: usize,
        /// A few of its keys.
        sample: String,
    },

    /// Tensors the model needs are absent.
    #[error("checkpoint is missing {} tensor(s) the model needs: {}{}", keys.len(), preview(keys), hint_config())]
    MissingKeys {
        /// The missing keys, in checkpoint (UniCL) naming.
        keys: Vec<String>,
    },

    /// Tensors in the checkpoint that the model has no place for.
    #[error("checkpoint has {} tensor(s) the model does not use: {}{}", keys.len(), preview(keys), hint_config())]
    UnexpectedKeys {
        /// The unexpected keys, in checkpoint (UniCL) naming.
        keys: Vec<String>,
    },

    /// A tensor whose shape does not match the model's.
    #[error("tensor `{key}` has shape {found:?} in the checkpoint but the model expects {expected:?}{}", hint_config())]
    ShapeMismatch {
        /// The key, in checkpoint (UniCL) naming.
        key: String,
        /// What the model expects.
        expected: Vec<usize>,
        /// What the checkpoint holds.
        found: Vec<usize>,
    },

    /// A tensor of a dtype that cannot be loaded into its parameter (e.g. ints for weights).
    #[error("tensor `{key}` has dtype {found} which cannot be loaded into a float parameter")]
    DType {
        /// The key.
        key: String,
        /// The dtype found.
        found: String,
    },

    /// A known buffer (`relative_position_index`, `attn_mask`) that disagrees with the value the
    /// model recomputes from its config.
    #[error("buffer `{key}` disagrees with the value florence recomputes from the config: {reason}{}", hint_config())]
    BufferMismatch {
        /// The key.
        key: String,
        /// What differs.
        reason: String,
    },

    /// A tensor holding NaN or infinite values (a diverged training run, a corrupt download):
    /// loading it would make every output NaN without an error.
    #[error(
        "tensor `{key}` holds {count} non-finite value(s) (NaN or infinite; the first at flat index {first}): the checkpoint is unusable (a diverged training run or a corrupt file?)"
    )]
    NonFinite {
        /// The key, in the file's naming.
        key: String,
        /// How many of its values are NaN or infinite.
        count: usize,
        /// Flat index of the first one.
        first: usize,
    },

    /// A checkpoint larger than [`crate::limits`] allow (file size, tensor count, pickle size
    /// or nesting), refused before it is parsed.
    #[error("checkpoint {path}: {limit}")]
    Limit {
        /// The file.
        path: PathBuf,
        /// Which limit, and by how much.
        limit: crate::limits::LimitError,
    },

    /// Writing a checkpoint failed.
    #[error("cannot write checkpoint {path}: {reason}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

fn preview(keys: &[String]) -> String {
    const SHOW: usize = 8;
    let mut s = keys.iter().take(SHOW).map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ");
    if keys.len() > SHOW {
        s.push_str(&format!(" and {} more", keys.len() - SHOW));
    }
    s
}

fn hint_config() -> &'static str {
    ". Check that the config (preset) matches the checkpoint: e.g. `unicl-swin-t` for Swin-T weights, `unicl-swin-b` for Swin-B"
}

/// Shorthand for results in this crate.
pub type Result<T, E = FlorenceError> = std::result::Result<T, E>;
