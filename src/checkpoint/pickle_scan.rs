//! A pre-check of a PyTorch checkpoint's pickles against florence's own limits, run before
//! Burn's PyTorch reader parses the file.
//!
//! Burn's reader (`pytorch-reader`) has fixed ceilings of its own: a ZIP `data.pkl` of at most
//! 100 MiB (`MAX_PICKLE_SIZE`) and objects nested at most 1000 deep (`MAX_NESTING_DEPTH`).
//! florence's limits are stricter and configurable, so the pickle is walked here first, opcode
//! by opcode, without building any object: [`scan`] measures one pickle and [`check_pth`] finds
//! the pickles of a checkpoint file the way Burn's reader does and scans them.
//!
//! Everything here runs on untrusted bytes: no length read from the file sizes an allocation,
//! all arithmetic on such lengths is checked, and no input makes it panic.

// Not yet called from the crate: the loader starts using it in a later change.

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

/// What the pre-check measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PickleFacts {
    /// Bytes of pickle: for [`scan`], the bytes consumed up to and including `STOP`; for a ZIP
    /// checkpoint, the size of its `data.pkl` entry; for a legacy checkpoint, the bytes of the
    /// pickles that open the file, together.
    pub bytes: u64,
    /// The deepest nesting seen (see [`scan`] for the definition); the maximum over the
    /// pickles when a file holds several.
    pub depth: usize,
    /// `PERSID` and `BINPERSID` opcodes: one per reference to a tensor storage.
    pub persistent_ids: usize,
    /// Opcodes walked, `PROTO`, `FRAME` and `STOP` included.
    pub opcodes: usize,
}

/// Why a checkpoint failed the pre-check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PickleProblem {
    /// The pickle is larger than allowed (`bytes` as stored/declared).
    TooLarge { bytes: u64, limit: u64 },
    /// Containers nest deeper than allowed.
    TooDeep { depth: usize, limit: usize },
    /// More persistent ids (tensor storages) than allowed.
    TooManyTensors { count: usize, limit: usize },
    /// Not a pickle we can walk: unknown opcode, truncated argument, no STOP, zip without data.pkl, I/O error text.
    Malformed(String),
}

impl fmt::Display for PickleProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { bytes, limit } => {
                write!(f, "the checkpoint's pickle is {bytes} bytes, above the limit of {limit}")
            }
            Self::TooDeep { depth, limit } => {
                write!(f, "the checkpoint's pickle nests {depth} levels deep, above the limit of {limit}")
            }
            Self::TooManyTensors { count, limit } => {
                write!(f, "the checkpoint's pickle references {count} tensor storages, above the limit of {limit}")
            }
            Self::Malformed(reason) => write!(f, "the checkpoint's pickle cannot be read: {reason}"),
        }
    }
}

impl std::error::Error for PickleProblem {}

/// The limits a pickle is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PickleLimits {
    /// Most bytes of pickle (see [`PickleFacts::bytes`]).
    pub max_bytes: u64,
    /// Deepest nesting (see [`scan`]).
    pub max_depth: usize,
    /// Most persistent ids, over all the pickles of a file.
    pub max_tensors: usize,
}

/// Walks one pickle's opcodes (protocols 0 to 5) from the start of `bytes` to its STOP, without
/// building any object. Returns the facts and the number of bytes consumed (up to and including STOP).
///
/// Only the first `limits.max_bytes` bytes are walked: a pickle that has not stopped by then
/// while `bytes` goes on is [`PickleProblem::TooLarge`], reported with the length of `bytes`
/// (its own length is not walked past the limit). Each limit fails the walk as soon as it is
/// crossed, so `TooDeep` and `TooManyTensors` report the first value above the limit.
///
/// # Depth
///
/// The depth is a property of the opcode stream, kept in a fixed amount of memory however deep
/// the pickle nests. Each value on the unpickler's stack has a nesting depth: 0 for a scalar
/// (numbers, strings, bytes, `None`, booleans, globals) and for a value fetched from the memo
/// (`GET`, `BINGET`, `LONG_BINGET`, which are not followed); 1 for an empty container
/// (`EMPTY_LIST`, `EMPTY_DICT`, `EMPTY_TUPLE`, `EMPTY_SET`); one more than its deepest item for a
/// container that items go into (`TUPLE`, `TUPLE1` to `TUPLE3`, `LIST`, `DICT`, `FROZENSET`,
/// `APPEND`, `APPENDS`, `SETITEM`, `SETITEMS`, `ADDITEMS`); and the depth of its deepest part
/// for a value built from others (`REDUCE`, `BUILD`, `NEWOBJ`, `NEWOBJ_EX`, `OBJ`, `INST`,
/// `BINPERSID`). The pickle's depth is the maximum, over every opcode, of the number of open
/// `MARK`s plus the depth of the value on top of the stack: an open `MARK` is a container whose
/// items are still being written, so both top-down nesting (`MARK` within `MARK`, as lists and
/// dicts of several items and tuples of four or more nest) and bottom-up nesting (a value
/// wrapped by `APPEND`, `SETITEM`, `TUPLE1`... as single-item containers nest) are counted.
///
/// Item depths are remembered for the top 32 stack entries only; an item further down counts
/// as 0 when its container closes. For what Python's pickler writes of lists, dicts, sets and
/// tuples, the depth is their true nesting whenever each container's deepest item is among its
/// last 32 (a list nested 2000 deep is 2000 whichever way it was written; a `torch.save` state
/// dict is 3, or 4 under a `"model"` key), and may come out lower otherwise: a deep item
/// followed by more than 31 siblings loses the single-item (bottom-up) levels wrapped around
/// its container, while levels opened with a `MARK` are always counted. A crafted pickle can
/// also hide nesting through the memo. It is a policy check; Burn's reader still enforces its
/// own limit on the objects it builds.
// Used by `check_pth` through its parts and by the tests; the entry point for fuzzing.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn scan(bytes: &[u8], limits: &PickleLimits) -> Result<(PickleFacts, usize), PickleProblem> {
    let window = usize::try_from(limits.max_bytes).unwrap_or(usize::MAX).min(bytes.len());
    let walked = bytes.get(..window).unwrap_or(bytes);
    walk(walked, limits, 0).map_err(|fail| match fail {
        Fail::Truncated(_) if bytes.len() > window => {
            PickleProblem::TooLarge { bytes: bytes.len() as u64, limit: limits.max_bytes }
        }
        fail => fail.into_problem(),
    })
}

/// Checks a PyTorch checkpoint file: for a zip archive (first bytes `PK\x03\x04`), the declared
/// uncompressed size of its `data.pkl` entry is checked against max_bytes BEFORE reading it,
/// then the entry is read and scanned; for a legacy pickle file, the pickles at the start of the
/// file (magic, protocol, sys-info, main, storage keys: see Burn's reader) are scanned, reading
/// at most max_bytes of the file for them.
///
/// The file's kind is told from its first bytes as Burn's reader tells it: a ZIP archive
/// (`PK\x03\x04`, or `PK\x05\x06` for an empty one), whose `data.pkl` is the one with the
/// shortest folder prefix, as Burn picks it; a TAR archive (PyTorch before 0.1.10), which is
/// refused as [`PickleProblem::Malformed`] since its pickles are not walked here; a legacy file
/// (the magic number in its first 64 bytes), whose five pickles are walked; and otherwise a
/// plain pickle, walked alone. A legacy or plain file is read in growing chunks, so only as much
/// of it as its pickles need is held; one whose pickles do not end within `max_bytes` is
/// `TooLarge`, reported with the file's length. `Malformed` texts do not name the file, which
/// the caller knows.
pub(crate) fn check_pth(path: &Path, limits: &PickleLimits) -> Result<PickleFacts, PickleProblem> {
    let io_problem = |e: io::Error| PickleProblem::Malformed(e.to_string());
    let mut file = File::open(path).map_err(io_problem)?;
    let file_len = file.metadata().map_err(io_problem)?.len();
    let mut head = Vec::with_capacity(HEAD_LEN);
    (&mut file).take(HEAD_LEN as u64).read_to_end(&mut head).map_err(io_problem)?;
    if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        return check_zip(file, file_len, limits);
    }
    if head.get(TAR_MAGIC_OFFSET..TAR_MAGIC_OFFSET + 5) == Some(b"ustar") {
        return Err(PickleProblem::Malformed(
            "a TAR checkpoint (PyTorch before 0.1.10), which the pre-check does not walk".into(),
        ));
    }
    let pickles = if starts_with_legacy_magic(&head) { LEGACY_PICKLES } else { 1 };
    file.seek(SeekFrom::Start(0)).map_err(io_problem)?;
    check_stream(file, file_len, pickles, limits)
}

