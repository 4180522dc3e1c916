//! The bundled shapes model (`assets/shapes/`): it loads through the strict loader, and its
//! zero-shot accuracy on freshly generated images matches what `assets/shapes/results.json`
//! records, on the held-out colour-shape pairs (never seen in training) and on seen pairs.

use std::path::PathBuf;

use florence::data::synthetic::{Layout, Split, SyntheticConfig, write_dataset};
use florence::eval::zero_shot_folder;
use florence::preprocess::Preprocessor;
use florence::progress::Silent;
use florence::text::tokenizer::Tokenizer;
use florence::zeroshot::Templates;
use florence::{Florence, FlorenceConfig};

fn asset(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/shapes").join(p)
}

#[test]
fn bundled_model_reproduces_its_recorded_zero_shot_accuracy() {
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(asset("results.json")).unwrap()).unwrap();
    let config = FlorenceConfig::load(asset("config.json")).unwrap();
    let device = florence::device::default_device().unwrap();
    let model = Florence::load(&config, asset("model.safetensors"), &device).unwrap();
    let tokenizer = Tokenizer::clip().unwrap().with_context_length(config.text.context_length);
    let pre = Preprocessor::new(config.preprocess()).unwrap();
    let templates = Templates::from_file(&asset("shapes-templates.txt")).unwrap();
    let labels: Vec<String> =
        std::fs::read_to_string(asset("labels.txt")).unwrap().lines().map(str::to_string).collect();
    assert_eq!(labels.len(), 36);

    for (key, split) in [("test_held_out", Split::HeldOut), ("test_seen", Split::Train)] {
        let r = &results[key];
        let (n, seed) = (r["n"].as_u64().unwrap() as usize, r["seed"].as_u64().unwrap());
        let dir = std::env::temp_dir().join(format!("florence-bundled-{key}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let synth = SyntheticConfig { seed, ..SyntheticConfig::default() };
        write_dataset(&synth, split, n, &dir, Layout::ClassFolders, &mut |_, _| {}).unwrap();
        let report =
            zero_shot_folder(&model, &tokenizer, &pre, &dir, &templates, Some(&labels), 64, &mut Silent).unwrap();
        std::fs::remove_dir_all(&dir).ok();
        let (top1, top5) = (f64::from(report.top1), f64::from(report.top5));
        eprintln!("{key}: top-1 {top1:.4}, top-5 {top5:.4} over {} images, 36 candidate labels", report.n);
        assert_eq!(report.n, n);
        // Another CPU may pick other SIMD kernels; a borderline image may flip. Two images' worth.
        let tol = 2.0 / n as f64 + 1e-9;
        assert!((top1 - r["top1"].as_f64().unwrap()).abs() <= tol, "{key} top-1 {top1} vs recorded {}", r["top1"]);
        assert!((top5 - r["top5"].as_f64().unwrap()).abs() <= tol, "{key} top-5 {top5} vs recorded {}", r["top5"]);
        // Far above chance (1/36 top-1, 5/36 top-5) in both cases.
        assert!(top1 > 0.2 && top5 > 0.9, "{key}: {top1} {top5}");
    }
}
