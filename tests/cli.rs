//! The `florence` binary end to end on the `tiny-clip` fixture checkpoint: `classify --json`,
//! `embed`, `index`/`search`, `convert`, `info`, and a bad file in a batch. Built only with
//! `--features cli` (the README's test command enables it).
#![cfg(feature = "cli")]

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

use common::{fixture_path, load_fixture};

const LABELS: &str = "cat,coffee mug,rocket,astronaut,a dog";

fn florence(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_florence"))
        .args(args)
        .env_remove("FLORENCE_DEVICE")
        .output()
        .expect("run florence")
}

fn ok(args: &[&str]) -> (serde_json::Value, String) {
    let out = florence(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "florence {args:?} failed:\n{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (serde_json::from_str(&stdout).unwrap_or(serde_json::Value::String(stdout)), stderr)
}

fn asset(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/images").join(name).to_string_lossy().into_owned()
}

fn weights() -> String {
    fixture_path("tiny_clip_fp16.pth").to_string_lossy().into_owned()
}

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("florence-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `classify --json` with the config inferred from the checkpoint: the reference probabilities
/// (from torchvision-preprocessed pixels) within the file-pipeline tolerance of tests/zeroshot.rs.
#[test]
fn classify_json_matches_reference() {
    let w = weights();
    let (chelsea, coffee) = (asset("chelsea.png"), asset("coffee.png"));
    let (json, stderr) = ok(&[
        "classify",
        "--weights",
        &w,
        "--image",
        &chelsea,
        &coffee,
        "--labels",
        LABELS,
        "--templates",
        "simple",
        "--top-k",
        "5",
        "--json",
        "--quiet",
    ]);
    assert!(stderr.contains("config: tiny-clip"), "{stderr}");
    assert!(stderr.contains("device: flex"), "{stderr}");
    let io = load_fixture("zeroshot_io.safetensors");
    let probs = io["probs"].clone().convert::<f32>().try_into_vec::<f32>().unwrap();
    let labels: Vec<&str> = LABELS.split(',').collect();
    let results = json.as_array().expect("an array");
    assert_eq!(results.len(), 2);
    for (i, r) in results.iter().enumerate() {
        assert!(r["image"].as_str().unwrap().ends_with(["chelsea.png", "coffee.png"][i]));
        let preds = r["predictions"].as_array().unwrap();
        assert_eq!(preds.len(), 5);
        for p in preds {
            let idx = p["index"].as_u64().unwrap() as usize;
            assert_eq!(p["label"], labels[idx]);
            let err = (p["probability"].as_f64().unwrap() as f32 - probs[i * 5 + idx]).abs();
            assert!(err < 1e-3, "{p}: {err}");
        }
    }
}

#[test]
fn classify_keeps_going_past_a_bad_file() {
    let dir = tempdir("bad");
    let bad = dir.join("empty.jpg");
    std::fs::write(&bad, b"").unwrap();
    let w = weights();
    let chelsea = asset("chelsea.png");
    let out = florence(&[
        "classify",
        "--weights",
        &w,
        "--config",
        "tiny-clip",
        "--image",
        bad.to_str().unwrap(),
        &chelsea,
        "--labels",
        "cat,dog",
        "--templates",
        "none",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(json[0]["error"].as_str().unwrap().contains("empty.jpg"));
    assert_eq!(json[1]["predictions"].as_array().unwrap().len(), 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("1 of 2 images could not be read"), "{stderr}");

    // Empty and duplicate labels are errors with a message, not a panic.
    for labels in [",", "cat,cat"] {
        let out = florence(&["classify", "--weights", &w, "--image", &chelsea, "--labels", labels]);
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("error: labels:"), "{stderr}");
    }
    // Not a checkpoint.
    let out = florence(&["classify", "--weights", &chelsea, "--image", &chelsea, "--labels", "cat"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a checkpoint"));
}

#[test]
fn embed_writes_normalised_embeddings_in_order() {
    let dir = tempdir("embed");
    let out = dir.join("e.json");
    let w = weights();
    let (coffee, rocket) = (asset("coffee.png"), asset("rocket.jpg"));
    ok(&[
        "embed",
        "--weights",
        &w,
        "--image",
        &coffee,
        "--image",
        &rocket,
        "--text",
        "a cat",
        "--text",
        "a rocket",
        "--text",
        "third",
        "--output",
        out.to_str().unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let img = v["image_embeddings"].as_array().unwrap();
    let txt = v["text_embeddings"].as_array().unwrap();
    assert_eq!((img.len(), txt.len()), (2, 3));
    for row in img.iter().chain(txt) {
        let r: Vec<f64> = row.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        assert_eq!(r.len(), 24);
        assert!((r.iter().map(|x| x * x).sum::<f64>() - 1.0).abs() < 1e-5);
    }
    // The first image is coffee.png: the reference embedding of that file (row 1).
    let io = load_fixture("zeroshot_io.safetensors");
    let want = io["image_embeddings"].clone().convert::<f32>().try_into_vec::<f32>().unwrap();
    let err = img[0]
        .as_array()
        .unwrap()
        .iter()
        .zip(&want[24..48])
        .map(|(a, b)| (a.as_f64().unwrap() as f32 - b).abs())
        .fold(0.0f32, f32::max);
    assert!(err < 2e-3, "{err}");
    assert!((v["logit_scale"].as_f64().unwrap() - 2.6592).abs() < 1e-3);
}

#[test]
fn index_search_convert_info() {
    let dir = tempdir("index");
    let w = weights();
    let images = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/images");
    let index = dir.join("index.safetensors");
    let (_, stderr) = ok(&[
        "index",
        "--weights",
        &w,
        "--folder",
        images.to_str().unwrap(),
        "--output",
        index.to_str().unwrap(),
        "-q",
    ]);
    assert!(stderr.contains("indexed 4 images"), "{stderr}");
    let (hits, _) = ok(&[
        "search",
        "--weights",
        &w,
        "--index",
        index.to_str().unwrap(),
        "--text",
        "a cat",
        "--top-k",
        "2",
        "--json",
    ]);
    assert_eq!(hits.as_array().unwrap().len(), 2);
    let chelsea = asset("chelsea.png");
    let (ranked, _) = ok(&["search", "--weights", &w, "--image", &chelsea, "--texts", "a cat,a dog,a car", "--json"]);
    assert_eq!(ranked.as_array().unwrap().len(), 3);

    // convert to safetensors (UniCL layout) and to Burn's format; both load back with the same
    // inferred architecture.
    for ext in ["safetensors", "bpk"] {
        let out = dir.join(format!("m.{ext}"));
        ok(&["convert", &w, out.to_str().unwrap()]);
        let (info, _) = ok(&["info", out.to_str().unwrap(), "--json"]);
        assert_eq!(info["preset"], "tiny-clip", "{info}");
    }
    let (info, _) = ok(&["info", &w]);
    let text = info.as_str().unwrap();
    assert!(text.contains("preset:      tiny-clip"), "{text}");
    // and to a PyTorch checkpoint in UniCL's released format.
    let out = dir.join("m.pth");
    ok(&["convert", &w, out.to_str().unwrap(), "--dtype", "f16"]);
    let (info, _) = ok(&["info", out.to_str().unwrap(), "--json"]);
    assert_eq!(info["preset"], "tiny-clip", "{info}");
    assert_eq!(info["format"], "pytorch", "{info}");
}

/// `synth`, `train` (then `--resume` to a longer run), and `eval zero-shot | linear-probe |
/// few-shot` on what was trained: the training workflow of the README, on a tiny model.
#[test]
fn synth_train_resume_eval() {
    let dir = tempdir("train");
    let d = dir.to_string_lossy().into_owned();
    ok(&["synth", "-q", "-o", &format!("{d}/train"), "-n", "48", "--split", "train", "--size", "32"]);
    ok(&[
        "synth",
        "-q",
        "-o",
        &format!("{d}/val"),
        "-n",
        "36",
        "--split",
        "all",
        "--layout",
        "folders",
        "--size",
        "32",
        "--seed",
        "1",
    ]);
    assert_eq!(std::fs::read_to_string(dir.join("train/captions.jsonl")).unwrap().lines().count(), 48);
    let config = |total: usize| {
        format!(
            "model = \"tiny-clip\"\noutput = \"run\"\nbatch_size = 8\ncheckpoint_every = 2\n[[data]]\nkind = \"jsonl\"\npath = \"train/captions.jsonl\"\n[augment]\nhflip = 0.0\ncolor_jitter = 0.0\n[optimizer]\nlr = 1e-3\ntotal_steps = {total}\n[eval]\nfolder = \"val\"\nevery = 2\ntemplates = \"none\"\n"
        )
    };
    std::fs::write(dir.join("train.toml"), config(2)).unwrap();
    let (out, _) = ok(&["train", "-q", "--config", &format!("{d}/train.toml")]);
    let out = out.as_str().unwrap().to_string();
    assert!(out.contains("step 2: loss") && out.contains("zero-shot on the eval folder"), "{out}");
    // Starting again over a finished run is refused with a hint; resuming to a longer run works.
    let again = florence(&["train", "-q", "--config", &format!("{d}/train.toml")]);
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("--resume"));
    std::fs::write(dir.join("train.toml"), config(4)).unwrap();
    let (out, stderr) = ok(&["train", "-q", "--resume", "--config", &format!("{d}/train.toml")]);
    assert!(stderr.contains("from step 2"), "{stderr}");
    assert!(out.as_str().unwrap().contains("step 4: loss"));
    let lines = std::fs::read_to_string(dir.join("run/metrics.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 4);
    assert!(dir.join("run/metrics.png").exists() && dir.join("run/final.safetensors").exists());

    let w = format!("{d}/run/final.safetensors");
    let c = format!("{d}/run/config.json");
    let (zs, _) = ok(&[
        "eval",
        "zero-shot",
        "-q",
        "-w",
        &w,
        "-c",
        &c,
        "--folder",
        &format!("{d}/val"),
        "--templates",
        "none",
        "--json",
    ]);
    assert_eq!(zs["n"], 36);
    let folders = std::fs::read_dir(dir.join("val")).unwrap().count();
    assert_eq!(zs["classes"].as_u64().unwrap() as usize, folders);
    let top1 = zs["top1"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&top1) && zs["top5"].as_f64().unwrap() >= top1);
    // Linear probe and few-shot on the val folder against itself (a smoke test of the commands;
    // the probe itself is checked against scikit-learn in tests/linear_probe.rs).
    let val = format!("{d}/val");
    // Weak regularisation (C = 1e4): unit-norm features need large weights to separate 21 classes.
    let (lp, _) = ok(&[
        "eval",
        "linear-probe",
        "-q",
        "-w",
        &w,
        "-c",
        &c,
        "--train",
        &val,
        "--test",
        &val,
        "--c",
        "1e4",
        "--json",
    ]);
    assert_eq!(lp["train_n"], 36);
    assert!(lp["top1"].as_f64().unwrap() > 0.5, "a probe scored on its own training set fits most of it: {lp}");
    let (fs, _) = ok(&[
        "eval", "few-shot", "-q", "-w", &w, "-c", &c, "--train", &val, "--test", &val, "-k", "1", "--trials", "2",
        "--json",
    ]);
    assert_eq!(fs["trials"].as_array().unwrap().len(), 2);
    // k larger than a class has images: a clear error.
    let bad = florence(&["eval", "few-shot", "-q", "-w", &w, "-c", &c, "--train", &val, "--test", &val, "-k", "40"]);
    assert!(!bad.status.success());
    std::fs::remove_dir_all(&dir).ok();
}

/// Regressions for defects found by trying the CLI as a new user would: each used to exit 0 with
/// a wrong result, or abort the process.
#[test]
fn hostile_input_gives_errors_not_aborts_or_silent_garbage() {
    use burn::module::Param;
    let dir = tempdir("hostile");
    let w = weights();
    let chelsea = asset("chelsea.png");
    let fail = |args: &[&str], needles: &[&str]| {
        let out = florence(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        // Exit code 1 (an error), not a signal (an abort) and not 0.
        assert_eq!(out.status.code(), Some(1), "florence {args:?}:\n{stderr}");
        for n in needles {
            assert!(stderr.contains(n), "florence {args:?}: no `{n}` in\n{stderr}");
        }
    };

    // 1. `"image_size": 1000000000` aborted with `memory allocation of 62500000000000000 bytes
    //    failed` (SIGABRT).
    let mut config: serde_json::Value =
        serde_json::from_str(&florence::FlorenceConfig::preset("tiny-clip").unwrap().to_json()).unwrap();
    config["image"]["image_size"] = 1_000_000_000u64.into();
    let huge = dir.join("huge.json");
    std::fs::write(&huge, config.to_string()).unwrap();
    fail(
        &["classify", "--config", huge.to_str().unwrap(), "--weights", &w, "--image", &chelsea, "--labels", "cat,dog"],
        &["`image.image_size` is 1000000000", "max_model_image_size"],
    );

    // 2. One image and a link `loop -> .` was indexed 41 times.
    #[cfg(unix)]
    {
        let folder = dir.join("loop");
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::copy(&chelsea, folder.join("chelsea.png")).unwrap();
        std::os::unix::fs::symlink(".", folder.join("loop")).unwrap();
        let index = dir.join("loop.safetensors");
        let (_, stderr) = ok(&[
            "index",
            "--weights",
            &w,
            "--folder",
            folder.to_str().unwrap(),
            "--output",
            index.to_str().unwrap(),
            "-q",
        ]);
        assert!(stderr.contains("indexed 1 images"), "{stderr}");
        let (hits, _) = ok(&[
            "search",
            "--weights",
            &w,
            "--index",
            index.to_str().unwrap(),
            "--text",
            "a cat",
            "--top-k",
            "5",
            "--json",
        ]);
        assert_eq!(hits.as_array().unwrap().len(), 1, "{hits}");
    }

    // 3. Training on a JSONL file whose every image is missing exited 0 and saved the untouched
    //    weights as a checkpoint.
    let jsonl: String =
        (0..8).map(|i| format!("{{\"image\": \"gone/{i}.png\", \"caption\": \"caption {i}\"}}\n")).collect();
    std::fs::write(dir.join("missing.jsonl"), jsonl).unwrap();
    let toml = "model = \"tiny-clip\"\noutput = \"run\"\nbatch_size = 4\n[[data]]\nkind = \"jsonl\"\npath = \"missing.jsonl\"\n[optimizer]\nlr = 1e-3\ntotal_steps = 2\n";
    std::fs::write(dir.join("train.toml"), toml).unwrap();
    fail(
        &["train", "-q", "--config", dir.join("train.toml").to_str().unwrap()],
        &["no usable image-text pair", "gone/"],
    );
    assert!(!dir.join("run/final.safetensors").exists());
    let saved = std::fs::read_dir(dir.join("run/checkpoints")).map_or(0, |d| d.count());
    assert_eq!(saved, 0, "no checkpoint of untrained weights");

    // 4. A checkpoint holding NaN loaded, and `classify --json` printed `"probability": null`.
    let device = florence::device::default_device().unwrap();
    let mut model =
        florence::Florence::load(&florence::FlorenceConfig::preset("tiny-clip").unwrap(), &w, &device).unwrap();
    model.text_projection = Param::from_tensor(model.text_projection.val().mul_scalar(f32::NAN));
    let nan = dir.join("nan.safetensors");
    model.save_safetensors(&nan, burn::tensor::DType::F32).unwrap();
    fail(
        &["classify", "--weights", nan.to_str().unwrap(), "--image", &chelsea, "--labels", "cat,dog", "--json"],
        &["text_projection", "non-finite"],
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// `florence weights` lists the registry (table and JSON); an unknown `--weights` name is exit
/// code 1 with the known names; a registry name resolves through the hub cache offline, and a
/// cached file whose SHA-256 is not the registry's is an error naming both hashes. No network:
/// `HF_HUB_OFFLINE=1` and a private `HF_HOME`.
#[test]
fn weights_registry_lists_resolves_and_checks_hashes() {
    let dir = tempdir("registry");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_florence"))
            .args(args)
            .env_remove("FLORENCE_DEVICE")
            .env("HF_HUB_OFFLINE", "1")
            .env("HF_HOME", &dir)
            .output()
            .expect("run florence")
    };
    let names: Vec<&str> = florence::pretrained::registry().iter().map(|e| e.name).collect();
    let out = run(&["weights"]);
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    for n in &names {
        assert!(table.contains(n), "{n} not in\n{table}");
    }
    assert!(table.contains("in21k_yfcc14m_gcc15m_swin_base.pth") && table.contains("unicl-swin-t"), "{table}");
    let out = run(&["weights", "--json"]);
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let listed: Vec<&str> = json.as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(listed, names);
    assert_eq!(json[0]["preprocess"]["resize_shorter"], 256);
    assert_eq!(json[0]["sha256"], "e4bde31bbce5118e5442ff3fae209dec489ff2ccd1fff7847fa0dea162e65dc4");

    // Unknown names: exit code 1 and the list of names, from `weights NAME` and from `--weights`.
    let chelsea = asset("chelsea.png");
    let classify = ["classify", "--weights", "unicl-swin-x", "--image", &chelsea, "--labels", "a,b"];
    for args in [&["weights", "unicl-swin-x"][..], &classify[..]] {
        let out = run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains("unknown weights name `unicl-swin-x`"), "{stderr}");
        for n in &names {
            assert!(stderr.contains(n), "{n} not in\n{stderr}");
        }
    }
    // A registry name that is not cached, offline: the hub's offline error, not a download.
    let out = run(&["info", "unicl-swin-b"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("HF_HUB_OFFLINE"));
    // The wrong file in the cache at the entry's pinned commit: a hash error with both hashes.
    let entry = florence::pretrained::find("unicl-swin-b").unwrap();
    let hub = florence::hub::HubFile::parse(entry.hub.unwrap()).unwrap();
    let repo = format!("spaces--{}", hub.repo.replace('/', "--"));
    let snapshot = dir.join("hub").join(repo).join("snapshots").join(&hub.revision);
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::copy(weights(), snapshot.join(&hub.file)).unwrap();
    let out = run(&["info", "unicl-swin-b"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let found = florence::pretrained::sha256_file(&snapshot.join(&hub.file), &mut florence::progress::Silent).unwrap();
    let (expected, file) = (entry.sha256.unwrap(), hub.file.as_str());
    assert!(stderr.contains(expected) && stderr.contains(&found) && stderr.contains(file), "{stderr}");
    // A registry entry that is not on the hub says where to get it.
    let out = run(&["info", "unicl-swin-t-in21k-yfcc14m"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("releases/tag/v1.0"));
    std::fs::remove_dir_all(&dir).ok();
}
