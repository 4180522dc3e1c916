//! `Florence::save_pth`: UniCL-layout PyTorch checkpoints (`torch.save({"model": state_dict})`)
//! that load back bit-for-bit, hold the same tensors as the fixtures PyTorch wrote, and fail with
//! a typed error when they cannot be written. (`scripts/reference/check_pth_writer.py` checks the
//! same files against `torch.load(weights_only=True)`.)

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::store::{ModuleSnapshot, bridge};
use burn::tensor::DType;
use common::*;
use florence::checkpoint::{Format, format};
use florence::{CheckpointError, Florence, FlorenceConfig, FlorenceError};

/// Inputs for the embeddings: (io fixture, images key, ids key).
type Inputs = (&'static str, &'static str, &'static str);

/// (fixture, preset, whether the fixture stores f16, inputs).
const FIXTURES: [(&str, &str, bool, Inputs); 3] = [
    ("tiny_swin_fp16.pth", "tiny", true, ("tiny_swin_io.safetensors", "images", "input_ids")),
    ("tiny_clip_fp16.pth", "tiny-clip", true, ("zeroshot_io.safetensors", "pixels", "prompt_ids")),
    ("tiny_coswin.safetensors", "tiny-coswin", false, ("tiny_coswin_io.safetensors", "images", "input_ids")),
];

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("florence-pth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Every parameter of the model, by Burn path, as f32 values.
fn params(m: &Florence) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    m.collect(None, None, false)
        .into_iter()
        .map(|t| {
            let name = t.name.clone();
            let d = bridge::to_data(&t).unwrap();
            (name, (d.shape().to_vec(), d.convert::<f32>().try_into_vec::<f32>().unwrap()))
        })
        .collect()
}

/// f32 -> f16 -> f32, what storing a parameter in f16 does to it.
fn through_f16(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| burn::tensor::f16::from_f32(x).to_f32()).collect()
}

/// Every tensor of a checkpoint file by its key without the `model.` wrapper:
/// (shape, dtype name, raw bytes).
fn file_tensors(path: &Path) -> BTreeMap<String, (Vec<usize>, String, Vec<u8>)> {
    let fmt = format::detect(path).unwrap();
    format::read_tensors(path, fmt)
        .unwrap()
        .into_iter()
        .map(|(k, t)| {
            let key = k.strip_prefix("model.").unwrap_or(&k).to_string();
            let d = bridge::to_data(&t).unwrap();
            (key, (t.shape.to_vec(), format!("{:?}", t.dtype), d.as_bytes().to_vec()))
        })
        .collect()
}

fn embeddings(m: &Florence, io: Inputs, dev: &Device) -> (Vec<f32>, Vec<f32>) {
    let (file, images, ids) = io;
    let io = load_fixture(file);
    let ids: Tensor<2, Int> = int(&io, ids, dev);
    let ids = ids.slice(0..3);
    let u = m.encode_image(float(&io, images, dev)).unwrap();
    let v = m.encode_text(ids).unwrap();
    (u.into_data().try_into_vec::<f32>().unwrap(), v.into_data().try_into_vec::<f32>().unwrap())
}

