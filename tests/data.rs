//! The batch stream: deterministic and resumable (batch b is a function of the seed and b),
//! every example once per epoch, prefetching equal to direct loading, parallel decoding equal
//! to serial, bad sources as typed errors.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use florence::data::synthetic::{Layout, Split, SyntheticConfig, write_dataset};
use florence::data::{AugmentConfig, BatchSource, Dataset, Loader};
use florence::preprocess::{DecodeOptions, PreprocessConfig};
use florence::text::tokenizer::Tokenizer;

fn dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("florence-data-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn source(data: Dataset, batch: usize, workers: usize) -> BatchSource {
    BatchSource {
        dataset: data,
        tokenizer: Tokenizer::clip().unwrap().with_context_length(16),
        augment: AugmentConfig { hflip: 0.5, ..AugmentConfig::default() },
        preprocess: PreprocessConfig::unicl(32),
        batch_size: batch,
        seed: 9,
        workers,
        decode: DecodeOptions::default(),
    }
}

#[test]
fn batches_are_deterministic_and_cover_each_epoch() {
    let d = dir("stream");
    let synth = SyntheticConfig { size: 32, ..SyntheticConfig::default() };
    write_dataset(&synth, Split::Train, 10, &d.join("caps"), Layout::Captions, &mut |_, _| {}).unwrap();
    write_dataset(&synth, Split::All, 6, &d.join("classes"), Layout::ClassFolders, &mut |_, _| {}).unwrap();
    let mut jsonl = Dataset::captions_jsonl(&d.join("caps/captions.jsonl")).unwrap();
    let csv = Dataset::captions_csv(&d.join("caps/captions.csv")).unwrap();
    assert_eq!(jsonl.examples, csv.examples, "the JSONL and CSV indexes describe the same pairs");
    let folder = Dataset::image_folder(&d.join("classes")).unwrap();
    jsonl.templates = vec!["{}".into()];
    let data = Dataset::concat(vec![jsonl, folder], vec!["a {}".into(), "a photo of a {}".into()]);
    assert_eq!(data.len(), 16);

    let src = source(data, 5, 2);
    // 16 examples, batches of 5: batch 3 straddles epochs 0 and 1.
    let mut cache = None;
    let seen: Vec<usize> = (0..3).flat_map(|b| src.load(b, &mut cache).unwrap().examples).collect();
    let b3 = src.load(3, &mut cache).unwrap();
    let epoch0: BTreeSet<usize> = seen.iter().copied().chain(b3.examples[..1].iter().copied()).collect();
    assert_eq!(epoch0.len(), 16, "every example once in epoch 0");

    // Same batch again, from a fresh cache and with serial decoding: identical pixels and text.
    let again = source(src.dataset.clone(), 5, 1).load(3, &mut None).unwrap();
    assert_eq!(again.images, b3.images);
    assert_eq!(again.ids, b3.ids);
    assert_eq!(again.labels, b3.labels);
    assert_eq!(again.captions, b3.captions);
    // A different seed, a different stream.
    let mut other = source(src.dataset.clone(), 5, 2);
    other.seed = 10;
    assert_ne!(other.load(3, &mut None).unwrap().images, b3.images);

    // The prefetching loader, started mid-stream (a resume), yields what direct loads give.
    let arc = Arc::new(src);
    let mut loader = Loader::start(arc.clone(), 2, 2).unwrap();
    for b in 2..6 {
        let x = loader.next_batch().unwrap();
        let y = arc.load(b, &mut None).unwrap();
        assert_eq!((x.index, &x.images, &x.ids), (b, &y.images, &y.ids));
    }
    drop(loader);
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn bad_sources_are_errors() {
    let d = dir("bad");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("a.jsonl"), "{\"image\": \"x.png\"}\n").unwrap();
    let e = Dataset::captions_jsonl(&d.join("a.jsonl")).unwrap_err().to_string();
    assert!(e.contains("line 1") && e.contains("caption"), "{e}");
    std::fs::write(d.join("b.csv"), "file,words\nx.png,hi\n").unwrap();
    assert!(Dataset::captions_csv(&d.join("b.csv")).unwrap_err().to_string().contains("`image`"));
    std::fs::write(d.join("loose.png"), b"not an image").unwrap();
    assert!(Dataset::image_folder(&d).unwrap_err().to_string().contains("class folder"));
    assert!(Dataset::captions_jsonl(&d.join("missing.jsonl")).is_err());
    let mut s = source(Dataset::captions_csv(&d.join("b.csv")).err().map(|_| Dataset::default()).unwrap(), 4, 1);
    assert!(s.validate().is_err(), "no examples");
    s.dataset = Dataset {
        examples: vec![florence::data::Example {
            path: d.join("loose.png"),
            target: florence::data::Target::Caption("x".into()),
        }],
        ..Dataset::default()
    };
    s.dataset.templates = vec!["{}".into()];
    s.batch_size = 0;
    assert!(s.validate().is_err(), "batch size 0");
    // An undecodable file is left out of its batch and reported.
    s.batch_size = 2;
    let b = s.load(0, &mut None).unwrap();
    assert!(b.is_empty() && b.skipped.len() == 2);
    std::fs::remove_dir_all(&d).ok();
}
