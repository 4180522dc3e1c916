//! The strict loader: every accepted format and naming, round trips, and a typed error for every
//! kind of bad checkpoint.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::tensor::{DType, bf16, f16};
use common::*;
use florence::checkpoint::{Convention, Format};
use florence::{CheckpointError, Florence, FlorenceConfig, FlorenceError};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

type Raw = BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)>;

fn raw(name: &str) -> Raw {
    let bytes = std::fs::read(fixture_path(name)).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensors().into_iter().map(|(k, v)| (k, (v.dtype(), v.shape().to_vec(), v.data().to_vec()))).collect()
}

fn write(raw: &Raw, path: &Path) {
    let views: Vec<(String, TensorView)> =
        raw.iter().map(|(k, (d, s, b))| (k.clone(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
    safetensors::tensor::serialize_to_file(views, None, path).unwrap();
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("florence-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn tiny() -> FlorenceConfig {
    FlorenceConfig::preset("tiny").unwrap()
}

fn embeddings(m: &Florence, dev: &Device) -> (Tensor<2>, Tensor<2>) {
    let io = load_fixture("tiny_swin_io.safetensors");
    (m.encode_image(float(&io, "images", dev)).unwrap(), m.encode_text(int(&io, "input_ids", dev)).unwrap())
}

fn load_err(config: &FlorenceConfig, path: &Path) -> CheckpointError {
    match Florence::load(config, path, &device()) {
        Err(FlorenceError::Checkpoint(e)) => e,
        Err(other) => panic!("expected a checkpoint error, got {other}"),
        Ok(_) => panic!("{} loaded but should not", path.display()),
    }
}

#[test]
fn released_pth_layout_is_recognised() {
    let dev = device();
    let mut m = tiny().init(&dev).unwrap();
    let r = m.load_weights(fixture_path("tiny_swin_fp16.pth")).unwrap();
    assert_eq!(r.format, Format::Pytorch);
    assert_eq!(r.convention, Some(Convention::UniclA));
    assert_eq!(r.loaded, m.num_params_tensors());
    // One relative_position_index per block (8) and an attn_mask for the shifted blocks of the
    // stages whose map is larger than the window (stages 0 and 1).
    assert_eq!(r.buffers_checked, 8 + 2);
    assert!(r.dtypes.contains_key("F16") && r.dtypes.contains_key("I64"), "{:?}", r.dtypes);
}

trait CountTensors {
    fn num_params_tensors(&self) -> usize;
}
impl CountTensors for Florence {
    fn num_params_tensors(&self) -> usize {
        use burn::store::ModuleSnapshot;
        self.collect(None, None, true).len()
    }
}

#[test]
fn naming_variants_b_and_c_load_identically() {
    let dev = device();
    let base = Florence::load(&tiny(), fixture_path("tiny_swin.safetensors"), &dev).unwrap();
    let (u0, v0) = embeddings(&base, &dev);
    let a = raw("tiny_swin.safetensors");
    let b: Raw = a
        .iter()
        .map(|(k, v)| {
            let k = if let Some(r) = k.strip_prefix("image_encoder.") {
                format!("visual.{r}")
            } else if let Some(r) = k.strip_prefix("text_encoder.") {
                format!("text.{r}")
            } else if k == "image_projection" {
                "vision_projection".into()
            } else {
                k.clone()
            };
            (k, v.clone())
        })
        .collect();
    let c: Raw = a
        .iter()
        .map(|(k, v)| {
            let k = if let Some(r) = k.strip_prefix("text_encoder.") {
                format!("lang_encoder.{r}")
            } else if k == "text_projection" {
                "lang_projection".into()
            } else {
                k.clone()
            };
            (k, v.clone())
        })
        .collect();
    for (raw, name, conv) in
        [(b, "variant_b.safetensors", Convention::KliteB), (c, "variant_c.safetensors", Convention::ElevaterC)]
    {
        let p = tmp(name);
        write(&raw, &p);
        let mut m = tiny().init(&dev).unwrap();
        assert_eq!(m.load_weights(&p).unwrap().convention, Some(conv));
        let (u, v) = embeddings(&m, &dev);
        assert_close(name, u, u0.clone(), 0.0);
        assert_close(name, v, v0.clone(), 0.0);
    }
}

#[test]
fn bf16_checkpoint_loads_into_f32() {
    let dev = device();
    let f32m = Florence::load(&tiny(), fixture_path("tiny_swin.safetensors"), &dev).unwrap();
    let mut m = tiny().init(&dev).unwrap();
    let r = m.load_weights(fixture_path("tiny_swin_bf16.safetensors")).unwrap();
    assert!(r.dtypes.contains_key("BF16"));
    assert_eq!(m.logit_scale.val().dtype(), DType::F32);
    // Each weight equals the f32 one rounded to bf16 (8 significant bits): relative error <= 2^-8.
    let a: Vec<f32> = m.image_encoder.layers[2].blocks[1].attn.qkv.weight.val().into_data().iter::<f32>().collect();
    let b: Vec<f32> = f32m.image_encoder.layers[2].blocks[1].attn.qkv.weight.val().into_data().iter::<f32>().collect();
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() <= y.abs() * 2f32.powi(-8), "{x} vs {y}");
    }
    // Embeddings of a bf16-rounded model stay within bf16 precision of the f32 ones.
    let (u, v) = embeddings(&m, &dev);
    let (u0, v0) = embeddings(&f32m, &dev);
    assert_close("bf16 image embeddings", u, u0, 2e-2);
    assert_close("bf16 text embeddings", v, v0, 2e-2);
}

#[test]
fn safetensors_round_trip_reproduces_the_unicl_layout() {
    let dev = device();
    let m = Florence::load(&tiny(), fixture_path("tiny_swin_fp16.pth"), &dev).unwrap();
    let out = tmp("roundtrip.safetensors");
    m.save_safetensors(&out, DType::F32).unwrap();
    // Same keys, shapes, dtypes and values as the reference's own UniCL-layout file, buffers included.
    let want = raw("tiny_swin.safetensors");
    let bytes = std::fs::read(&out).unwrap();
    let got = SafeTensors::deserialize(&bytes).unwrap();
    let mut names = got.names().into_iter().map(|s| s.to_string()).collect::<Vec<_>>();
    names.sort();
    assert_eq!(names, want.keys().cloned().collect::<Vec<_>>());
    for (k, (d, s, b)) in &want {
        let t = got.tensor(k).unwrap();
        assert_eq!((t.dtype(), t.shape()), (*d, s.as_slice()), "{k}");
        assert_eq!(t.data(), b.as_slice(), "{k}");
    }
    // And it loads back to the same model; fp16 and burnpack too.
    let (u0, v0) = embeddings(&m, &dev);
    for (name, dtype) in [("rt32.safetensors", DType::F32), ("rt16.safetensors", DType::F16)] {
        let p = tmp(name);
        m.save_safetensors(&p, dtype).unwrap();
        let back = Florence::load(&tiny(), &p, &dev).unwrap();
        let (u, v) = embeddings(&back, &dev);
        assert_close(name, u, u0.clone(), 0.0);
        assert_close(name, v, v0.clone(), 0.0);
    }
    let p = tmp("rt.bpk");
    m.save_burnpack(&p).unwrap();
    let mut back = tiny().init(&dev).unwrap();
    assert_eq!(back.load_weights(&p).unwrap().format, Format::Burnpack);
    let (u, v) = embeddings(&back, &dev);
    assert_close("burnpack", u, u0, 0.0);
    assert_close("burnpack", v, v0, 0.0);
}

#[test]
fn missing_tensor_is_named() {
    let mut r = raw("tiny_swin.safetensors");
    r.remove("image_encoder.layers.1.blocks.0.mlp.fc2.bias");
    let p = tmp("missing.safetensors");
    write(&r, &p);
    match load_err(&tiny(), &p) {
        CheckpointError::MissingKeys { keys } => assert_eq!(keys, ["image_encoder.layers.1.blocks.0.mlp.fc2.bias"]),
        e => panic!("{e}"),
    }
}

#[test]
fn unexpected_tensor_is_named() {
    let mut r = raw("tiny_swin.safetensors");
    let v = r["image_projection"].clone();
    r.insert("image_encoder.head.weight".into(), v);
    let p = tmp("extra.safetensors");
    write(&r, &p);
    match load_err(&tiny(), &p) {
        CheckpointError::UnexpectedKeys { keys } => assert_eq!(keys, ["image_encoder.head.weight"]),
        e => panic!("{e}"),
    }
}

#[test]
fn wrong_shape_names_key_and_both_shapes() {
    let mut r = raw("tiny_swin.safetensors");
    let (d, _, b) = r["text_projection"].clone();
    r.insert("text_projection".into(), (d, vec![24, 32], b));
    let p = tmp("shape.safetensors");
    write(&r, &p);
    let e = load_err(&tiny(), &p);
    match &e {
        CheckpointError::ShapeMismatch { key, expected, found } => {
            assert_eq!(
                (key.as_str(), expected.as_slice(), found.as_slice()),
                ("text_projection", &[32, 24][..], &[24, 32][..])
            )
        }
        e => panic!("{e}"),
    }
    assert!(e.to_string().contains("[24, 32]") && e.to_string().contains("[32, 24]"));
}

#[test]
fn wrong_config_for_the_checkpoint_is_reported() {
    // CoSwin weights into a Swin config: the stem conv is 7x7, not 4x4.
    let e = load_err(&tiny(), &fixture_path("tiny_coswin.safetensors"));
    assert!(
        matches!(&e, CheckpointError::ShapeMismatch { key, .. } if key == "image_encoder.patch_embed.proj.weight"),
        "{e}"
    );
    assert!(e.to_string().contains("config"));
    // A deeper config than the checkpoint: the extra blocks are missing.
    let mut deep = tiny();
    deep.image.depths[2] = 4;
    assert!(matches!(load_err(&deep, &fixture_path("tiny_swin_fp16.pth")), CheckpointError::MissingKeys { .. }));
    // A different image size: the shifted-window masks in the checkpoint no longer fit.
    let mut big = tiny();
    big.image.image_size = 96;
    assert!(matches!(load_err(&big, &fixture_path("tiny_swin_fp16.pth")), CheckpointError::BufferMismatch { .. }));
}

#[test]
fn tampered_buffer_is_rejected() {
    let mut r = raw("tiny_swin.safetensors");
    let k = "image_encoder.layers.0.blocks.1.attn.relative_position_index";
    let (d, s, mut b) = r[k].clone();
    b.swap(0, 8);
    b.swap(1, 9);
    r.insert(k.into(), (d, s, b));
    let p = tmp("buffer.safetensors");
    write(&r, &p);
    assert!(matches!(load_err(&tiny(), &p), CheckpointError::BufferMismatch { key, .. } if key == k));
}

#[test]
fn truncated_files_are_corrupt_not_panics() {
    for name in ["tiny_swin_fp16.pth", "tiny_swin.safetensors"] {
        let bytes = std::fs::read(fixture_path(name)).unwrap();
        for cut in [bytes.len() / 2, bytes.len() - 10] {
            let p = tmp(&format!("cut-{cut}-{name}"));
            std::fs::write(&p, &bytes[..cut]).unwrap();
            let e = load_err(&tiny(), &p);
            assert!(
                matches!(e, CheckpointError::Corrupt { .. } | CheckpointError::UnknownFormat { .. }),
                "{name} cut at {cut}: {e}"
            );
        }
    }
}

#[test]
fn not_a_checkpoint() {
    let p = tmp("notes.txt");
    std::fs::write(&p, "these are not the weights you are looking for").unwrap();
    assert!(matches!(load_err(&tiny(), &p), CheckpointError::UnknownFormat { .. }));
    let p = tmp("empty.pth");
    std::fs::write(&p, b"").unwrap();
    assert!(matches!(load_err(&tiny(), &p), CheckpointError::UnknownFormat { .. }));
    assert!(matches!(load_err(&tiny(), Path::new("/nonexistent/model.pth")), CheckpointError::NotFound(_)));
    // A valid safetensors file of some other model.
    let mut other = Raw::new();
    other.insert("backbone.conv1.weight".into(), (Dtype::F32, vec![2], vec![0u8; 8]));
    let p = tmp("resnet.safetensors");
    write(&other, &p);
    let e = load_err(&tiny(), &p);
    assert!(matches!(e, CheckpointError::NotAFlorenceModel { .. }), "{e}");
}

/// Regression: a checkpoint whose tensors held NaN or Inf loaded, and `classify --json` printed
/// `"probability": null` with no warning. Each float dtype is checked, and the key is named.
#[test]
fn non_finite_values_are_refused_naming_the_key() {
    let dev = device();
    let key = "image_encoder.layers.1.blocks.0.mlp.fc1.weight";
    for (tag, dtype) in [("f32", Dtype::F32), ("f16", Dtype::F16), ("bf16", Dtype::BF16)] {
        let mut r = raw("tiny_swin.safetensors");
        let (d, s, b) = r[key].clone();
        assert_eq!(d, Dtype::F32);
        // Store this tensor in the dtype under test.
        let vals = b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()));
        let (bytes, nan, inf, mut b): (usize, &[u8], &[u8], Vec<u8>) = match dtype {
            Dtype::F32 => (4, &[0, 0, 0xc0, 0x7f], &[0, 0, 0x80, 0xff], b.clone()),
            Dtype::F16 => {
                (2, &[0x00, 0x7e], &[0x00, 0x7c], vals.flat_map(|v| f16::from_f32(v).to_le_bytes()).collect())
            }
            _ => (2, &[0xc0, 0x7f], &[0x80, 0x7f], vals.flat_map(|v| bf16::from_f32(v).to_le_bytes()).collect()),
        };
        b[5 * bytes..6 * bytes].copy_from_slice(nan);
        b[9 * bytes..10 * bytes].copy_from_slice(inf);
        r.insert(key.into(), (dtype, s, b));
        let p = tmp(&format!("nan-{tag}.safetensors"));
        write(&r, &p);
        let mut m = tiny().init(&dev).unwrap();
        let before = m.image_encoder.layers[1].blocks[0].mlp.fc1.weight.val().into_data();
        match m.load_weights(&p) {
            Err(FlorenceError::Checkpoint(CheckpointError::NonFinite { key: k, count, first })) => {
                assert_eq!((k.as_str(), count, first), (key, 2, 5), "{tag}")
            }
            other => panic!("{tag}: {other:?}"),
        }
        // Nothing was applied.
        assert_eq!(m.image_encoder.layers[1].blocks[0].mlp.fc1.weight.val().into_data(), before, "{tag}");
    }
}

