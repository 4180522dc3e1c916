//! Zero-shot classification, retrieval, config inference and hub resolution, end to end against
//! `scripts/reference/make_zeroshot_fixtures.py`: the bundled photos preprocessed by torchvision,
//! prompts tokenized by open_clip, a random-weight `tiny-clip` UniCL model (CLIP vocabulary),
//! UniCL's template ensembling and softmax probabilities.

mod common;

use std::path::PathBuf;

use burn::prelude::*;
use common::{F32_TOL, assert_close, device, fixture_path, float, load_fixture};
use florence::preprocess::{DecodeOptions, Preprocessor, decode_image_file};
use florence::progress::{Recorder, Silent};
use florence::retrieval::{ImageIndex, list_images, rank_texts};
use florence::text::tokenizer::Tokenizer;
use florence::zeroshot::{Templates, ZeroShotClassifier};
use florence::{Florence, FlorenceConfig, FlorenceError};

const LABELS: [&str; 5] = ["cat", "coffee mug", "rocket", "astronaut", "a dog"];
const IMAGES: [&str; 4] = ["chelsea.png", "coffee.png", "rocket.jpg", "astronaut.png"];

fn asset(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/images").join(name)
}

fn setup() -> (Florence, Tokenizer, FlorenceConfig, Device) {
    let device = device();
    let config = FlorenceConfig::preset("tiny-clip").unwrap();
    let model = Florence::load(&config, fixture_path("tiny_clip_fp16.pth"), &device).unwrap();
    let tok = Tokenizer::clip().unwrap().with_context_length(config.text.context_length);
    (model, tok, config, device)
}

fn labels() -> Vec<String> {
    LABELS.map(String::from).to_vec()
}

fn classifier(model: &Florence, tok: &Tokenizer) -> ZeroShotClassifier {
    ZeroShotClassifier::build(model, tok, &labels(), &Templates::Simple, 8, &mut Silent).unwrap()
}

/// From the reference's pixels: tokenizer, text tower, template ensembling, image tower, scaled
/// logits and softmax, each against the reference.
#[test]
fn class_probabilities_match_reference() {
    let (model, tok, _, device) = setup();
    let io = load_fixture("zeroshot_io.safetensors");

    // The prompts, tokenized: open_clip pads with 0 (UniCL's HF tokenizer with EOS); the ids up to
    // the first EOS are what the model sees at the pooled position.
    let prompts: Vec<String> = LABELS.iter().flat_map(|l| Templates::Simple.apply(l)).collect();
    let want = io["prompt_ids"].clone().convert::<i64>().try_into_vec::<i64>().unwrap();
    for (i, p) in prompts.iter().enumerate() {
        let got = tok.encode(p).unwrap();
        let row = &want[i * 77..(i + 1) * 77];
        let n = got.len();
        assert_eq!(got.iter().map(|&x| x as i64).collect::<Vec<_>>(), row[..n].to_vec(), "prompt `{p}`");
        assert!(row[n..].iter().all(|&x| x == 0));
    }

    let mut progress = Recorder::default();
    let clf = ZeroShotClassifier::build(&model, &tok, &labels(), &Templates::Simple, 8, &mut progress).unwrap();
    assert_eq!(progress.started, vec![("class embeddings".to_string(), 5)]);
    assert_eq!((progress.done, progress.finished), (5, 1));
    assert_close("class embeddings", clf.embeddings().clone(), float(&io, "class_embeddings", &device), F32_TOL);

    let pixels: Tensor<4> = float(&io, "pixels", &device);
    let u = model.encode_image(pixels.clone()).unwrap();
    assert_close("image embeddings", u.clone(), float(&io, "image_embeddings", &device), F32_TOL);
    // Logits are scaled by exp(logit_scale) = 14.3; the tolerance scales with them.
    assert_close("logits", clf.logits(&model, u).unwrap(), float(&io, "logits", &device), F32_TOL * 14.3);

    let preds = clf.classify(&model, pixels, 5).unwrap();
    let probs = io["probs"].clone().convert::<f32>().try_into_vec::<f32>().unwrap();
    let mut err = 0.0f32;
    for (i, ranked) in preds.iter().enumerate() {
        assert_eq!(ranked.len(), 5);
        for w in ranked.windows(2) {
            assert!(w[0].probability >= w[1].probability);
        }
        for p in ranked {
            assert_eq!(p.label, LABELS[p.index]);
            err = err.max((p.probability - probs[i * 5 + p.index]).abs());
        }
        let sum: f32 = ranked.iter().map(|p| p.probability).sum();
        assert!((sum - 1.0).abs() < 1e-5);
    }
    eprintln!("probabilities: max abs error {err:.2e}");
    assert!(err <= F32_TOL, "probabilities differ by {err}");
}