// ---------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------

/// Bytes read to tell the kind of file: up to and including a TAR header's `ustar` magic.
const HEAD_LEN: usize = TAR_MAGIC_OFFSET + 5;

/// Offset of the `ustar` magic within a TAR header.
const TAR_MAGIC_OFFSET: usize = 257;

/// The magic number 0x1950a86a20f9469cfc6c opening a legacy file, as protocols 2 and up write
/// it: little-endian bytes inside a `LONG1`.
const LEGACY_MAGIC_BYTES: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

/// The same value in decimal, as protocols 0 and 1 write it.
const LEGACY_MAGIC_TEXT: &[u8] = b"119547037146038801333356";

/// How far into the file Burn's reader looks for the magic.
const LEGACY_MAGIC_SEARCH: usize = 64;

/// Pickles at the start of a legacy file: magic number, protocol version, system info, the
/// saved object, and the storage keys (the raw storages follow).
const LEGACY_PICKLES: usize = 5;

/// First read of a legacy or plain file; each further read doubles what is held.
const FIRST_CHUNK: u64 = 1 << 20;

fn starts_with_legacy_magic(head: &[u8]) -> bool {
    let window = head.get(..LEGACY_MAGIC_SEARCH).unwrap_or(head);
    window.windows(LEGACY_MAGIC_BYTES.len()).any(|w| w == LEGACY_MAGIC_BYTES)
        || window.windows(LEGACY_MAGIC_TEXT.len()).any(|w| w == LEGACY_MAGIC_TEXT)
}

fn check_zip(file: File, file_len: u64, limits: &PickleLimits) -> Result<PickleFacts, PickleProblem> {
    let zip_problem = |e: zip::result::ZipError| PickleProblem::Malformed(format!("ZIP archive: {e}"));
    let mut archive = zip::ZipArchive::new(BufReader::new(file)).map_err(zip_problem)?;

    // As Burn's reader: the `data.pkl` under the shortest folder prefix (`<root>/data.pkl`, or
    // the archive's top level), so that the entry checked is the entry Burn parses.
    let mut root: Option<String> = None;
    for name in archive.file_names() {
        let name = name.map_err(zip_problem)?;
        if let Some(prefix) = name.strip_suffix("data.pkl")
            && (prefix.is_empty() || prefix.ends_with('/'))
            && root.as_ref().is_none_or(|r| prefix.len() < r.len())
        {
            root = Some(prefix.to_string());
        }
    }
    let Some(root) = root else {
        return Err(PickleProblem::Malformed("no data.pkl entry in the ZIP archive".into()));
    };
    let name = format!("{root}data.pkl");
    let index = archive
        .index_for_name(&name)
        .ok_or_else(|| PickleProblem::Malformed(format!("ZIP entry '{name}' cannot be looked up")))?;

    // The size the central directory declares, checked before a byte of the entry is read.
    let (size, crc32) = {
        let raw = archive.by_index_raw(index).map_err(zip_problem)?;
        (raw.size(), raw.crc32())
    };
    if size > limits.max_bytes {
        return Err(PickleProblem::TooLarge { bytes: size, limit: limits.max_bytes });
    }

    // `torch.save(..., compute_crc32=False)` writes a CRC of 0, which Burn's reader (and
    // `torch.load`) take as "no checksum".
    let options = zip::ZipReadOptions::new().ignore_crc32(crc32 == 0);
    let mut entry = archive.by_index_with_options(index, options).map_err(zip_problem)?;
    let entry_problem = |e: io::Error| PickleProblem::Malformed(format!("ZIP entry '{name}': {e}"));
    // A deflated entry may decompress beyond the file's length, but the declared size is not
    // trusted for the allocation beyond it; the buffer grows with the bytes that arrive.
    let capacity = usize::try_from(size.min(file_len)).unwrap_or(0);
    let mut data = Vec::with_capacity(capacity);
    (&mut entry).take(size).read_to_end(&mut data).map_err(entry_problem)?;
    if data.len() as u64 != size {
        return Err(PickleProblem::Malformed(format!(
            "ZIP entry '{name}' ends after {} of the {size} bytes it declares",
            data.len()
        )));
    }
    // Reaching the entry's end also runs the zip crate's CRC check.
    let mut probe = [0u8; 1];
    if entry.read(&mut probe).map_err(entry_problem)? != 0 {
        return Err(PickleProblem::Malformed(format!(
            "ZIP entry '{name}' holds more than the {size} bytes it declares"
        )));
    }
    drop(entry);

    let (mut facts, _) = walk(&data, limits, 0).map_err(|fail| match fail {
        Fail::Truncated(reason) => PickleProblem::Malformed(format!("ZIP entry '{name}': {reason}")),
        fail => fail.into_problem(),
    })?;
    facts.bytes = size;
    Ok(facts)
}

/// Walks `pickles` consecutive pickles from the start of `file`, reading it in doubling chunks
/// up to `limits.max_bytes`.
fn check_stream(
    mut file: File,
    file_len: u64,
    pickles: usize,
    limits: &PickleLimits,
) -> Result<PickleFacts, PickleProblem> {
    let window = file_len.min(limits.max_bytes);
    let mut want = window.min(FIRST_CHUNK);
    let mut data = Vec::new();
    loop {
        let missing = want.saturating_sub(data.len() as u64);
        (&mut file).take(missing).read_to_end(&mut data).map_err(|e| PickleProblem::Malformed(e.to_string()))?;
        let held = data.len() as u64;
        match walk_sequence(&data, pickles, limits) {
            Ok(facts) => return Ok(facts),
            Err(Fail::Truncated(_)) if held == want && held < window => want = want.saturating_mul(2).min(window),
            Err(Fail::Truncated(_)) if held >= limits.max_bytes && file_len > limits.max_bytes => {
                return Err(PickleProblem::TooLarge { bytes: file_len, limit: limits.max_bytes });
            }
            Err(fail) => return Err(fail.into_problem()),
        }
    }
}

/// Walks `pickles` pickles laid end to end at the start of `bytes`.
fn walk_sequence(bytes: &[u8], pickles: usize, limits: &PickleLimits) -> Result<PickleFacts, Fail> {
    let mut total = PickleFacts { bytes: 0, depth: 0, persistent_ids: 0, opcodes: 0 };
    let mut at = 0usize;
    for _ in 0..pickles {
        let rest = bytes.get(at..).unwrap_or_default();
        let (facts, used) = walk(rest, limits, total.persistent_ids)?;
        at = at.saturating_add(used);
        total.bytes = total.bytes.saturating_add(facts.bytes);
        total.depth = total.depth.max(facts.depth);
        total.persistent_ids = total.persistent_ids.saturating_add(facts.persistent_ids);
        total.opcodes = total.opcodes.saturating_add(facts.opcodes);
    }
    Ok(total)
}

// ---------------------------------------------------------------------------------------------
// The walk
// ---------------------------------------------------------------------------------------------

/// How a walk stops short.
#[derive(Debug)]
enum Fail {
    /// The bytes ran out before `STOP`: a cut-off pickle, or one longer than what was read.
    Truncated(String),
    /// Anything else.
    Problem(PickleProblem),
}

impl Fail {
    fn malformed(reason: impl Into<String>) -> Self {
        Self::Problem(PickleProblem::Malformed(reason.into()))
    }

    fn into_problem(self) -> PickleProblem {
        match self {
            Self::Truncated(reason) => PickleProblem::Malformed(reason),
            Self::Problem(problem) => problem,
        }
    }
}