/// A checkpoint beyond `florence::limits` is refused before it is parsed.
#[test]
fn checkpoint_limits_are_typed_errors() {
    let small = florence::limits::Limits { max_checkpoint_tensors: 10, ..florence::limits::get() };
    let e = florence::limits::with(small, || load_err(&tiny(), &fixture_path("tiny_swin.safetensors")));
    match &e {
        CheckpointError::Limit { limit, .. } => assert_eq!(limit.limit_name, "max_checkpoint_tensors"),
        e => panic!("{e}"),
    }
    assert!(e.to_string().contains("max_checkpoint_tensors"), "{e}");
    // A PyTorch pickle larger or deeper than allowed is refused before Burn's reader parses it
    // (the fixture's data.pkl is 19,875 bytes, nested 4 deep).
    let pth = fixture_path("tiny_swin_fp16.pth");
    for (limits, name) in [
        (florence::limits::Limits { max_pickle_bytes: 10_000, ..florence::limits::get() }, "max_pickle_bytes"),
        (florence::limits::Limits { max_pickle_depth: 3, ..florence::limits::get() }, "max_pickle_depth"),
        (florence::limits::Limits { max_checkpoint_tensors: 100, ..florence::limits::get() }, "max_checkpoint_tensors"),
    ] {
        match florence::limits::with(limits, || load_err(&tiny(), &pth)) {
            CheckpointError::Limit { limit, .. } => assert_eq!(limit.limit_name, name),
            e => panic!("{name}: {e}"),
        }
    }
}