/// From the image files: florence's decoding and preprocessing feed the same classifier. The
/// pixels agree with torchvision's within one level in 255 (divided by the smallest std, 0.224),
/// and the probabilities stay within 1e-4... where that level of pixel error lets them: measured
/// and bounded here.
#[test]
fn classify_files_end_to_end() {
    let (model, tok, config, device) = setup();
    let io = load_fixture("zeroshot_io.safetensors");
    let pre = Preprocessor::new(config.preprocess()).unwrap();
    let imgs: Vec<_> = IMAGES.iter().map(|f| decode_image_file(asset(f), &DecodeOptions::default()).unwrap()).collect();
    let pixels = pre.batch(&imgs, &device).unwrap();
    // rocket.jpg goes through zune-jpeg rather than libjpeg: a few levels apart on some pixels.
    let png: Vec<usize> = vec![0, 1, 3];
    let want: Tensor<4> = float(&io, "pixels", &device);
    let idx =
        Tensor::<1, Int>::from_data(TensorData::new(png.iter().map(|&i| i as i64).collect::<Vec<_>>(), [3]), &device);
    assert_close(
        "png pixels",
        pixels.clone().select(0, idx.clone()),
        want.clone().select(0, idx),
        1.0 / 255.0 / 0.224 + 1e-5,
    );

    let clf = classifier(&model, &tok);
    let preds = clf.classify(&model, pixels, 5).unwrap();
    let probs = io["probs"].clone().convert::<f32>().try_into_vec::<f32>().unwrap();
    for (i, ranked) in preds.iter().enumerate() {
        let err = ranked.iter().map(|p| (p.probability - probs[i * 5 + p.index]).abs()).fold(0.0f32, f32::max);
        eprintln!("{}: probabilities from the file, max abs error {err:.2e}", IMAGES[i]);
        assert!(err <= 1e-3, "{}: {err}", IMAGES[i]);
    }
}