#[test]
fn pth_round_trip_of_every_fixture() {
    let dev = device();
    for (fixture, preset, source_f16, io) in FIXTURES {
        let config = FlorenceConfig::preset(preset).unwrap();
        let m = Florence::load(&config, fixture_path(fixture), &dev).unwrap();
        let want = params(&m);
        let (u0, v0) = embeddings(&m, io, &dev);
        let original = file_tensors(&fixture_path(fixture));
        for (tag, dtype) in [("f16", DType::F16), ("f32", DType::F32)] {
            let label = format!("{fixture} saved as {tag}");
            let path = tmp(&format!("{preset}-{tag}.pth"));
            m.save_pth(&path, dtype).unwrap();
            let dir = path.parent().unwrap();
            // `files::write_atomic` writes `.<name>.<random>.partial` beside the target.
            let stem = format!(".{preset}-{tag}.pth.");
            let left: Vec<_> = std::fs::read_dir(dir)
                .unwrap()
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with(&stem))
                .collect();
            assert!(left.is_empty(), "{label}: partial file left behind: {left:?}");
            assert_eq!(format::detect(&path).unwrap(), Format::Pytorch, "{label}");

            // Loads back strictly (every parameter, every buffer checked) ...
            let mut back = config.init(&dev).unwrap();
            let report = back.load_weights(&path).unwrap();
            assert_eq!(report.format, Format::Pytorch, "{label}");
            assert_eq!(report.loaded, want.len(), "{label}");
            // ... to the same parameters: bit-for-bit, except an f32 source stored in f16, which
            // must equal exactly its f16 rounding.
            let got = params(&back);
            assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "{label}");
            for (k, (shape, values)) in &want {
                let (gshape, gvalues) = &got[k];
                assert_eq!(gshape, shape, "{label}: {k}");
                let expected = if dtype == DType::F16 && !source_f16 { through_f16(values) } else { values.clone() };
                let same = gvalues.iter().zip(&expected).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{label}: {k} differs");
            }
            if dtype == DType::F32 || source_f16 {
                let (u, v) = embeddings(&back, io, &dev);
                let bits = |x: &[f32]| x.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&u), bits(&u0), "{label}: image embeddings");
                assert_eq!(bits(&v), bits(&v0), "{label}: text embeddings");
            }

            // Byte level: the same tensor names and shapes as the file PyTorch wrote, with the
            // requested float type (int64 buffers stay int64), and the same bytes wherever the
            // dtype is the file's own.
            let written = file_tensors(&path);
            assert_eq!(written.keys().collect::<Vec<_>>(), original.keys().collect::<Vec<_>>(), "{label}");
            for (k, (shape, odtype, obytes)) in &original {
                let (wshape, wdtype, wbytes) = &written[k];
                assert_eq!(wshape, shape, "{label}: {k} shape");
                let want_dtype = if odtype == "I64" { "I64".to_string() } else { format!("{dtype:?}") };
                assert_eq!(*wdtype, want_dtype, "{label}: {k} dtype");
                if wdtype == odtype {
                    assert!(wbytes == obytes, "{label}: {k} bytes differ from the fixture");
                }
            }
            std::fs::remove_file(&path).unwrap();
        }
    }
}

/// The archive is laid out as `torch.save` lays it out: a folder named after the file, with
/// `data.pkl`, `data/<key>`, `version`, `byteorder` and a serialization id.
#[test]
fn pth_archive_layout() {
    let dev = device();
    let m = Florence::load(&FlorenceConfig::preset("tiny").unwrap(), fixture_path("tiny_swin_fp16.pth"), &dev).unwrap();
    let path = tmp("my_model.pth");
    m.save_pth(&path, DType::F16).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert!(bytes.starts_with(b"PK\x03\x04"));
    let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    for entry in ["data.pkl", "data/0", "version", "byteorder", ".data/serialization_id", ".format_version"] {
        assert!(has(format!("my_model/{entry}").as_bytes()), "no my_model/{entry}");
    }
    // Globals the pickle uses: all on torch.load(weights_only=True)'s allow-list.
    for global in [
        "torch._utils\n_rebuild_tensor_v2\n",
        "collections\nOrderedDict\n",
        "torch\nHalfStorage\n",
        "torch\nLongStorage\n",
    ] {
        assert!(has(global.as_bytes()), "pickle lacks {global:?}");
    }
    assert!(!has(b"torch\nFloatStorage\n"));
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn unwritable_pth_path_is_a_typed_error() {
    let dev = device();
    let m = Florence::load(&FlorenceConfig::preset("tiny").unwrap(), fixture_path("tiny_swin_fp16.pth"), &dev).unwrap();
    let path = tmp("no-such-dir").join("sub").join("m.pth");
    match m.save_pth(&path, DType::F16) {
        Err(FlorenceError::Checkpoint(CheckpointError::Write { path: p, .. })) => assert_eq!(p, path),
        other => panic!("expected CheckpointError::Write, got {other:?}"),
    }
    assert!(!path.exists());
    let path = tmp("int.pth");
    match m.save_pth(&path, DType::I32) {
        Err(FlorenceError::Checkpoint(CheckpointError::Write { reason, .. })) => {
            assert!(reason.contains("dtype"), "{reason}")
        }
        other => panic!("expected CheckpointError::Write, got {other:?}"),
    }
    assert!(!path.exists());
}