/// A module that is not the two-tower model, for the generic loader: cross-attention and a norm,
/// field names after `nn.MultiheadAttention`'s keys.
#[derive(Module, Debug)]
struct CrossBlock {
    attn: florence::layers::MultiHeadAttention,
    norm: burn::nn::LayerNorm,
}

/// The generic strict loader on a second module type, with a key-map table: torch's
/// `cross.in_proj_weight` etc. (`tests/fixtures/mha.safetensors`) load without conversion and
/// reproduce torch's output; the same strictness errors as the two-tower model's.
#[test]
fn generic_loader_is_strict_for_any_module() {
    use florence::checkpoint::loader::{KeyMap, load_module};
    let dev = device();
    let fixture = raw("mha.safetensors");
    let mut weights: Raw = fixture
        .iter()
        .filter(|(k, _)| k.starts_with("cross.") && (k.contains("proj")))
        .map(|(k, v)| (format!("model.{k}"), v.clone()))
        .collect();
    let ones: Vec<u8> = (0..16).flat_map(|_| 1.0f32.to_le_bytes()).collect();
    weights.insert("model.cross.norm.weight".into(), (Dtype::F32, vec![16], ones));
    weights.insert("model.cross.norm.bias".into(), (Dtype::F32, vec![16], vec![0u8; 64]));
    let renames = [
        ("cross.norm.", "norm."),
        ("cross.", "attn."),
        ("in_proj_weight", "in_proj.weight"),
        ("in_proj_bias", "in_proj.bias"),
    ];
    let layout = KeyMap {
        strip_prefix: "model.".into(),
        renames: renames.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
    };
    let fresh = || CrossBlock {
        attn: florence::layers::MultiHeadAttention::new(16, 4, true, &dev),
        norm: burn::nn::LayerNormConfig::new(16).init(&dev),
    };
    let load = |w: &Raw, tag: &str| {
        let p = tmp(&format!("cross-{tag}.safetensors"));
        write(w, &p);
        let mut m = fresh();
        load_module(&mut m, &p, &layout).map(|r| (m, r))
    };
    let (m, report) = load(&weights, "ok").unwrap();
    assert_eq!(report.loaded, 6);
    let io = load_fixture("mha.safetensors");
    let pad: Tensor<2, Bool> = int::<2>(&io, "cross.key_padding_mask", &dev).equal_elem(1);
    let mask = florence::layers::key_padding_mask(pad, 5, DType::F32);
    let out = m.attn.forward_cross(float(&io, "cross.q", &dev), float(&io, "cross.kv", &dev), Some(mask));
    assert_close("loaded cross-attention", out, float(&io, "cross.out", &dev), F32_TOL);

    let err = |w: &Raw, tag: &str| match load(w, tag) {
        Err(FlorenceError::Checkpoint(e)) => e,
        other => panic!("{tag}: {:?}", other.map(|(_, r)| r)),
    };
    let mut missing = weights.clone();
    missing.remove("model.cross.out_proj.bias");
    assert!(
        matches!(err(&missing, "missing"), CheckpointError::MissingKeys { keys } if keys == ["attn.out_proj.bias"])
    );
    let mut extra = weights.clone();
    extra.insert("model.extra.weight".into(), (Dtype::F32, vec![1], vec![0u8; 4]));
    assert!(matches!(err(&extra, "extra"), CheckpointError::UnexpectedKeys { keys } if keys == ["extra.weight"]));
    let mut shape = weights.clone();
    shape.insert("model.cross.norm.bias".into(), (Dtype::F32, vec![8], vec![0u8; 32]));
    let e = err(&shape, "shape");
    assert!(
        matches!(&e, CheckpointError::ShapeMismatch { key, expected, found } if key == "norm.bias" && expected == &[16] && found == &[8]),
        "{e}"
    );
    let mut nan = weights.clone();
    nan.insert(
        "model.cross.norm.weight".into(),
        (Dtype::F32, vec![16], (0..16).flat_map(|_| f32::NAN.to_le_bytes()).collect()),
    );
    assert!(
        matches!(err(&nan, "nan"), CheckpointError::NonFinite { key, count: 16, first: 0 } if key == "norm.weight")
    );
    let other: Raw = [("backbone.conv.weight".to_string(), (Dtype::F32, vec![1], vec![0u8; 4]))].into();
    assert!(matches!(
        err(&other, "other"),
        CheckpointError::UnexpectedKeys { .. } | CheckpointError::NotThisModel { .. }
    ));
}
