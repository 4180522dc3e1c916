//! Writing PyTorch's zip checkpoint container, as `torch.save({"model": state_dict}, path)` does.
//!
//! The archive holds, under one top-level folder named after the file:
//!
//! - `data.pkl`: a protocol-2 pickle of `{"model": OrderedDict(name -> tensor)}`, each tensor
//!   pickled as `torch._utils._rebuild_tensor_v2(storage, 0, shape, stride, False,
//!   OrderedDict())` with the storage a persistent id `('storage', torch.HalfStorage, key,
//!   'cpu', numel)`. Only globals that `torch.load(weights_only=True)` allows are used.
//! - `data/<key>`: each storage's raw little-endian bytes, one storage per tensor, contiguous.
//! - `.format_version` (`1`), `.storage_alignment` (`64`), `byteorder` (`little`), `version`
//!   (`3\n`) and `.data/serialization_id`, as PyTorch 2.x writes them.
//!
//! Entries are STORED (uncompressed) and each entry's data starts on a 64-byte boundary, so
//! PyTorch can mmap the file. The container is the `zip` crate's: the padding is a local-header
//! extra field with PyTorch's id `FB` (its writer's; zip fills it with the alignment and zeros,
//! where PyTorch writes `Z`s, which no reader looks at), and ZIP64 records are written when a
//! size or offset passes 4 GiB. Only the pickle is hand-written: no crate emits the persistent
//! ids that PyTorch's storages are.

use std::io::{self, Seek, Write};
use std::path::Path;

use burn::tensor::DType;
use zip::write::SimpleFileOptions;

/// One tensor to store: its key, dtype, shape and little-endian contiguous bytes.
pub(crate) struct Entry<'a> {
    pub name: &'a str,
    pub dtype: DType,
    pub shape: &'a [usize],
    pub bytes: &'a [u8],
}

/// Data alignment inside the archive (PyTorch's `.storage_alignment`).
const ALIGN: u16 = 64;
/// The extra-field id of PyTorch's alignment padding: `FB` as it appears in the file.
const PADDING_ID: u16 = u16::from_le_bytes(*b"FB");
/// Largest value a 32-bit ZIP field holds before ZIP64 takes over.
const ZIP32_LIMIT: u64 = 0xFFFF_FFFF;

