//! The CLIP tokenizer against open_clip (`tests/fixtures/tokenizer_corpus.json`, written by
//! `scripts/reference/make_tokenizer_fixtures.py` with open_clip_torch 3.2.0 / ftfy 6.3.1).
//! Ids must be exactly equal; the few texts where florence's clean-up is known to differ from
//! ftfy are listed in `KNOWN_DIFFERENCES` with florence's output, so a change either way fails.

use florence::FlorenceError;
use florence::text::clean::clean_text;
use florence::text::tokenizer::{Padding, Tokenizer};
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    context_length: usize,
    sot: u32,
    eot: u32,
    entries: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    text: String,
    cleaned: String,
    ids: Vec<u32>,
    untruncated_len: usize,
}

/// Texts where florence's clean-up differs from ftfy's, with what florence gives (cleaned text)
/// and why. See `florence::text::clean` for the list of what is not reproduced.
const KNOWN_DIFFERENCES: &[(&str, &str, &str)] = &[(
    "РїСЂРёРІРµС‚ РјРёСЂ",
    "рїсђрёрірµс' рјрёсђ",
    "mojibake through Windows-1251 (and the other non-Latin-1 code pages ftfy tries) is not repaired; ftfy gives \"привет мир\"",
)];

fn fixture() -> Fixture {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tokenizer_corpus.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("fixture json")
}

fn known(text: &str) -> Option<&'static (&'static str, &'static str, &'static str)> {
    KNOWN_DIFFERENCES.iter().find(|(t, _, _)| *t == text)
}

#[test]
fn corpus_ids_equal_open_clip() {
    let fx = fixture();
    let tok = Tokenizer::clip().unwrap();
    assert_eq!(tok.context_length(), fx.context_length);
    assert_eq!((tok.sot(), tok.eot()), (fx.sot, fx.eot));
    assert_eq!(tok.vocab_size(), 49408);
    let mut failures = Vec::new();
    for e in &fx.entries {
        if known(&e.text).is_some() {
            continue;
        }
        let ids = tok.encode(&e.text).unwrap();
        if ids != e.ids {
            failures.push(format!(
                "{:?}\n  cleaned {:?} (want {:?})\n  got  {:?}\n  want {:?}",
                e.text,
                clean_text(&e.text),
                e.cleaned,
                ids,
                e.ids
            ));
        }
    }
    assert!(failures.is_empty(), "{} of {} entries differ:\n{}", failures.len(), fx.entries.len(), failures.join("\n"));
    assert!(fx.entries.len() >= 200);
}