/// The opcodes of pickle protocols 0 to 5 (CPython's `Lib/pickle.py`).
mod op {
    pub const MARK: u8 = b'(';
    pub const STOP: u8 = b'.';
    pub const POP: u8 = b'0';
    pub const POP_MARK: u8 = b'1';
    pub const DUP: u8 = b'2';
    pub const FLOAT: u8 = b'F';
    pub const INT: u8 = b'I';
    pub const BININT: u8 = b'J';
    pub const BININT1: u8 = b'K';
    pub const LONG: u8 = b'L';
    pub const BININT2: u8 = b'M';
    pub const NONE: u8 = b'N';
    pub const PERSID: u8 = b'P';
    pub const BINPERSID: u8 = b'Q';
    pub const REDUCE: u8 = b'R';
    pub const STRING: u8 = b'S';
    pub const BINSTRING: u8 = b'T';
    pub const SHORT_BINSTRING: u8 = b'U';
    pub const UNICODE: u8 = b'V';
    pub const BINUNICODE: u8 = b'X';
    pub const APPEND: u8 = b'a';
    pub const BUILD: u8 = b'b';
    pub const GLOBAL: u8 = b'c';
    pub const DICT: u8 = b'd';
    pub const EMPTY_DICT: u8 = b'}';
    pub const APPENDS: u8 = b'e';
    pub const GET: u8 = b'g';
    pub const BINGET: u8 = b'h';
    pub const INST: u8 = b'i';
    pub const LONG_BINGET: u8 = b'j';
    pub const LIST: u8 = b'l';
    pub const EMPTY_LIST: u8 = b']';
    pub const OBJ: u8 = b'o';
    pub const PUT: u8 = b'p';
    pub const BINPUT: u8 = b'q';
    pub const LONG_BINPUT: u8 = b'r';
    pub const SETITEM: u8 = b's';
    pub const TUPLE: u8 = b't';
    pub const EMPTY_TUPLE: u8 = b')';
    pub const SETITEMS: u8 = b'u';
    pub const BINFLOAT: u8 = b'G';
    // Protocol 2.
    pub const PROTO: u8 = 0x80;
    pub const NEWOBJ: u8 = 0x81;
    pub const EXT1: u8 = 0x82;
    pub const EXT2: u8 = 0x83;
    pub const EXT4: u8 = 0x84;
    pub const TUPLE1: u8 = 0x85;
    pub const TUPLE2: u8 = 0x86;
    pub const TUPLE3: u8 = 0x87;
    pub const NEWTRUE: u8 = 0x88;
    pub const NEWFALSE: u8 = 0x89;
    pub const LONG1: u8 = 0x8a;
    pub const LONG4: u8 = 0x8b;
    // Protocol 3.
    pub const BINBYTES: u8 = b'B';
    pub const SHORT_BINBYTES: u8 = b'C';
    // Protocol 4.
    pub const SHORT_BINUNICODE: u8 = 0x8c;
    pub const BINUNICODE8: u8 = 0x8d;
    pub const BINBYTES8: u8 = 0x8e;
    pub const EMPTY_SET: u8 = 0x8f;
    pub const ADDITEMS: u8 = 0x90;
    pub const FROZENSET: u8 = 0x91;
    pub const NEWOBJ_EX: u8 = 0x92;
    pub const STACK_GLOBAL: u8 = 0x93;
    pub const MEMOIZE: u8 = 0x94;
    pub const FRAME: u8 = 0x95;
    // Protocol 5.
    pub const BYTEARRAY8: u8 = 0x96;
    pub const NEXT_BUFFER: u8 = 0x97;
    pub const READONLY_BUFFER: u8 = 0x98;
}

/// The highest pickle protocol.
const HIGHEST_PROTOCOL: u8 = 5;

/// The bytes of one pickle and the position of the next byte to read.
struct Input<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Input<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    fn truncated(&self, what: &str) -> Fail {
        Fail::Truncated(format!("the pickle ends inside {what} (at byte {})", self.bytes.len()))
    }

    /// The next `n` bytes, or a truncation (without allocating `n`).
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], Fail> {
        let end = self.pos.checked_add(n).filter(|&end| end <= self.bytes.len());
        match end.and_then(|end| self.bytes.get(self.pos..end).map(|s| (end, s))) {
            Some((end, slice)) => {
                self.pos = end;
                Ok(slice)
            }
            None => Err(self.truncated(what)),
        }
    }

    /// Skips a length read from the pickle.
    fn skip(&mut self, n: u64, what: &str) -> Result<(), Fail> {
        let n = usize::try_from(n).map_err(|_| self.truncated(what))?;
        self.take(n, what).map(|_| ())
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], Fail> {
        let slice = self.take(N, what)?;
        slice.try_into().map_err(|_| self.truncated(what))
    }

    fn u8(&mut self, what: &str) -> Result<u8, Fail> {
        self.array::<1>(what).map(|[b]| b)
    }

    fn u32(&mut self, what: &str) -> Result<u32, Fail> {
        self.array::<4>(what).map(u32::from_le_bytes)
    }

    fn i32(&mut self, what: &str) -> Result<i32, Fail> {
        self.array::<4>(what).map(i32::from_le_bytes)
    }

    fn u64(&mut self, what: &str) -> Result<u64, Fail> {
        self.array::<8>(what).map(u64::from_le_bytes)
    }

    /// Skips a newline-terminated argument, the newline included.
    fn line(&mut self, what: &str) -> Result<(), Fail> {
        let rest = self.bytes.get(self.pos..).unwrap_or_default();
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => self.take(i.saturating_add(1), what).map(|_| ()),
            None => Err(self.truncated(what)),
        }
    }
}

/// Item depths remembered for the top of the stack.
const WINDOW: usize = 32;

#[derive(Debug, Clone, Copy)]
enum Slot {
    Mark,
    Value(usize),
}

/// The top [`WINDOW`] entries of the unpickler's stack: whether each is a `MARK` or a value of
/// what depth. Entries below are unknown: a value there counts as depth 0.
struct Window {
    slots: [Slot; WINDOW],
    /// Index of the top entry.
    head: usize,
    /// Known entries, from `head` down.
    known: usize,
}

impl Window {
    fn new() -> Self {
        Self { slots: [Slot::Value(0); WINDOW], head: 0, known: 0 }
    }

    fn push(&mut self, slot: Slot) {
        self.head = (self.head + 1) % WINDOW;
        if let Some(s) = self.slots.get_mut(self.head) {
            *s = slot;
        }
        self.known = (self.known + 1).min(WINDOW);
    }

    fn push_value(&mut self, depth: usize) {
        self.push(Slot::Value(depth));
    }

    /// The top entry, or `None` when it lies below the window.
    fn top(&self) -> Option<Slot> {
        if self.known == 0 { None } else { self.slots.get(self.head).copied() }
    }

    /// Pops the top entry; `None` when it lies below the window.
    fn pop(&mut self) -> Option<Slot> {
        let top = self.top()?;
        self.known -= 1;
        self.head = (self.head + WINDOW - 1) % WINDOW;
        Some(top)
    }

    /// Pops a value; an unknown one has depth 0.
    fn pop_value(&mut self) -> Result<usize, Fail> {
        match self.pop() {
            Some(Slot::Mark) => Err(mark_instead_of_value()),
            Some(Slot::Value(depth)) => Ok(depth),
            None => Ok(0),
        }
    }

    /// The depth of the value on top; an unknown one has depth 0.
    fn top_value(&self) -> Result<usize, Fail> {
        match self.top() {
            Some(Slot::Mark) => Err(mark_instead_of_value()),
            Some(Slot::Value(depth)) => Ok(depth),
            None => Ok(0),
        }
    }

    /// Replaces the value on top (known or not) with one of `depth`.
    fn set_top(&mut self, depth: usize) {
        if let Some(s) = self.slots.get_mut(self.head) {
            *s = Slot::Value(depth);
        }
        self.known = self.known.max(1);
    }

    /// Pops the entries above the innermost `MARK` and the mark itself. Returns the depth of
    /// the deepest known entry popped, `None` when none was known (no items, or all of them
    /// below the window).
    fn pop_to_mark(&mut self) -> Option<usize> {
        let mut deepest: Option<usize> = None;
        while let Some(slot) = self.pop() {
            match slot {
                Slot::Mark => break,
                Slot::Value(depth) => deepest = Some(deepest.map_or(depth, |d| d.max(depth))),
            }
        }
        deepest
    }
}

fn mark_instead_of_value() -> Fail {
    Fail::malformed("an opcode takes a value from the stack where a MARK is")
}

/// Depth of a container holding items whose deepest is `items` (`None`: no known item).
fn container(items: Option<usize>) -> usize {
    items.map_or(1, |d| d.saturating_add(1))
}