/// Writes `entries` into `out`, an empty file or buffer (the archive's offsets, and the alignment,
/// count from its start), as a PyTorch checkpoint `{"model": OrderedDict(...)}` whose top-level
/// archive folder is `archive`, and returns it flushed; `files::write_atomic(path, |f|
/// write_to(f, ..).map(drop))` writes the file atomically.
pub(crate) fn write_to<W: Write + Seek>(out: W, archive: &str, entries: &[Entry<'_>]) -> io::Result<W> {
    write_zip(out, archive, entries, false)
}

/// [`write_to`]; `force_zip64` writes every ZIP64 record a file over 4 GiB would carry (per-entry
/// sizes, the ZIP64 end of central directory and its locator), so the tests exercise that path
/// without writing 4 GiB. Offsets over 4 GiB are the one ZIP64 field it cannot force.
fn write_zip<W: Write + Seek>(out: W, archive: &str, entries: &[Entry<'_>], force_zip64: bool) -> io::Result<W> {
    let pickle = pickle_state_dict(entries)?;
    let mut zip = zip::ZipWriter::new(io::BufWriter::with_capacity(1 << 20, out));
    if force_zip64 {
        // An (empty) extensible data sector makes zip write the ZIP64 end records.
        zip.set_raw_zip64_extensible_data_sector(Box::new([]));
    }
    let mut put = |name: &str, data: &[u8]| -> io::Result<()> {
        let options = SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            // 1980-01-01 00:00, a fixed stamp keeps the output reproducible.
            .last_modified_time(zip::DateTime::default())
            .with_alignment_and_header_id(ALIGN, PADDING_ID)
            .large_file(force_zip64 || data.len() as u64 >= ZIP32_LIMIT);
        zip.start_file(format!("{archive}/{name}"), options).map_err(io::Error::other)?;
        zip.write_all(data)
    };
    put("data.pkl", &pickle)?;
    put(".format_version", b"1")?;
    put(".storage_alignment", ALIGN.to_string().as_bytes())?;
    put("byteorder", b"little")?;
    for (key, e) in entries.iter().enumerate() {
        put(&format!("data/{key}"), e.bytes)?;
    }
    put("version", b"3\n")?;
    put(".data/serialization_id", serialization_id().as_bytes())?;
    let buffered = zip.finish().map_err(io::Error::other)?;
    buffered.into_inner().map_err(|e| e.into_error())
}

/// The archive folder name PyTorch would use for `path` (its file stem), restricted to
/// characters that are safe in a zip entry name.
pub(crate) fn archive_name(path: &Path) -> String {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let name: String =
        stem.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') { c } else { '_' }).collect();
    if name.is_empty() || name.chars().all(|c| c == '.') { "archive".into() } else { name }
}

/// 40 decimal digits, like PyTorch's `.data/serialization_id` (random per file).
fn serialization_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let state = std::collections::hash_map::RandomState::new();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let mut h = state.build_hasher();
    h.write_u128(nanos);
    h.write_u32(std::process::id());
    let a = h.finish();
    h.write_u64(a);
    let b = h.finish();
    format!("{a:020}{b:020}")
}

/// PyTorch's storage class for a dtype.
fn storage_class(dtype: DType) -> Option<&'static str> {
    Some(match dtype {
        DType::F64 => "DoubleStorage",
        DType::F32 => "FloatStorage",
        DType::F16 => "HalfStorage",
        DType::BF16 => "BFloat16Storage",
        DType::I64 => "LongStorage",
        DType::I32 => "IntStorage",
        DType::I16 => "ShortStorage",
        DType::I8 => "CharStorage",
        DType::U8 => "ByteStorage",
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// Pickle (protocol 2)

const PROTO: u8 = 0x80;
const EMPTY_DICT: u8 = b'}';
const EMPTY_TUPLE: u8 = b')';
const MARK: u8 = b'(';
const TUPLE: u8 = b't';
const TUPLE1: u8 = 0x85;
const TUPLE2: u8 = 0x86;
const TUPLE3: u8 = 0x87;
const GLOBAL: u8 = b'c';
const REDUCE: u8 = b'R';
const BINPERSID: u8 = b'Q';
const BINUNICODE: u8 = b'X';
const BININT1: u8 = b'K';
const BININT2: u8 = b'M';
const BININT: u8 = b'J';
const LONG1: u8 = 0x8a;
const NEWFALSE: u8 = 0x89;
const SETITEM: u8 = b's';
const SETITEMS: u8 = b'u';
const STOP: u8 = b'.';
/// Items per `SETITEMS`, as CPython's pickler batches them.
const BATCH: usize = 1000;

struct Pickler {
    out: Vec<u8>,
}

impl Pickler {
    fn op(&mut self, op: u8) {
        self.out.push(op);
    }
    fn global(&mut self, module: &str, name: &str) {
        self.out.push(GLOBAL);
        self.out.extend_from_slice(module.as_bytes());
        self.out.push(b'\n');
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(b'\n');
    }
    fn str(&mut self, s: &str) {
        self.out.push(BINUNICODE);
        self.out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.out.extend_from_slice(s.as_bytes());
    }
    fn int(&mut self, v: u64) {
        if v < 0x100 {
            self.out.extend_from_slice(&[BININT1, v as u8]);
        } else if v < 0x1_0000 {
            self.out.push(BININT2);
            self.out.extend_from_slice(&(v as u16).to_le_bytes());
        } else if v < 0x8000_0000 {
            self.out.push(BININT);
            self.out.extend_from_slice(&(v as i32).to_le_bytes());
        } else {
            // LONG1: little-endian two's complement; a ninth byte keeps the sign bit clear.
            let bytes = v.to_le_bytes();
            let n = if v >> 63 == 1 { 9 } else { 8 };
            self.out.extend_from_slice(&[LONG1, n]);
            self.out.extend_from_slice(&bytes);
            if n == 9 {
                self.out.push(0);
            }
        }
    }
    fn int_tuple(&mut self, values: &[u64]) {
        match values {
            [] => self.op(EMPTY_TUPLE),
            [a] => {
                self.int(*a);
                self.op(TUPLE1);
            }
            [a, b] => {
                self.int(*a);
                self.int(*b);
                self.op(TUPLE2);
            }
            [a, b, c] => {
                self.int(*a);
                self.int(*b);
                self.int(*c);
                self.op(TUPLE3);
            }
            _ => {
                self.op(MARK);
                for v in values {
                    self.int(*v);
                }
                self.op(TUPLE);
            }
        }
    }
    /// `collections.OrderedDict()`.
    fn empty_ordered_dict(&mut self) {
        self.global("collections", "OrderedDict");
        self.op(EMPTY_TUPLE);
        self.op(REDUCE);
    }
}

/// Contiguous (row-major) strides, as PyTorch computes them (a zero-size dim counts as 1).
fn contiguous_strides(shape: &[usize]) -> Vec<u64> {
    let mut strides = vec![0u64; shape.len()];
    let mut acc = 1u64;
    for (s, &d) in strides.iter_mut().zip(shape).rev() {
        *s = acc;
        acc = acc.saturating_mul(d.max(1) as u64);
    }
    strides
}

/// `data.pkl` for `{"model": OrderedDict(name -> tensor)}`; storage keys are entry positions.
fn pickle_state_dict(entries: &[Entry<'_>]) -> io::Result<Vec<u8>> {
    let mut p = Pickler { out: Vec::with_capacity(128 + entries.len() * 200) };
    p.out.extend_from_slice(&[PROTO, 2]);
    p.op(EMPTY_DICT);
    p.str("model");
    p.empty_ordered_dict();
    for (batch_start, batch) in entries.chunks(BATCH).enumerate().map(|(i, b)| (i * BATCH, b)) {
        p.op(MARK);
        for (i, e) in batch.iter().enumerate() {
            let key = batch_start + i;
            let class = storage_class(e.dtype).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{}: no PyTorch storage for dtype {:?}", e.name, e.dtype),
                )
            })?;
            let numel: usize = e.shape.iter().product();
            if numel * e.dtype.size() != e.bytes.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{}: {} bytes for shape {:?} of {:?}", e.name, e.bytes.len(), e.shape, e.dtype),
                ));
            }
            p.str(e.name);
            p.global("torch._utils", "_rebuild_tensor_v2");
            p.op(MARK);
            // persistent id ('storage', torch.XStorage, key, 'cpu', numel)
            p.op(MARK);
            p.str("storage");
            p.global("torch", class);
            p.str(&key.to_string());
            p.str("cpu");
            p.int(numel as u64);
            p.op(TUPLE);
            p.op(BINPERSID);
            p.int(0); // storage offset
            let shape: Vec<u64> = e.shape.iter().map(|&d| d as u64).collect();
            p.int_tuple(&shape);
            p.int_tuple(&contiguous_strides(e.shape));
            p.op(NEWFALSE); // requires_grad
            p.empty_ordered_dict(); // backward hooks
            p.op(TUPLE);
            p.op(REDUCE);
        }
        p.op(SETITEMS);
    }
    p.op(SETITEM);
    p.op(STOP);
    Ok(p.out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The little-endian u16 / u32 at `at`.
    fn u16_at(b: &[u8], at: usize) -> u16 {
        u16::from_le_bytes([b[at], b[at + 1]])
    }
    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
    }

    /// The container as PyTorch's reader needs it, read back from the bytes themselves: every
    /// entry STORED with the right CRC (zip checks it on reading), its data on a 64-byte
    /// boundary, padded by an `FB` field where it needs padding; with `force_zip64`, a ZIP64
    /// extra field in every local header and the ZIP64 end records, without it none of them.
    #[test]
    fn stored_aligned_entries_with_and_without_zip64() {
        let odd: Vec<u8> = (0..77u8).collect();
        let entries = [
            Entry { name: "a", dtype: DType::U8, shape: &[77], bytes: &odd },
            Entry { name: "b", dtype: DType::U8, shape: &[0], bytes: &[] },
            Entry { name: "c", dtype: DType::U8, shape: &[3], bytes: b"xyz" },
        ];
        for force in [false, true] {
            let bytes = write_zip(io::Cursor::new(Vec::new()), "an_archive", &entries, force).unwrap().into_inner();
            let mut zip = zip::ZipArchive::new(io::Cursor::new(&bytes)).unwrap();
            let names: Vec<String> = zip.file_names().map(|n| n.unwrap().into_owned()).collect();
            let expected = [
                "data.pkl",
                ".format_version",
                ".storage_alignment",
                "byteorder",
                "data/0",
                "data/1",
                "data/2",
                "version",
                ".data/serialization_id",
            ];
            for (got, want) in names.iter().zip(expected) {
                assert_eq!(*got, format!("an_archive/{want}"), "force_zip64 {force}");
            }
            assert_eq!(names.len(), 9);
            let mut padded = 0;
            for (i, name) in names.iter().enumerate() {
                let mut f = zip.by_index(i).unwrap();
                assert_eq!(f.compression(), zip::CompressionMethod::Stored, "{name}");
                let start = f.header_start() as usize;
                let mut data = Vec::new();
                io::Read::read_to_end(&mut f, &mut data).unwrap();
                assert_eq!(u32_at(&bytes, start), 0x0403_4b50);
                let (name_len, extra_len) = (u16_at(&bytes, start + 26) as usize, u16_at(&bytes, start + 28) as usize);
                let data_start = start + 30 + name_len + extra_len;
                assert_eq!(data_start % ALIGN as usize, 0, "{name}");
                assert_eq!(&bytes[data_start..data_start + data.len()], &data[..], "{name}");
                let mut ids = Vec::new();
                let mut at = start + 30 + name_len;
                while at < data_start {
                    ids.push(u16_at(&bytes, at));
                    at += 4 + u16_at(&bytes, at + 2) as usize;
                }
                assert_eq!(at, data_start, "{name}: extra fields fill the extra area");
                assert_eq!(ids.contains(&1), force, "{name}: ZIP64 extra field");
                assert!(ids.iter().all(|&id| id == 1 || id == PADDING_ID), "{name}: {ids:?}");
                padded += ids.contains(&PADDING_ID) as usize;
            }
            assert!(padded >= 8, "force_zip64 {force}: {padded} entries padded");
            let has = |sig: u32| bytes.windows(4).any(|w| w == sig.to_le_bytes());
            assert_eq!(has(0x0606_4b50) && has(0x0706_4b50), force, "ZIP64 end of central directory and locator");
        }
    }

    #[test]
    fn strides_and_ints() {
        assert_eq!(contiguous_strides(&[12, 3, 4, 4]), [48, 16, 4, 1]);
        assert_eq!(contiguous_strides(&[49, 1]), [1, 1]);
        assert_eq!(contiguous_strides(&[]), Vec::<u64>::new());
        let mut p = Pickler { out: Vec::new() };
        for v in [0, 255, 256, 65535, 65536, 0x7FFF_FFFF, 0x8000_0000, u64::MAX] {
            p.int(v);
        }
        assert_eq!(
            p.out,
            [
                &[BININT1, 0][..],
                &[BININT1, 255],
                &[BININT2, 0, 1],
                &[BININT2, 255, 255],
                &[BININT, 0, 0, 1, 0],
                &[BININT, 255, 255, 255, 127],
                &[LONG1, 8, 0, 0, 0, 128, 0, 0, 0, 0],
                &[LONG1, 9, 255, 255, 255, 255, 255, 255, 255, 255, 0],
            ]
            .concat()
        );
    }

    /// Both the plain and the ZIP64 container read back through burn's PyTorch reader.
    #[test]
    fn round_trip_through_burns_reader_with_and_without_zip64() {
        let w: Vec<u8> = (0..24u16).flat_map(|i| burn::tensor::f16::from_f32(i as f32).to_le_bytes()).collect();
        let idx: Vec<u8> = (0..4i64).flat_map(|i| i.to_le_bytes()).collect();
        let s: Vec<u8> = 2.5f32.to_le_bytes().to_vec();
        let entries = [
            Entry { name: "a.weight", dtype: DType::F16, shape: &[2, 3, 4], bytes: &w },
            Entry { name: "a.index", dtype: DType::I64, shape: &[2, 2], bytes: &idx },
            Entry { name: "logit_scale", dtype: DType::F32, shape: &[], bytes: &s },
        ];
        for (tag, force_zip64) in [("plain", false), ("zip64", true)] {
            let path = std::env::temp_dir().join(format!("florence-pth-unit-{tag}-{}.pth", std::process::id()));
            // Written as `Florence::save_pth` should write it: atomically, through the handle.
            crate::files::write_atomic(&path, |f| write_zip(f, "unit", &entries, force_zip64).map(drop)).unwrap();
            let reader = burn::store::pytorch_reader::PytorchReader::new(&path).unwrap();
            let tensors = reader.into_tensors();
            assert_eq!(tensors.len(), 3, "{tag}");
            for e in &entries {
                let t = &tensors[&format!("model.{}", e.name)];
                assert_eq!(
                    (t.shape(), format!("{:?}", t.dtype())),
                    (e.shape, format!("{:?}", e.dtype)),
                    "{tag} {}",
                    e.name
                );
                assert_eq!(t.read().unwrap(), e.bytes, "{tag} {}", e.name);
            }
            std::fs::remove_file(&path).unwrap();
        }
    }
}