#[test]
fn corpus_cleaned_text_equals_open_clip() {
    let fx = fixture();
    let mut failures = Vec::new();
    for e in &fx.entries {
        let got = clean_text(&e.text);
        match known(&e.text) {
            Some((_, ours, why)) => {
                assert_ne!(got, e.cleaned, "{:?} now matches open_clip; drop it from KNOWN_DIFFERENCES", e.text);
                assert_eq!(got, *ours, "known difference ({why}) changed for {:?}", e.text);
            }
            None if got != e.cleaned => failures.push(format!("{:?}: got {got:?}, want {:?}", e.text, e.cleaned)),
            None => {}
        }
    }
    assert!(failures.is_empty(), "{} cleaned texts differ:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn known_differences_are_in_the_corpus() {
    let fx = fixture();
    for (text, _, _) in KNOWN_DIFFERENCES {
        assert!(fx.entries.iter().any(|e| e.text == *text), "{text:?} not in the fixture");
    }
}

#[test]
fn long_text_keeps_bos_and_eos_at_exact_length() {
    let fx = fixture();
    let tok = Tokenizer::clip().unwrap();
    let long: Vec<&Entry> = fx.entries.iter().filter(|e| e.untruncated_len > 77).collect();
    assert!(long.len() >= 5);
    for e in long {
        let ids = tok.encode(&e.text).unwrap();
        assert_eq!(ids.len(), 77);
        assert_eq!((ids[0], ids[76]), (49406, 49407));
    }
    let ids = tok.clone().with_context_length(16).encode(&"word ".repeat(50)).unwrap();
    assert_eq!(ids.len(), 16);
    assert_eq!((ids[0], ids[15]), (49406, 49407));
    assert!(ids[1..15].iter().all(|&i| i != 49407));
}

#[test]
fn empty_text_is_bos_eos() {
    let tok = Tokenizer::clip().unwrap();
    assert_eq!(tok.encode("").unwrap(), vec![49406, 49407]);
    assert_eq!(tok.encode(" \t\n ").unwrap(), vec![49406, 49407]);
}

#[test]
fn padding_modes() {
    let tok = Tokenizer::clip().unwrap();
    assert_eq!(tok.padding(), Padding::Eos);
    let unpadded = tok.encode("a photo of a cat").unwrap();
    assert_eq!(unpadded, vec![49406, 320, 1125, 539, 320, 2368, 49407]);

    let rows = tok.encode_batch(&["a photo of a cat", ""]).unwrap();
    assert!(rows.iter().all(|r| r.len() == 77));
    assert_eq!(&rows[0][..7], &unpadded[..]);
    assert!(rows[0][7..].iter().all(|&i| i == 49407));
    assert_eq!(&rows[1][..2], &[49406, 49407]);

    let rows = tok.clone().with_padding(Padding::Zero).encode_batch(&["a photo of a cat"]).unwrap();
    assert_eq!(&rows[0][..7], &unpadded[..]);
    assert!(rows[0][7..].iter().all(|&i| i == 0));
}

#[test]
fn tokenize_tensor_shape() {
    let device = Default::default();
    let tok = Tokenizer::clip().unwrap();
    let t = tok.tokenize(&["a photo of a cat", "a dog", ""], &device).unwrap();
    assert_eq!(t.dims(), [3, 77]);
    let data: Vec<i64> = t.into_data().try_to_vec_as::<i64>().unwrap();
    assert_eq!(&data[..7], &[49406, 320, 1125, 539, 320, 2368, 49407]);
    assert_eq!(data[77], 49406);

    let t = tok.clone().with_context_length(16).with_padding(Padding::Zero).tokenize(&["x"], &device).unwrap();
    assert_eq!(t.dims(), [1, 16]);

    assert!(matches!(tok.tokenize(&[], &device), Err(FlorenceError::Input(_))));
}

#[test]
fn context_length_too_small_is_an_error() {
    let tok = Tokenizer::clip().unwrap().with_context_length(1);
    assert!(matches!(tok.encode("x"), Err(FlorenceError::Tokenizer(_))));
}

#[test]
fn from_file_errors_are_typed() {
    let dir = std::env::temp_dir().join(format!("florence-tokenizer-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let missing = dir.join("does-not-exist.json");
    assert!(matches!(Tokenizer::from_file(&missing), Err(FlorenceError::Io { .. })));

    let garbage = dir.join("garbage.json");
    std::fs::write(&garbage, b"\x00\x01 not a tokenizer {").unwrap();
    let err = Tokenizer::from_file(&garbage).unwrap_err();
    assert!(matches!(err, FlorenceError::Tokenizer(_)), "{err}");

    let not_clip = dir.join("not_clip.json");
    std::fs::write(&not_clip, r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],"normalizer":null,"pre_tokenizer":null,"post_processor":null,"decoder":null,"model":{"type":"BPE","vocab":{"a":0},"merges":[]}}"#).unwrap();
    let err = Tokenizer::from_file(&not_clip).unwrap_err();
    assert!(matches!(err, FlorenceError::Tokenizer(_)), "{err}");

    let good = dir.join("clip_bpe.json");
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/tokenizer/clip_bpe.json"), &good).unwrap();
    let tok = Tokenizer::from_file(&good).unwrap();
    assert_eq!(
        tok.encode("Hello &amp; “world”").unwrap(),
        Tokenizer::clip().unwrap().encode("Hello &amp; “world”").unwrap()
    );

    std::fs::remove_dir_all(&dir).ok();
}