/// Walks one pickle from the start of `bytes`. `ids_before` persistent ids were counted in
/// earlier pickles of the same file and count against `limits.max_tensors`.
fn walk(bytes: &[u8], limits: &PickleLimits, ids_before: usize) -> Result<(PickleFacts, usize), Fail> {
    let mut input = Input { bytes, pos: 0 };
    let mut stack = Window::new();
    let mut marks = 0usize;
    let mut depth = 0usize;
    let mut ids = 0usize;
    let mut opcodes = 0usize;

    loop {
        let at = input.pos;
        let code = input.u8("an opcode: the pickle has no STOP")?;
        opcodes = opcodes.saturating_add(1);
        match code {
            op::STOP => break,
            op::PROTO => {
                let version = input.u8("PROTO's argument")?;
                if version > HIGHEST_PROTOCOL {
                    return Err(Fail::malformed(format!("unsupported pickle protocol {version} (at byte {at})")));
                }
            }
            op::FRAME => {
                // The frame's bytes are opcodes like any others and are walked as such; the
                // frame must fit in what is left.
                let len = input.u64("FRAME's length")?;
                if usize::try_from(len).map_or(true, |len| len > input.remaining()) {
                    return Err(input.truncated("a FRAME"));
                }
            }

            // Scalars with a fixed-size argument.
            op::BININT1 => {
                input.skip(1, "BININT1's argument")?;
                stack.push_value(0);
            }
            op::BININT2 => {
                input.skip(2, "BININT2's argument")?;
                stack.push_value(0);
            }
            op::BININT => {
                input.skip(4, "BININT's argument")?;
                stack.push_value(0);
            }
            op::BINFLOAT => {
                input.skip(8, "BINFLOAT's argument")?;
                stack.push_value(0);
            }
            op::EXT1 => {
                input.skip(1, "EXT1's argument")?;
                stack.push_value(0);
            }
            op::EXT2 => {
                input.skip(2, "EXT2's argument")?;
                stack.push_value(0);
            }
            op::EXT4 => {
                input.skip(4, "EXT4's argument")?;
                stack.push_value(0);
            }
            op::NONE | op::NEWTRUE | op::NEWFALSE | op::NEXT_BUFFER => stack.push_value(0),

            // Scalars with a newline-terminated argument (protocol 0).
            op::INT | op::LONG | op::FLOAT | op::STRING | op::UNICODE => {
                input.line("a newline-terminated argument")?;
                stack.push_value(0);
            }
            op::GLOBAL => {
                input.line("GLOBAL's module name")?;
                input.line("GLOBAL's name")?;
                stack.push_value(0);
            }

            // Scalars with a length-prefixed argument.
            op::LONG1 => {
                let len = input.u8("LONG1's length")?;
                input.skip(u64::from(len), "LONG1's bytes")?;
                stack.push_value(0);
            }
            op::LONG4 => {
                let len = input.i32("LONG4's length")?;
                let len = u64::try_from(len)
                    .map_err(|_| Fail::malformed(format!("LONG4 with a negative length (at byte {at})")))?;
                input.skip(len, "LONG4's bytes")?;
                stack.push_value(0);
            }
            op::BINSTRING => {
                let len = input.i32("BINSTRING's length")?;
                let len = u64::try_from(len)
                    .map_err(|_| Fail::malformed(format!("BINSTRING with a negative length (at byte {at})")))?;
                input.skip(len, "BINSTRING's bytes")?;
                stack.push_value(0);
            }
            op::SHORT_BINSTRING | op::SHORT_BINBYTES | op::SHORT_BINUNICODE => {
                let len = input.u8("a short string's length")?;
                input.skip(u64::from(len), "a short string's bytes")?;
                stack.push_value(0);
            }
            op::BINUNICODE | op::BINBYTES => {
                let len = input.u32("a string's length")?;
                input.skip(u64::from(len), "a string's bytes")?;
                stack.push_value(0);
            }
            op::BINUNICODE8 | op::BINBYTES8 | op::BYTEARRAY8 => {
                let len = input.u64("a string's 8-byte length")?;
                input.skip(len, "a string's bytes")?;
                stack.push_value(0);
            }

            // The memo. A fetched value's nesting is not followed (depth 0).
            op::GET => {
                input.line("GET's index")?;
                stack.push_value(0);
            }
            op::BINGET => {
                input.skip(1, "BINGET's index")?;
                stack.push_value(0);
            }
            op::LONG_BINGET => {
                input.skip(4, "LONG_BINGET's index")?;
                stack.push_value(0);
            }
            op::PUT => {
                input.line("PUT's index")?;
                stack.top_value()?;
            }
            op::BINPUT => {
                input.skip(1, "BINPUT's index")?;
                stack.top_value()?;
            }
            op::LONG_BINPUT => {
                input.skip(4, "LONG_BINPUT's index")?;
                stack.top_value()?;
            }
            op::MEMOIZE | op::READONLY_BUFFER => {
                stack.top_value()?;
            }

            // Containers.
            op::MARK => {
                marks = marks.saturating_add(1);
                stack.push(Slot::Mark);
            }
            op::EMPTY_LIST | op::EMPTY_DICT | op::EMPTY_TUPLE | op::EMPTY_SET => stack.push_value(1),
            op::TUPLE | op::LIST | op::DICT | op::FROZENSET => {
                let items = close_mark(&mut stack, &mut marks, at)?;
                stack.push_value(container(items));
            }
            op::APPENDS | op::SETITEMS | op::ADDITEMS => {
                let items = close_mark(&mut stack, &mut marks, at)?;
                let target = stack.top_value()?;
                stack.set_top(items.map_or(target, |d| target.max(d.saturating_add(1))));
            }
            op::POP_MARK => {
                close_mark(&mut stack, &mut marks, at)?;
            }
            op::TUPLE1 => {
                let a = stack.pop_value()?;
                stack.push_value(container(Some(a)));
            }
            op::TUPLE2 => {
                let b = stack.pop_value()?;
                let a = stack.pop_value()?;
                stack.push_value(container(Some(a.max(b))));
            }
            op::TUPLE3 => {
                let c = stack.pop_value()?;
                let b = stack.pop_value()?;
                let a = stack.pop_value()?;
                stack.push_value(container(Some(a.max(b).max(c))));
            }
            op::APPEND => {
                let value = stack.pop_value()?;
                let target = stack.top_value()?;
                stack.set_top(target.max(value.saturating_add(1)));
            }
            op::SETITEM => {
                let value = stack.pop_value()?;
                let key = stack.pop_value()?;
                let target = stack.top_value()?;
                stack.set_top(target.max(key.max(value).saturating_add(1)));
            }

            // Stack manipulation.
            op::POP => {
                // As in CPython, POP discards a MARK that has nothing above it.
                if let Some(Slot::Mark) = stack.top() {
                    marks = marks.saturating_sub(1);
                }
                stack.pop();
            }
            op::DUP => {
                let top = stack.top_value()?;
                stack.push_value(top);
            }

            // Objects built from parts: as deep as their deepest part.
            op::REDUCE | op::NEWOBJ => {
                let args = stack.pop_value()?;
                let callable = stack.pop_value()?;
                stack.push_value(args.max(callable));
            }
            op::NEWOBJ_EX => {
                let kwargs = stack.pop_value()?;
                let args = stack.pop_value()?;
                let class = stack.pop_value()?;
                stack.push_value(kwargs.max(args).max(class));
            }
            op::BUILD => {
                let state = stack.pop_value()?;
                let object = stack.top_value()?;
                stack.set_top(object.max(state));
            }
            op::STACK_GLOBAL => {
                stack.pop_value()?;
                stack.pop_value()?;
                stack.push_value(0);
            }
            op::OBJ => {
                let parts = close_mark(&mut stack, &mut marks, at)?;
                stack.push_value(parts.unwrap_or(0));
            }
            op::INST => {
                input.line("INST's module name")?;
                input.line("INST's class name")?;
                let parts = close_mark(&mut stack, &mut marks, at)?;
                stack.push_value(parts.unwrap_or(0));
            }

            // Persistent ids: references to tensor storages.
            op::PERSID => {
                input.line("PERSID's id")?;
                ids = ids.saturating_add(1);
                stack.push_value(0);
            }
            op::BINPERSID => {
                let pid = stack.pop_value()?;
                ids = ids.saturating_add(1);
                stack.push_value(pid);
            }

            other => return Err(Fail::malformed(format!("unknown pickle opcode 0x{other:02x} (at byte {at})"))),
        }

        let count = ids_before.saturating_add(ids);
        if count > limits.max_tensors {
            return Err(Fail::Problem(PickleProblem::TooManyTensors { count, limit: limits.max_tensors }));
        }
        let here = marks.saturating_add(match stack.top() {
            Some(Slot::Value(d)) => d,
            _ => 0,
        });
        if here > depth {
            depth = here;
            if depth > limits.max_depth {
                return Err(Fail::Problem(PickleProblem::TooDeep { depth, limit: limits.max_depth }));
            }
        }
    }

    let used = input.pos;
    let facts = PickleFacts { bytes: used as u64, depth, persistent_ids: ids, opcodes };
    Ok((facts, used))
}