#[test]
fn classifier_saves_and_loads() {
    let (model, tok, _, device) = setup();
    let clf = classifier(&model, &tok);
    let dir = tempdir("clf");
    let path = dir.join("classes.safetensors");
    clf.save(&path).unwrap();
    let back = ZeroShotClassifier::load(&path, &device).unwrap();
    assert_eq!(back.labels(), clf.labels());
    assert_eq!(back.templates(), clf.templates());
    assert_close("reloaded", back.embeddings().clone(), clf.embeddings().clone(), 0.0);

    // Not a classifier file; a model whose projection differs.
    assert!(ZeroShotClassifier::load(fixture_path("tiny_swin.safetensors"), &device).is_err());
    let tiny =
        Florence::load(&FlorenceConfig::preset("tiny").unwrap(), fixture_path("tiny_swin_fp16.pth"), &device).unwrap();
    let other = ZeroShotClassifier::from_embeddings(vec!["a".into()], vec![], Tensor::ones([1, 7], &device)).unwrap();
    let e = other.classify(&tiny, Tensor::zeros([1, 3, 64, 64], &device), 1).unwrap_err().to_string();
    assert!(e.contains("rebuild the classifier"), "{e}");
    // Logits that do not have one column per label are an error, not an index panic.
    assert!(clf.rank(Tensor::zeros([1, 3], &device), 2).is_err());
    assert!(clf.rank(Tensor::zeros([1, 0], &device), 2).is_err());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_labels_and_templates_are_errors() {
    let (model, tok, _, _) = setup();
    let build = |l: &[&str], t: &Templates| {
        let l: Vec<String> = l.iter().map(|s| s.to_string()).collect();
        ZeroShotClassifier::build(&model, &tok, &l, t, 8, &mut Silent)
    };
    assert!(matches!(build(&[], &Templates::Simple), Err(FlorenceError::Labels(_))));
    assert!(matches!(build(&["cat", "cat"], &Templates::Simple), Err(FlorenceError::Labels(_))));
    assert!(matches!(build(&["cat", " "], &Templates::Simple), Err(FlorenceError::Labels(_))));
    assert!(matches!(
        build(&["cat"], &Templates::Custom(vec!["no placeholder".into()])),
        Err(FlorenceError::Labels(_))
    ));
    // A tokenizer whose context does not fit the text tower.
    let short = Tokenizer::clip().unwrap().with_context_length(16);
    let l = labels();
    assert!(ZeroShotClassifier::build(&model, &short, &l, &Templates::None, 8, &mut Silent).is_err());
    // A label far over the context length is truncated, as the reference does, not an error.
    let long = "very ".repeat(200) + "long label";
    build(&[long.as_str(), "cat"], &Templates::None).unwrap();
}

#[test]
fn retrieval_index_and_search() {
    let (model, tok, config, device) = setup();
    let pre = Preprocessor::new(config.preprocess()).unwrap();
    let dir = tempdir("index");
    for f in IMAGES {
        std::fs::copy(asset(f), dir.join(f)).unwrap();
    }
    std::fs::write(dir.join("broken.jpg"), b"\xff\xd8\xff\xe0 not really a jpeg").unwrap();
    std::fs::write(dir.join("notes.txt"), b"ignored: not an image extension").unwrap();
    let paths = list_images(&dir).unwrap();
    assert_eq!(paths.len(), 5);

    let mut progress = Recorder::default();
    let (index, skipped) =
        ImageIndex::build(&model, &pre, &DecodeOptions::default(), &paths, 2, &mut progress).unwrap();
    assert_eq!(index.len(), 4);
    assert_eq!(skipped.len(), 1);
    assert!(skipped[0].path.ends_with("broken.jpg"));
    assert_eq!(progress.warnings.len(), 1);
    assert_eq!(progress.done, 5);

    // The index rows are the model's embeddings of the files.
    let io = load_fixture("zeroshot_io.safetensors");
    let want = io["image_embeddings"].clone().convert::<f32>().try_into_vec::<f32>().unwrap();
    for (i, f) in IMAGES.iter().enumerate() {
        let row = index.paths().iter().position(|p| p.ends_with(f)).unwrap();
        let err = index
            .embedding(row)
            .iter()
            .zip(&want[i * 24..(i + 1) * 24])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(err < 2e-3, "{f}: {err}");
    }

    // Search by text: the ranking is the ranking of cosine similarities.
    let hits = index.search_text(&model, &tok, "a photo of a cat", 4).unwrap();
    assert_eq!(hits.len(), 4);
    let q =
        florence::ops::to_vec_f32(model.encode_text(tok.tokenize(&["a photo of a cat"], &device).unwrap()).unwrap())
            .unwrap();
    for h in &hits {
        let s: f32 = index.embedding(h.index).iter().zip(&q).map(|(a, b)| a * b).sum();
        assert!((s - h.score).abs() < 1e-5);
    }
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));

    // Save / load round trip.
    let file = dir.join("index.safetensors");
    index.save(&file).unwrap();
    assert_eq!(ImageIndex::load(&file).unwrap(), index);
    assert!(ImageIndex::load(fixture_path("tiny_swin.safetensors")).is_err());

    // Image -> texts.
    let img = decode_image_file(asset("coffee.png"), &DecodeOptions::default()).unwrap();
    let texts: Vec<String> = LABELS.map(String::from).to_vec();
    let ranked = rank_texts(&model, &tok, pre.batch(&[img], &device).unwrap(), &texts, 2).unwrap();
    assert_eq!(ranked.len(), 1);
    assert_eq!(ranked[0].len(), 2);
    assert!(rank_texts(&model, &tok, Tensor::zeros([1, 3, 64, 64], &device), &[], 2).is_err());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn config_is_inferred_from_checkpoint_shapes() {
    use florence::checkpoint::{infer_config, inspect};
    for (file, preset) in [
        ("tiny_swin_fp16.pth", "tiny"),
        ("tiny_swin.safetensors", "tiny"),
        ("tiny_coswin.safetensors", "tiny-coswin"),
        ("tiny_clip_fp16.pth", "tiny-clip"),
    ] {
        let (name, config) = infer_config(fixture_path(file)).unwrap();
        assert_eq!(name, preset, "{file}");
        let info = inspect(fixture_path(file)).unwrap();
        assert_eq!(info.parameters, config.num_params(), "{file}: parameter count");
    }
    // Not a Florence checkpoint at all.
    let e = infer_config(fixture_path("window_ops.safetensors")).unwrap_err().to_string();
    assert!(e.contains("not a"), "{e}");
    // A Florence checkpoint that no preset matches (tiny with another projection width): the
    // error says that heads cannot be read from shapes and asks for --config.
    let mut c = FlorenceConfig::preset("tiny").unwrap();
    c.projection_dim = 20;
    let dir = tempdir("infer");
    let path = dir.join("custom.safetensors");
    c.init(&device()).unwrap().save_safetensors(&path, burn::tensor::DType::F32).unwrap();
    let e = infer_config(&path).unwrap_err().to_string();
    assert!(e.contains("no preset matches") && e.contains("--config"), "{e}");
    assert_eq!(inspect(&path).unwrap().shapes.projection_dim, Some(20));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn hub_references_resolve_from_an_offline_cache() {
    use florence::hub::resolve_weights_in;
    let cache = tempdir("hub");
    // The layout huggingface_hub and hf-hub share: refs/main -> commit, snapshots/<commit>/<file>.
    let repo = cache.join("spaces--CVPR--unicl-zero-shot-img-recog");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::create_dir_all(repo.join("snapshots").join(commit)).unwrap();
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    let file = repo.join("snapshots").join(commit).join("tiny_clip_fp16.pth");
    std::fs::copy(fixture_path("tiny_clip_fp16.pth"), &file).unwrap();

    let spec = "hf://spaces/CVPR/unicl-zero-shot-img-recog/tiny_clip_fp16.pth";
    let got = resolve_weights_in(spec, &cache, true, &mut Silent).unwrap();
    assert_eq!(got, file);
    let (name, _) = florence::checkpoint::infer_config(&got).unwrap();
    assert_eq!(name, "tiny-clip");

    let e = resolve_weights_in("hf://spaces/CVPR/unicl-zero-shot-img-recog/missing.pth", &cache, true, &mut Silent)
        .unwrap_err()
        .to_string();
    assert!(e.contains("HF_HUB_OFFLINE"), "{e}");
    // A commit hash names its snapshot folder directly (no ref file, as Python's cache does it).
    let by_commit = format!("hf://spaces/CVPR/unicl-zero-shot-img-recog@{commit}/tiny_clip_fp16.pth");
    assert_eq!(resolve_weights_in(&by_commit, &cache, true, &mut Silent).unwrap(), file);
    // A revision that is not cached.
    assert!(
        resolve_weights_in(
            "hf://spaces/CVPR/unicl-zero-shot-img-recog@v2/tiny_clip_fp16.pth",
            &cache,
            true,
            &mut Silent
        )
        .is_err()
    );
    // A local path is used as is; a missing one is a checkpoint error.
    let local = fixture_path("tiny_clip_fp16.pth");
    assert_eq!(resolve_weights_in(local.to_str().unwrap(), &cache, true, &mut Silent).unwrap(), local);
    assert!(resolve_weights_in("/no/such/file.pth", &cache, true, &mut Silent).is_err());
    let _ = std::fs::remove_dir_all(cache);
}

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("florence-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `text.pooling = {"eot_id": ...}` set to the tokenizer's end-of-text id pools where UniCL's
/// argmax does: the tiny_swin fixture's text embeddings (ids from `make_fixtures.py`, whose EOT
/// is `vocab - 1` = 999, EOS-padded) and the tiny-clip model on CLIP-tokenized prompts, zero- and
/// EOS-padded, are unchanged. A row without the id is an input error.
#[test]
fn eot_id_pooling_keeps_the_fixture_text_embeddings() {
    use florence::config::TextPooling;
    use florence::text::tokenizer::Padding;

    let device = device();
    let io = load_fixture("tiny_swin_io.safetensors");
    let ids: Tensor<2, Int> = common::int(&io, "input_ids", &device);
    let mut config = FlorenceConfig::preset("tiny").unwrap();
    let argmax = Florence::load(&config, fixture_path("tiny_swin.safetensors"), &device).unwrap();
    config.text.pooling = TextPooling::EotId(999);
    let eot = Florence::load(&config, fixture_path("tiny_swin.safetensors"), &device).unwrap();
    let want = float::<2>(&io, "text_embeds", &device);
    assert_close("tiny_swin text embeddings, eot_id", eot.encode_text(ids.clone()).unwrap(), want.clone(), F32_TOL);
    let (a, e) = (argmax.encode_text(ids.clone()).unwrap(), eot.encode_text(ids.clone()).unwrap());
    assert_eq!(a.into_data().try_to_vec::<f32>().unwrap(), e.into_data().try_to_vec::<f32>().unwrap());
    // The same model with an EOT id these rows lack (997 never occurs: tokens are < 998).
    config.text.pooling = TextPooling::EotId(997);
    let other = Florence::load(&config, fixture_path("tiny_swin.safetensors"), &device).unwrap();
    let err = other.encode_text(ids).unwrap_err();
    assert!(matches!(err, FlorenceError::Input(_)), "{err}");
    assert!(err.to_string().contains("text row 0 "), "{err}");

    let (model, tok, mut config, _) = setup();
    config.text.pooling = TextPooling::EotId(tok.eot());
    let eot = Florence::load(&config, fixture_path("tiny_clip_fp16.pth"), &device).unwrap();
    let prompts: Vec<String> = LABELS.iter().flat_map(|l| Templates::Simple.apply(l)).collect();
    let prompts: Vec<&str> = prompts.iter().map(String::as_str).collect();
    for padding in [Padding::Zero, Padding::Eos] {
        let ids = tok.clone().with_padding(padding).tokenize(&prompts, &device).unwrap();
        let a = model.encode_text(ids.clone()).unwrap().into_data().try_to_vec::<f32>().unwrap();
        let e = eot.encode_text(ids).unwrap().into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(a, e, "{padding:?}");
    }
}
