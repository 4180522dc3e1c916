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
//! Entries are STORED (uncompressed) and each entry's data starts on a 64-byte boundary (padding
//! in a local-header extra field with id `FB`, as PyTorch's writer does), so PyTorch can mmap
//! the file. ZIP64 records are written when an offset or size passes 4 GiB.

use std::io::{self, Write};
use std::path::Path;

use burn::tensor::DType;

/// One tensor to store: its key, dtype, shape and little-endian contiguous bytes.
pub(crate) struct Entry<'a> {
    pub name: &'a str,
    pub dtype: DType,
    pub shape: &'a [usize],
    pub bytes: &'a [u8],
}

/// Data alignment inside the archive (PyTorch's `.storage_alignment`).
const ALIGN: u64 = 64;
/// Largest value a 32-bit ZIP field holds before ZIP64 takes over.
const ZIP32_LIMIT: u64 = 0xFFFF_FFFF;

/// Writes `entries` to `path` as a PyTorch checkpoint `{"model": OrderedDict(...)}` whose
/// top-level archive folder is `archive`.
pub(crate) fn write(path: &Path, archive: &str, entries: &[Entry<'_>]) -> io::Result<()> {
    write_with_limit(path, archive, entries, ZIP32_LIMIT)
}

/// [`write`], with values `>= zip64_limit` stored through ZIP64 records (a small limit lets the
/// tests exercise the ZIP64 path without writing 4 GiB).
fn write_with_limit(path: &Path, archive: &str, entries: &[Entry<'_>], zip64_limit: u64) -> io::Result<()> {
    let pickle = pickle_state_dict(entries)?;
    let file = std::fs::File::create(path)?;
    let mut zip = ZipWriter::new(io::BufWriter::with_capacity(1 << 20, file), zip64_limit);
    zip.entry(&format!("{archive}/data.pkl"), &pickle)?;
    zip.entry(&format!("{archive}/.format_version"), b"1")?;
    zip.entry(&format!("{archive}/.storage_alignment"), ALIGN.to_string().as_bytes())?;
    zip.entry(&format!("{archive}/byteorder"), b"little")?;
    for (key, e) in entries.iter().enumerate() {
        zip.entry(&format!("{archive}/data/{key}"), e.bytes)?;
    }
    zip.entry(&format!("{archive}/version"), b"3\n")?;
    zip.entry(&format!("{archive}/.data/serialization_id"), serialization_id().as_bytes())?;
    let file = zip.finish()?.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()
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

// ---------------------------------------------------------------------------------------------
// Zip (STORED entries, 64-byte aligned data, ZIP64 when needed)

const LOCAL_HEADER: u32 = 0x0403_4b50;
const CENTRAL_HEADER: u32 = 0x0201_4b50;
const END_OF_CENTRAL: u32 = 0x0605_4b50;
const ZIP64_END_OF_CENTRAL: u32 = 0x0606_4b50;
const ZIP64_LOCATOR: u32 = 0x0706_4b50;
/// DOS date 1980-01-01 (time 00:00): a fixed stamp keeps output reproducible.
const DOS_DATE: u16 = (1 << 5) | 1;

struct CentralRecord {
    name: String,
    crc: u32,
    size: u64,
    offset: u64,
}

struct ZipWriter<W: Write> {
    out: W,
    pos: u64,
    records: Vec<CentralRecord>,
    limit: u64,
}

impl<W: Write> ZipWriter<W> {
    fn new(out: W, limit: u64) -> Self {
        Self { out, pos: 0, records: Vec::new(), limit }
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    fn entry(&mut self, name: &str, data: &[u8]) -> io::Result<()> {
        let size = data.len() as u64;
        let crc = crc32(data);
        let offset = self.pos;
        let big = size >= self.limit;
        let mut extra = Vec::new();
        if big {
            extra.extend_from_slice(&1u16.to_le_bytes());
            extra.extend_from_slice(&16u16.to_le_bytes());
            extra.extend_from_slice(&size.to_le_bytes());
            extra.extend_from_slice(&size.to_le_bytes());
        }
        // Padding field "FB" so that the data starts on an ALIGN boundary.
        let unpadded = offset + 30 + name.len() as u64 + extra.len() as u64 + 4;
        let pad = ((ALIGN - unpadded % ALIGN) % ALIGN) as usize;
        extra.extend_from_slice(b"FB");
        extra.extend_from_slice(&(pad as u16).to_le_bytes());
        extra.resize(extra.len() + pad, b'Z');

        let mut h = Vec::with_capacity(30 + name.len() + extra.len());
        h.extend_from_slice(&LOCAL_HEADER.to_le_bytes());
        h.extend_from_slice(&(if big { 45u16 } else { 20u16 }).to_le_bytes()); // version needed
        h.extend_from_slice(&0u16.to_le_bytes()); // flags
        h.extend_from_slice(&0u16.to_le_bytes()); // STORED
        h.extend_from_slice(&0u16.to_le_bytes()); // time
        h.extend_from_slice(&DOS_DATE.to_le_bytes());
        h.extend_from_slice(&crc.to_le_bytes());
        let size32 = if big { u32::MAX } else { size as u32 };
        h.extend_from_slice(&size32.to_le_bytes()); // compressed
        h.extend_from_slice(&size32.to_le_bytes()); // uncompressed
        h.extend_from_slice(&(name.len() as u16).to_le_bytes());
        h.extend_from_slice(&(extra.len() as u16).to_le_bytes());
        h.extend_from_slice(name.as_bytes());
        h.extend_from_slice(&extra);
        self.put(&h)?;
        debug_assert_eq!(self.pos % ALIGN, 0);
        self.put(data)?;
        self.records.push(CentralRecord { name: name.to_string(), crc, size, offset });
        Ok(())
    }

    fn finish(mut self) -> io::Result<W> {
        let cd_start = self.pos;
        let records = std::mem::take(&mut self.records);
        for r in &records {
            let big_size = r.size >= self.limit;
            let big_offset = r.offset >= self.limit;
            let mut extra = Vec::new();
            if big_size || big_offset {
                let mut fields = Vec::new();
                if big_size {
                    fields.extend_from_slice(&r.size.to_le_bytes());
                    fields.extend_from_slice(&r.size.to_le_bytes());
                }
                if big_offset {
                    fields.extend_from_slice(&r.offset.to_le_bytes());
                }
                extra.extend_from_slice(&1u16.to_le_bytes());
                extra.extend_from_slice(&(fields.len() as u16).to_le_bytes());
                extra.extend_from_slice(&fields);
            }
            let version: u16 = if extra.is_empty() { 20 } else { 45 };
            let size32 = if big_size { u32::MAX } else { r.size as u32 };
            let offset32 = if big_offset { u32::MAX } else { r.offset as u32 };
            let mut h = Vec::with_capacity(46 + r.name.len() + extra.len());
            h.extend_from_slice(&CENTRAL_HEADER.to_le_bytes());
            h.extend_from_slice(&version.to_le_bytes()); // made by
            h.extend_from_slice(&version.to_le_bytes()); // needed
            h.extend_from_slice(&0u16.to_le_bytes()); // flags
            h.extend_from_slice(&0u16.to_le_bytes()); // STORED
            h.extend_from_slice(&0u16.to_le_bytes()); // time
            h.extend_from_slice(&DOS_DATE.to_le_bytes());
            h.extend_from_slice(&r.crc.to_le_bytes());
            h.extend_from_slice(&size32.to_le_bytes());
            h.extend_from_slice(&size32.to_le_bytes());
            h.extend_from_slice(&(r.name.len() as u16).to_le_bytes());
            h.extend_from_slice(&(extra.len() as u16).to_le_bytes());
            h.extend_from_slice(&0u16.to_le_bytes()); // comment
            h.extend_from_slice(&0u16.to_le_bytes()); // disk
            h.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
            h.extend_from_slice(&0u32.to_le_bytes()); // external attributes
            h.extend_from_slice(&offset32.to_le_bytes());
            h.extend_from_slice(r.name.as_bytes());
            h.extend_from_slice(&extra);
            self.put(&h)?;
        }
        let cd_size = self.pos - cd_start;
        let count = records.len() as u64;
        let count_limit = self.limit.min(0xFFFF);
        if count >= count_limit || cd_size >= self.limit || cd_start >= self.limit {
            let zip64_end = self.pos;
            let mut h = Vec::with_capacity(56 + 20);
            h.extend_from_slice(&ZIP64_END_OF_CENTRAL.to_le_bytes());
            h.extend_from_slice(&44u64.to_le_bytes());
            h.extend_from_slice(&45u16.to_le_bytes());
            h.extend_from_slice(&45u16.to_le_bytes());
            h.extend_from_slice(&0u32.to_le_bytes());
            h.extend_from_slice(&0u32.to_le_bytes());
            h.extend_from_slice(&count.to_le_bytes());
            h.extend_from_slice(&count.to_le_bytes());
            h.extend_from_slice(&cd_size.to_le_bytes());
            h.extend_from_slice(&cd_start.to_le_bytes());
            h.extend_from_slice(&ZIP64_LOCATOR.to_le_bytes());
            h.extend_from_slice(&0u32.to_le_bytes());
            h.extend_from_slice(&zip64_end.to_le_bytes());
            h.extend_from_slice(&1u32.to_le_bytes());
            self.put(&h)?;
        }
        let count16 = if count >= count_limit { u16::MAX } else { count as u16 };
        let clamp = |v: u64| if v >= self.limit { u32::MAX } else { v as u32 };
        let mut h = Vec::with_capacity(22);
        h.extend_from_slice(&END_OF_CENTRAL.to_le_bytes());
        h.extend_from_slice(&0u16.to_le_bytes());
        h.extend_from_slice(&0u16.to_le_bytes());
        h.extend_from_slice(&count16.to_le_bytes());
        h.extend_from_slice(&count16.to_le_bytes());
        h.extend_from_slice(&clamp(cd_size).to_le_bytes());
        h.extend_from_slice(&clamp(cd_start).to_le_bytes());
        h.extend_from_slice(&0u16.to_le_bytes());
        self.put(&h)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// CRC-32 (IEEE, reflected, as zip uses), slicing by 8.
fn crc32(data: &[u8]) -> u32 {
    static TABLES: [[u32; 256]; 8] = crc_tables();
    let mut crc = !0u32;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let lo = crc ^ u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        let hi = u32::from_le_bytes([c[4], c[5], c[6], c[7]]);
        crc = TABLES[7][(lo & 0xFF) as usize]
            ^ TABLES[6][((lo >> 8) & 0xFF) as usize]
            ^ TABLES[5][((lo >> 16) & 0xFF) as usize]
            ^ TABLES[4][(lo >> 24) as usize]
            ^ TABLES[3][(hi & 0xFF) as usize]
            ^ TABLES[2][((hi >> 8) & 0xFF) as usize]
            ^ TABLES[1][((hi >> 16) & 0xFF) as usize]
            ^ TABLES[0][(hi >> 24) as usize];
    }
    for &b in chunks.remainder() {
        crc = TABLES[0][((crc ^ b as u32) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

const fn crc_tables() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 == 1 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut s = 1;
    while s < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[s - 1][i];
            t[s][i] = (prev >> 8) ^ t[0][(prev & 0xFF) as usize];
            i += 1;
        }
        s += 1;
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
        let long: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
        let bytewise = {
            let mut crc = !0u32;
            for &b in &long {
                crc ^= b as u32;
                for _ in 0..8 {
                    crc = if crc & 1 == 1 { 0xEDB8_8320 ^ (crc >> 1) } else { crc >> 1 };
                }
            }
            !crc
        };
        assert_eq!(crc32(&long), bytewise);
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
        for (tag, limit) in [("plain", ZIP32_LIMIT), ("zip64", 0)] {
            let path = std::env::temp_dir().join(format!("florence-pth-unit-{tag}-{}.pth", std::process::id()));
            write_with_limit(&path, "unit", &entries, limit).unwrap();
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