/// Closes the innermost `MARK` group, returning the depth of its deepest known item.
fn close_mark(stack: &mut Window, marks: &mut usize, at: usize) -> Result<Option<usize>, Fail> {
    // The count of open marks is exact for a well-formed pickle, so none open is an error.
    if *marks == 0 {
        return Err(Fail::malformed(format!("an opcode closes a MARK group with no MARK open (at byte {at})")));
    }
    *marks -= 1;
    Ok(stack.pop_to_mark())
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::io::Write;
    use std::path::PathBuf;

    fn limits() -> PickleLimits {
        PickleLimits { max_bytes: 1 << 30, max_depth: 10_000, max_tensors: 1_000_000 }
    }

    fn scan_ok(bytes: &[u8]) -> PickleFacts {
        let (facts, used) = scan(bytes, &limits()).unwrap_or_else(|e| panic!("{e:?} for {bytes:?}"));
        assert_eq!(used as u64, facts.bytes);
        facts
    }

    fn is_malformed(result: Result<(PickleFacts, usize), PickleProblem>) -> bool {
        matches!(result, Err(PickleProblem::Malformed(_)))
    }

    /// A pickle writer for the tests, emitting what CPython's pickler emits at protocol 2.
    #[derive(Default)]
    struct Pickle(Vec<u8>);

    impl Pickle {
        fn proto(mut self, version: u8) -> Self {
            self.0.extend([op::PROTO, version]);
            self
        }
        fn op(mut self, code: u8) -> Self {
            self.0.push(code);
            self
        }
        fn ops(mut self, codes: &[u8]) -> Self {
            self.0.extend_from_slice(codes);
            self
        }
        fn str(mut self, s: &str) -> Self {
            self.0.push(op::BINUNICODE);
            self.0.extend((s.len() as u32).to_le_bytes());
            self.0.extend_from_slice(s.as_bytes());
            self
        }
        fn int(mut self, v: u8) -> Self {
            self.0.extend([op::BININT1, v]);
            self
        }
        fn global(mut self, module: &str, name: &str) -> Self {
            self.0.push(op::GLOBAL);
            self.0.extend_from_slice(format!("{module}\n{name}\n").as_bytes());
            self
        }
        /// `torch._utils._rebuild_tensor_v2` of a 1-D float32 tensor of `numel` elements in
        /// storage `key`, as `torch.save` writes it.
        fn tensor(self, key: &str, numel: u8) -> Self {
            self.global("torch._utils", "_rebuild_tensor_v2")
                .op(op::MARK)
                .op(op::MARK)
                .str("storage")
                .global("torch", "FloatStorage")
                .str(key)
                .str("cpu")
                .int(numel)
                .op(op::TUPLE)
                .op(op::BINPERSID)
                .int(0)
                .int(numel)
                .op(op::TUPLE1)
                .int(1)
                .op(op::TUPLE1)
                .op(op::NEWFALSE)
                .global("collections", "OrderedDict")
                .op(op::EMPTY_TUPLE)
                .op(op::REDUCE)
                .op(op::TUPLE)
                .op(op::REDUCE)
        }
        /// A state dict `{name: tensor}` of 1-D float32 tensors, storage keys "0", "1", ...
        fn state_dict(self, tensors: &[(&str, u8)]) -> Self {
            let mut p = self.proto(2).op(op::EMPTY_DICT).op(op::MARK);
            for (i, (name, numel)) in tensors.iter().enumerate() {
                p = p.str(name).tensor(&i.to_string(), *numel);
            }
            p.op(op::SETITEMS).op(op::STOP)
        }
    }

    fn temp_path(tag: &str) -> PathBuf {
        std::env::temp_dir().join(format!("florence_pickle_scan_{}_{tag}", std::process::id()))
    }

    /// Writes a ZIP with `entries` (name, bytes, deflated?) to a fresh temporary file.
    fn write_zip(tag: &str, entries: &[(&str, &[u8], bool)]) -> PathBuf {
        use zip::write::SimpleFileOptions;
        let path = temp_path(tag);
        let file = File::create(&path).unwrap();
        let mut zip = zip::ZipWriter::new(file);
        for (name, data, deflated) in entries {
            let method = if *deflated { zip::CompressionMethod::Deflated } else { zip::CompressionMethod::Stored };
            zip.start_file(*name, SimpleFileOptions::default().compression_method(method)).unwrap();
            zip.write_all(data).unwrap();
        }
        zip.finish().unwrap();
        path
    }

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
    }

    // ----- scan ------------------------------------------------------------------------------

    #[test]
    fn tiny_protocol_2_dicts() {
        // `{'a': 1}` with MARK ... SETITEMS, and as pickle.dumps({'a': 1}, protocol=2) writes it.
        let batched = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01K\x01u.";
        let facts = scan_ok(batched);
        assert_eq!(facts, PickleFacts { bytes: batched.len() as u64, depth: 1, persistent_ids: 0, opcodes: 9 });
        let single = b"\x80\x02}q\x00X\x01\x00\x00\x00aq\x01K\x01s.";
        let facts = scan_ok(single);
        assert_eq!(facts, PickleFacts { bytes: single.len() as u64, depth: 1, persistent_ids: 0, opcodes: 8 });
    }

    #[test]
    fn scan_stops_at_stop_and_reports_what_it_consumed() {
        let mut bytes = b"\x80\x02K\x01.".to_vec();
        bytes.extend_from_slice(b"trailing bytes that are not pickle \xff\xff");
        let (facts, used) = scan(&bytes, &limits()).unwrap();
        assert_eq!(used, 5);
        assert_eq!(facts.opcodes, 3);
    }

    /// `{'a': [1, 2.5, 'x', b'y'], 'b': (1, 2, 3, 4), 'c': {3}, 'd': frozenset([5]), 'e': None,
    /// 'f': True, 'g': 2**70, 'h': -3}` as CPython 3.11's `pickle.dumps` writes it at protocols
    /// 0, 1, 2 and 4, with the opcode counts `pickletools.genops` gives.
    const PROTOCOL_0: &[u8] = b"(dp0\nVa\np1\n(lp2\nI1\naF2.5\naVx\np3\nac_codecs\nencode\np4\n(Vy\np5\n\
Vlatin1\np6\ntp7\nRp8\nasVb\np9\n(I1\nI2\nI3\nI4\ntp10\nsVc\np11\nc__builtin__\nset\np12\n((lp13\nI3\n\
atp14\nRp15\nsVd\np16\n\
c__builtin__\nfrozenset\np17\n((lp18\nI5\natp19\nRp20\nsVe\np21\nNsVf\np22\nI01\nsVg\np23\n\
L1180591620717411303424L\nsVh\np24\nI-3\ns.";
    const PROTOCOL_1: &[u8] = b"}q\x00(X\x01\x00\x00\x00aq\x01]q\x02(K\x01G@\x04\x00\x00\x00\x00\x00\x00X\x01\x00\
\x00\x00xq\x03c_codecs\nencode\nq\x04(X\x01\x00\x00\x00yq\x05X\x06\x00\x00\x00latin1q\x06tq\x07Rq\x08eX\x01\x00\
\x00\x00bq\t(K\x01K\x02K\x03K\x04tq\nX\x01\x00\x00\x00cq\x0bc__builtin__\nset\nq\x0c(]q\rK\x03atq\x0eRq\x0fX\x01\
\x00\x00\x00dq\x10c__builtin__\nfrozenset\nq\x11(]q\x12K\x05atq\x13Rq\x14X\x01\x00\x00\x00eq\x15NX\x01\x00\x00\x00\
fq\x16I01\nX\x01\x00\x00\x00gq\x17L1180591620717411303424L\nX\x01\x00\x00\x00hq\x18J\xfd\xff\xff\xffu.";
    const PROTOCOL_2: &[u8] = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01]q\x02(K\x01G@\x04\x00\x00\x00\x00\x00\x00\
X\x01\x00\x00\x00xq\x03c_codecs\nencode\nq\x04X\x01\x00\x00\x00yq\x05X\x06\x00\x00\x00latin1q\x06\x86q\x07Rq\x08e\
X\x01\x00\x00\x00bq\t(K\x01K\x02K\x03K\x04tq\nX\x01\x00\x00\x00cq\x0bc__builtin__\nset\nq\x0c]q\rK\x03a\x85q\x0e\
Rq\x0fX\x01\x00\x00\x00dq\x10c__builtin__\nfrozenset\nq\x11]q\x12K\x05a\x85q\x13Rq\x14X\x01\x00\x00\x00eq\x15N\
X\x01\x00\x00\x00fq\x16\x88X\x01\x00\x00\x00gq\x17\x8a\t\x00\x00\x00\x00\x00\x00\x00\x00@X\x01\x00\x00\x00hq\x18\
J\xfd\xff\xff\xffu.";
    const PROTOCOL_4: &[u8] = b"\x80\x04\x95d\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x01a\x94]\x94(K\x01G@\x04\x00\
\x00\x00\x00\x00\x00\x8c\x01x\x94C\x01y\x94e\x8c\x01b\x94(K\x01K\x02K\x03K\x04t\x94\x8c\x01c\x94\x8f\x94(K\x03\
\x90\x8c\x01d\x94(K\x05\x91\x94\x8c\x01e\x94N\x8c\x01f\x94\x88\x8c\x01g\x94\x8a\t\x00\x00\x00\x00\x00\x00\x00\x00@\
\x8c\x01h\x94J\xfd\xff\xff\xffu.";

    #[test]
    fn pickles_python_writes_at_protocols_0_to_4() {
        // Depth: the dict holds a list, a tuple, a set and a frozenset; below protocol 3 the
        // bytes are a `_codecs.encode` call and below 4 the sets are `set([...])` calls, whose
        // argument tuples add a level.
        for (bytes, opcodes, depth) in
            [(PROTOCOL_0, 85, 3), (PROTOCOL_1, 73, 3), (PROTOCOL_2, 71, 3), (PROTOCOL_4, 53, 2)]
        {
            let facts = scan_ok(bytes);
            assert_eq!(facts.bytes, bytes.len() as u64);
            assert_eq!((facts.opcodes, facts.depth, facts.persistent_ids), (opcodes, depth, 0));
        }
    }

    /// Every opcode of protocols 0 to 5 once at least, each with its argument, in a stack-valid
    /// order. The opcode count and the length are those `pickletools.genops` reports.
    fn every_opcode() -> Vec<u8> {
        let mut p = Vec::new();
        p.extend(b"\x80\x05"); // PROTO 5
        p.extend(b"\x95\x04\x00\x00\x00\x00\x00\x00\x00"); // FRAME of the next 4 bytes
        p.extend(b"(I7\nL8L\n"); // MARK INT LONG
        p.extend(b"F1.5\nS'ab'\nVcd\n"); // FLOAT STRING UNICODE
        // BININT BININT1 BININT2 BINFLOAT
        p.extend(b"J\x01\x00\x00\x00K\x02M\x03\x00G\x3f\xf0\x00\x00\x00\x00\x00\x00");
        p.extend(b"\x8a\x02\x01\x02\x8b\x03\x00\x00\x00\x01\x02\x03"); // LONG1 LONG4
        p.extend(b"T\x02\x00\x00\x00abU\x01c"); // BINSTRING SHORT_BINSTRING
        // BINBYTES SHORT_BINBYTES BINBYTES8
        p.extend(b"B\x02\x00\x00\x00deC\x01f\x8e\x01\x00\x00\x00\x00\x00\x00\x00g");
        p.extend(b"\x96\x01\x00\x00\x00\x00\x00\x00\x00h"); // BYTEARRAY8
        // SHORT_BINUNICODE BINUNICODE BINUNICODE8
        p.extend(b"\x8c\x01iX\x01\x00\x00\x00j\x8d\x01\x00\x00\x00\x00\x00\x00\x00k");
        p.extend(b"N\x88\x89"); // NONE NEWTRUE NEWFALSE
        p.extend(b"p0\nq\x01r\x02\x00\x00\x00\x94"); // PUT BINPUT LONG_BINPUT MEMOIZE
        p.extend(b"g0\nh\x01j\x02\x00\x00\x00"); // GET BINGET LONG_BINGET
        p.extend(b"\x82\x01\x83\x01\x00\x84\x01\x00\x00\x00"); // EXT1 EXT2 EXT4
        p.extend(b"\x97\x98"); // NEXT_BUFFER READONLY_BUFFER
        p.extend(b"t"); // TUPLE
        p.extend(b"]K\x01a(K\x02K\x03e"); // EMPTY_LIST APPEND MARK APPENDS
        p.extend(b"(K\x04l0"); // MARK LIST POP
        p.extend(b")\x85\x86K\x05\x87"); // EMPTY_TUPLE TUPLE1 TUPLE2 TUPLE3
        p.extend(b"}K\x01K\x02s(K\x03K\x04u"); // EMPTY_DICT SETITEM MARK SETITEMS
        p.extend(b"(K\x05K\x06d0"); // MARK DICT POP
        p.extend(b"\x8f(K\x01\x90(K\x02\x91\x86"); // EMPTY_SET MARK ADDITEMS MARK FROZENSET TUPLE2
        p.extend(b"20(1"); // DUP POP MARK POP_MARK
        p.extend(b"(K\x01imod\nname\n"); // MARK INST
        p.extend(b"(cmod\nname\noK\x00b"); // MARK GLOBAL OBJ BUILD
        p.extend(b"\x8c\x01m\x8c\x01n\x93)\x81"); // STACK_GLOBAL EMPTY_TUPLE NEWOBJ
        p.extend(b"\x8c\x01m\x8c\x01n\x93)}\x92"); // NEWOBJ_EX
        p.extend(b"R"); // REDUCE
        p.extend(b"Pkey\nK\x00Q\x86"); // PERSID BINPERSID TUPLE2
        p.extend(b"(0"); // MARK POP (of the mark)
        p.extend(b"."); // STOP
        p
    }

    #[test]
    fn every_opcode_has_its_argument_length() {
        let bytes = every_opcode();
        assert_eq!(bytes.len(), 275);
        let facts = scan_ok(&bytes);
        assert_eq!(facts.bytes, bytes.len() as u64);
        assert_eq!(facts.opcodes, 107);
        assert_eq!(facts.persistent_ids, 2);
    }

    #[test]
    fn every_prefix_of_a_valid_pickle_is_malformed() {
        let mut pickles = vec![every_opcode(), PROTOCOL_0.to_vec(), PROTOCOL_2.to_vec(), PROTOCOL_4.to_vec()];
        pickles.push(Pickle::default().state_dict(&[("w", 3), ("b", 2)]).0);
        for bytes in &pickles {
            assert!(scan(bytes, &limits()).is_ok());
            for n in 0..bytes.len() {
                let prefix = &bytes[..n];
                assert!(is_malformed(scan(prefix, &limits())), "prefix of {n} bytes");
            }
        }
    }

    #[test]
    fn unknown_opcodes_are_malformed() {
        // The 68 opcodes of protocols 0 to 5; every other byte is refused as an opcode.
        let listed =
            |code: u8| (0x80..=0x98).contains(&code) || b"(.012FIJKLMNPQRSTUVXabcdeghijlopqrstu})]GBC".contains(&code);
        assert_eq!((0..=255u8).filter(|&code| listed(code)).count(), 68);
        for code in 0..=255u8 {
            let result = scan(&[0x80, 0x02, code, b'.'], &limits());
            let unknown = matches!(&result, Err(PickleProblem::Malformed(reason)) if reason.contains("unknown"));
            assert_eq!(unknown, !listed(code), "opcode 0x{code:02x}: {result:?}");
        }
        assert!(is_malformed(scan(b"\x80\x02\xff.", &limits())));
        // PROTO above 5.
        assert!(is_malformed(scan(b"\x80\x06N.", &limits())));
    }

    #[test]
    fn huge_declared_lengths_are_malformed_without_allocating() {
        let cases: [&[u8]; 9] = [
            b"\x80\x02X\xff\xff\xff\xffabc.",
            b"\x80\x02B\xff\xff\xff\xffabc.",
            b"\x80\x04\x8d\xff\xff\xff\xff\xff\xff\xff\xffabc.",
            b"\x80\x04\x8e\xff\xff\xff\xff\xff\xff\xff\x7fabc.",
            b"\x80\x05\x96\x00\x00\x00\x00\x00\x00\x01\x00abc.",
            b"\x80\x02T\xff\xff\xff\xffabc.", // negative BINSTRING length
            b"\x80\x02T\xff\xff\xff\x7fabc.",
            b"\x80\x02\x8b\xfe\xff\xff\xffabc.", // negative LONG4 length
            b"\x80\x04\x95\xff\xff\xff\xff\xff\xff\xff\xffN.",
        ];
        for bytes in cases {
            assert!(is_malformed(scan(bytes, &limits())), "{bytes:?}");
        }
    }

    #[test]
    fn frames_are_walked_inside() {
        // pickle.dumps({'a': 1}, protocol=4).
        let bytes = b"\x80\x04\x95\n\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01a\x94K\x01s.";
        let facts = scan_ok(bytes);
        assert_eq!((facts.opcodes, facts.depth), (9, 1));
        // A frame longer than the rest of the pickle.
        let bytes = b"\x80\x04\x95\x0b\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01a\x94K\x01s.";
        assert!(is_malformed(scan(bytes, &limits())));
        // Frames that run back to back, and an empty one.
        let bytes = b"\x80\x04\x95\x02\x00\x00\x00\x00\x00\x00\x00]\x94\x95\x00\x00\x00\x00\x00\x00\x00\x00\
\x95\x01\x00\x00\x00\x00\x00\x00\x00.";
        assert_eq!(scan_ok(bytes).opcodes, 7);
    }

    /// `levels` lists nested in one another, innermost holding 1: `[[[...[1]...]]]`.
    fn nested_lists_with_marks(levels: usize) -> Vec<u8> {
        let mut p = b"\x80\x02".to_vec();
        p.extend(b"](".repeat(levels));
        p.extend(b"K\x01");
        p.extend(b"e".repeat(levels));
        p.push(b'.');
        p
    }

    /// The same, as Python's pickler writes single-item lists: EMPTY_LIST and a memo put per
    /// level, then one APPEND per level (byte for byte what `pickle.dumps(l, protocol=2)` gives).
    fn nested_lists_as_pickled(levels: usize) -> Vec<u8> {
        let mut p = b"\x80\x02".to_vec();
        for i in 0..levels {
            p.push(b']');
            if i < 256 {
                p.extend([b'q', i as u8]);
            } else {
                p.push(b'r');
                p.extend((i as u32).to_le_bytes());
            }
        }
        p.extend(b"K\x01");
        p.extend(b"a".repeat(levels));
        p.push(b'.');
        p
    }

    #[test]
    fn deep_nesting_is_too_deep() {
        let strict = PickleLimits { max_depth: 100, ..limits() };
        for bytes in [nested_lists_with_marks(2000), nested_lists_as_pickled(2000)] {
            assert_eq!(scan(&bytes, &strict), Err(PickleProblem::TooDeep { depth: 101, limit: 100 }));
            assert_eq!(scan_ok(&bytes).depth, 2000);
        }
        // Tuples nested bottom-up, and dicts nested through SETITEM.
        let mut tuples = b"\x80\x02K\x01".to_vec();
        tuples.extend([op::TUPLE1].repeat(2000));
        tuples.push(b'.');
        assert_eq!(scan_ok(&tuples).depth, 2000);
        let mut dicts = b"\x80\x02".to_vec();
        dicts.extend(b"}X\x01\x00\x00\x00k".repeat(2000));
        dicts.extend(b"K\x01");
        dicts.extend(b"s".repeat(2000));
        dicts.push(b'.');
        assert_eq!(scan_ok(&dicts).depth, 2000);
        // A deep child followed by more than the window's worth of siblings still nests.
        let mut wide = b"\x80\x02".to_vec();
        wide.extend(b"](".repeat(50));
        wide.extend(b"K\x00".repeat(100));
        wide.extend(b"e".repeat(50));
        wide.push(b'.');
        assert_eq!(scan_ok(&wide).depth, 50);
    }

    #[test]
    fn a_wide_pickle_is_shallow() {
        // A list of 5000 lists of 3 ints, and a dict of 3000 entries each holding a 1-item dict.
        let mut list = b"\x80\x02](".to_vec();
        list.extend(b"](K\x01K\x02K\x03e".repeat(5000));
        list.extend(b"e.");
        assert_eq!(scan_ok(&list).depth, 2);
        let mut dict = b"\x80\x02}(".to_vec();
        dict.extend(b"X\x01\x00\x00\x00k}X\x07\x00\x00\x00versionK\x01s".repeat(3000));
        dict.extend(b"u.");
        assert_eq!(scan_ok(&dict).depth, 2);
        // Empty lists side by side.
        let mut empties = b"\x80\x02](".to_vec();
        empties.extend(b"]".repeat(5000));
        empties.extend(b"e.");
        assert_eq!(scan_ok(&empties).depth, 2);
    }

    #[test]
    fn persistent_ids_are_counted() {
        let bytes = Pickle::default().state_dict(&[("a", 1), ("b", 2), ("c", 3)]).0;
        let facts = scan_ok(&bytes);
        assert_eq!(facts.persistent_ids, 3);
        assert_eq!(facts.depth, 3);
        let few = PickleLimits { max_tensors: 2, ..limits() };
        assert_eq!(scan(&bytes, &few), Err(PickleProblem::TooManyTensors { count: 3, limit: 2 }));
        let exact = PickleLimits { max_tensors: 3, ..limits() };
        assert!(scan(&bytes, &exact).is_ok());
        // Protocol 0's PERSID.
        let bytes = b"(lp0\nP0\naP1\naPstorage 2\na.";
        assert_eq!(scan_ok(bytes).persistent_ids, 3);
    }

    #[test]
    fn scan_refuses_a_pickle_longer_than_max_bytes() {
        let bytes = Pickle::default().state_dict(&[("a", 1)]).0;
        let len = bytes.len() as u64;
        let at = |max_bytes| scan(&bytes, &PickleLimits { max_bytes, ..limits() });
        assert!(at(len).is_ok());
        assert_eq!(at(len - 1), Err(PickleProblem::TooLarge { bytes: len, limit: len - 1 }));
        assert_eq!(at(0), Err(PickleProblem::TooLarge { bytes: len, limit: 0 }));
    }

    #[test]
    fn stack_errors_it_sees_are_malformed() {
        for bytes in [&b"\x80\x02(a."[..], b"\x80\x02e.", b"\x80\x02K\x01t.", b"\x80\x02(\x85.", b"\x80\x02(q\x00."] {
            assert!(is_malformed(scan(bytes, &limits())), "{bytes:?}");
        }
    }

    #[test]
    fn hostile_bytes_never_panic() {
        // A cheap deterministic fuzz: random bytes, and valid pickles with random bytes changed.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let seeds = [every_opcode(), PROTOCOL_0.to_vec(), PROTOCOL_4.to_vec(), nested_lists_with_marks(40)];
        let tight = PickleLimits { max_bytes: 200, max_depth: 30, max_tensors: 1 };
        for round in 0..20_000 {
            let mut bytes = seeds[round % seeds.len()].clone();
            if round % 5 == 0 {
                let len = (next() % 64) as usize;
                bytes = (0..len).map(|_| next() as u8).collect();
            } else {
                for _ in 0..=(next() % 4) {
                    let i = (next() as usize) % bytes.len();
                    bytes[i] = next() as u8;
                }
            }
            let _ = scan(&bytes, &limits());
            let _ = scan(&bytes, &tight);
        }
    }

    // ----- check_pth -------------------------------------------------------------------------

    #[test]
    fn zip_checkpoints_are_checked_before_and_after_reading_data_pkl() {
        let pickle = Pickle::default().state_dict(&[("w", 3), ("b", 2)]).0;
        let storage = [0u8; 12];
        for deflated in [false, true] {
            let tag = if deflated { "zip_deflated.pth" } else { "zip_stored.pth" };
            let path = write_zip(
                tag,
                &[
                    ("archive/data.pkl", &pickle, deflated),
                    ("archive/byteorder", b"little", false),
                    ("archive/data/0", &storage, false),
                    ("archive/data/1", &storage[..8], false),
                    ("archive/version", b"3\n", false),
                ],
            );
            // Burn's reader reads the file written here, with the same count of tensors.
            let reader = burn::store::pytorch_reader::PytorchReader::new(&path).unwrap();
            assert_eq!(reader.len(), 2);

            let facts = check_pth(&path, &limits()).unwrap();
            let len = pickle.len() as u64;
            let opcodes = scan_ok(&pickle).opcodes;
            assert_eq!(facts, PickleFacts { bytes: len, depth: 3, persistent_ids: 2, opcodes });
            let small = PickleLimits { max_bytes: len - 1, ..limits() };
            assert_eq!(check_pth(&path, &small), Err(PickleProblem::TooLarge { bytes: len, limit: len - 1 }));
            let one = PickleLimits { max_tensors: 1, ..limits() };
            assert_eq!(check_pth(&path, &one), Err(PickleProblem::TooManyTensors { count: 2, limit: 1 }));
            let shallow = PickleLimits { max_depth: 2, ..limits() };
            assert_eq!(check_pth(&path, &shallow), Err(PickleProblem::TooDeep { depth: 3, limit: 2 }));
            std::fs::remove_file(&path).unwrap();
        }
    }

    #[test]
    fn zip_data_pkl_is_found_as_burn_finds_it() {
        // At the archive's top level, and the shortest prefix wins over a nested one.
        let pickle = Pickle::default().state_dict(&[("w", 1)]).0;
        let deep = nested_lists_with_marks(30);
        let path = write_zip(
            "zip_roots.pth",
            &[("x/y/data.pkl", &deep, false), ("data.pkl", &pickle, false), ("data/0", &[0u8; 4], false)],
        );
        assert_eq!(check_pth(&path, &limits()).unwrap().persistent_ids, 1);
        std::fs::remove_file(&path).unwrap();
        // A name that merely ends in data.pkl is not an entry Burn reads.
        let path = write_zip("zip_lookalike.pth", &[("archive/mydata.pkl", &pickle, false)]);
        assert!(matches!(check_pth(&path, &limits()), Err(PickleProblem::Malformed(_))));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn zip_without_data_pkl_or_with_a_bad_one_is_malformed() {
        let entries: [(&str, &[u8], bool); 2] =
            [("archive/data/0", &[0u8; 4], false), ("archive/version", b"3", false)];
        let path = write_zip("zip_no_pickle.pth", &entries);
        let Err(PickleProblem::Malformed(reason)) = check_pth(&path, &limits()) else { panic!("not malformed") };
        assert!(reason.contains("data.pkl"), "{reason}");
        std::fs::remove_file(&path).unwrap();

        let pickle = Pickle::default().state_dict(&[("w", 1)]).0;
        let truncated = &pickle[..pickle.len() - 1];
        let path = write_zip("zip_truncated.pth", &[("archive/data.pkl", truncated, false)]);
        assert!(matches!(check_pth(&path, &limits()), Err(PickleProblem::Malformed(_))));
        std::fs::remove_file(&path).unwrap();

        // An archive with no entry at all (it starts `PK\x05\x06`).
        let path = write_zip("zip_empty.pth", &[]);
        assert!(std::fs::read(&path).unwrap().starts_with(b"PK\x05\x06"));
        assert!(matches!(check_pth(&path, &limits()), Err(PickleProblem::Malformed(_))));
        std::fs::remove_file(&path).unwrap();

        // A TAR archive (PyTorch before 0.1.10) is not walked.
        let mut tar = vec![0u8; 1024];
        tar[..8].copy_from_slice(b"sys_info");
        tar[257..262].copy_from_slice(b"ustar");
        let path = temp_path("tar.pth");
        std::fs::write(&path, &tar).unwrap();
        assert!(matches!(check_pth(&path, &limits()), Err(PickleProblem::Malformed(r)) if r.contains("TAR")));
        std::fs::remove_file(&path).unwrap();

        // Bytes that start like a ZIP but are not one.
        let path = temp_path("not_a_zip.pth");
        std::fs::write(&path, b"PK\x03\x04 and nothing else").unwrap();
        assert!(matches!(check_pth(&path, &limits()), Err(PickleProblem::Malformed(_))));
        std::fs::remove_file(&path).unwrap();

        let missing = temp_path("missing.pth");
        assert!(matches!(check_pth(&missing, &limits()), Err(PickleProblem::Malformed(_))));
    }

    /// A legacy (`_use_new_zipfile_serialization=False`) checkpoint of 1-D float32 tensors, laid
    /// out as `torch.save` writes one: the five pickles, then each storage as an i64 element
    /// count and its bytes. Returns the file and the length of its pickles.
    fn legacy_file(tag: &str, tensors: &[(&str, u8)]) -> (PathBuf, u64) {
        let magic = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.";
        let protocol = b"\x80\x02M\xe9\x03.";
        let sys_info = Pickle::default()
            .proto(2)
            .op(op::EMPTY_DICT)
            .op(op::MARK)
            .str("protocol_version")
            .ops(b"M\xe9\x03")
            .str("little_endian")
            .op(op::NEWTRUE)
            .str("type_sizes")
            .op(op::EMPTY_DICT)
            .op(op::MARK)
            .str("short")
            .int(2)
            .str("int")
            .int(4)
            .str("long")
            .int(4)
            .op(op::SETITEMS)
            .op(op::SETITEMS)
            .op(op::STOP)
            .0;
        let main = Pickle::default().state_dict(tensors).0;
        let mut keys = Pickle::default().proto(2).op(op::EMPTY_LIST).op(op::MARK);
        for i in 0..tensors.len() {
            keys = keys.str(&i.to_string());
        }
        let keys = keys.op(op::APPENDS).op(op::STOP).0;
        let mut file = Vec::new();
        for part in [&magic[..], protocol, &sys_info, &main, &keys] {
            file.extend_from_slice(part);
        }
        let pickles = file.len() as u64;
        for (_, numel) in tensors {
            file.extend(i64::from(*numel).to_le_bytes());
            file.extend(vec![0u8; 4 * usize::from(*numel)]);
        }
        let path = temp_path(tag);
        std::fs::write(&path, &file).unwrap();
        (path, pickles)
    }

    #[test]
    fn legacy_checkpoints_walk_their_five_pickles() {
        let (path, pickles) = legacy_file("legacy.pt", &[("w", 3), ("b", 2), ("c", 1)]);
        let reader = burn::store::pytorch_reader::PytorchReader::new(&path).unwrap();
        assert_eq!(reader.len(), 3);
        let facts = check_pth(&path, &limits()).unwrap();
        assert_eq!((facts.bytes, facts.depth, facts.persistent_ids), (pickles, 3, 3));

        // The pickles end within max_bytes exactly; one byte less and they do not.
        let file_len = std::fs::metadata(&path).unwrap().len();
        assert!(check_pth(&path, &PickleLimits { max_bytes: pickles, ..limits() }).is_ok());
        assert_eq!(
            check_pth(&path, &PickleLimits { max_bytes: pickles - 1, ..limits() }),
            Err(PickleProblem::TooLarge { bytes: file_len, limit: pickles - 1 })
        );
        assert_eq!(
            check_pth(&path, &PickleLimits { max_tensors: 2, ..limits() }),
            Err(PickleProblem::TooManyTensors { count: 3, limit: 2 })
        );
        std::fs::remove_file(&path).unwrap();

        // A legacy file cut inside its pickles.
        let (path, pickles) = legacy_file("legacy_cut.pt", &[("w", 3)]);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..pickles as usize - 1]).unwrap();
        assert!(matches!(check_pth(&path, &limits()), Err(PickleProblem::Malformed(_))));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn plain_pickle_files_are_one_pickle() {
        let pickle = Pickle::default().state_dict(&[("w", 3)]).0;
        let path = temp_path("plain.pkl");
        std::fs::write(&path, &pickle).unwrap();
        let facts = check_pth(&path, &limits()).unwrap();
        assert_eq!((facts.bytes, facts.persistent_ids), (pickle.len() as u64, 1));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_long_legacy_pickle_is_read_in_chunks() {
        // A plain pickle larger than the first chunk: a list of 300 000 ints.
        let mut pickle = b"\x80\x02](".to_vec();
        pickle.extend(b"J\x01\x02\x03\x04".repeat(300_000));
        pickle.extend(b"e.");
        assert!(pickle.len() as u64 > FIRST_CHUNK);
        let path = temp_path("plain_long.pkl");
        std::fs::write(&path, &pickle).unwrap();
        let facts = check_pth(&path, &limits()).unwrap();
        assert_eq!((facts.bytes, facts.depth, facts.opcodes), (pickle.len() as u64, 1, 300_005));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn committed_fixtures_pass_with_their_tensor_counts() {
        for (name, bytes) in [("tiny_swin_fp16.pth", 19_875), ("tiny_clip_fp16.pth", 19_877)] {
            let path = fixture(name);
            let facts = check_pth(&path, &limits()).unwrap();
            // One persistent id per tensor in the file; here every tensor has a storage of its
            // own, so this is also the count of `data/` entries.
            let reader = burn::store::pytorch_reader::PytorchReader::new(&path).unwrap();
            assert_eq!(facts.persistent_ids, reader.len(), "{name}");
            assert_eq!(facts.persistent_ids, 160, "{name}");
            assert_eq!(facts.bytes, bytes, "{name}");
            assert_eq!(facts.opcodes, 4955, "{name}");
            assert!(facts.depth < 20, "{name}: depth {}", facts.depth);
            assert_eq!(facts.depth, 4, "{name}");
        }
    }
}
