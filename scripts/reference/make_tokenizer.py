#!/usr/bin/env python3
"""Build `assets/tokenizer/clip_bpe.json`: the CLIP BPE tokenizer as a Hugging Face `tokenizers`
JSON, with the vocabulary and merges of open_clip's `SimpleTokenizer`.

Source: the BPE merges that the `open-clip-torch` package ships,
`open_clip/bpe_simple_vocab_16e6.txt.gz` (OpenAI CLIP's vocabulary, MIT). The vocabulary is
built exactly as `open_clip.tokenizer.SimpleTokenizer.__init__` builds it:

    vocab  = bytes_to_unicode() values                      (ids 0..255)
           + the same with '</w>' appended                  (ids 256..511)
           + ''.join(merge) for the first 48,894 merges     (ids 512..49405)
           + [start-of-text, end-of-text]                   (ids 49406, 49407)

so 49,408 ids. The special tokens are named `<|startoftext|>` / `<|endoftext|>` as in OpenAI CLIP
and Hugging Face's `openai/clip-vit-base-patch32` (open_clip 3.x names them `<start_of_text>` /
`<end_of_text>`; the ids are the same).

The file follows the layout of Hugging Face's `openai/clip-vit-base-patch32` `tokenizer.json`
(BPE model with `end_of_word_suffix: "</w>"`, a `Split` + `ByteLevel` pre-tokenizer, a
RoBERTa-style post-processor), with two deliberate differences so that it reproduces open_clip
rather than Hugging Face:

* **no normalizer.** open_clip cleans text (`ftfy.fix_text`, `html.unescape` twice, whitespace
  folding, lower-casing: `_clean_lower` in open_clip's tokenizer.py) before BPE. Hugging Face's
  file only does NFC + whitespace + lower-case, which is not the same. florence runs the full
  clean-up in Rust (`src/text/clean.rs`) and feeds the cleaned text to this file.
* **the split regex is open_clip's**, including its `re.IGNORECASE` (as `(?i)`, which matters for
  e.g. `'ſ`) and its special-token alternatives `<start_of_text>|<end_of_text>` (open_clip maps a
  literal `<start_of_text>` in the text to id 49406; florence does that substitution in Rust,
  because a `tokenizers` added token would also match inside longer punctuation runs, where
  open_clip's regex does not). A literal `<|startoftext|>` in the text is ordinary text for
  open_clip, so the added tokens are marked special and florence encodes them as text.

Usage (writes the asset, then checks it against open_clip on a few strings):

    python3.11 scripts/reference/make_tokenizer.py [--out assets/tokenizer/clip_bpe.json]
"""

import argparse
import gzip
import json
import os

from open_clip.tokenizer import SimpleTokenizer, bytes_to_unicode, default_bpe

# open_clip tokenizer.py, SimpleTokenizer.__init__: `merges[1:49152-256-2+1]`.
N_MERGES = 49152 - 256 - 2
SOT, EOT = "<|startoftext|>", "<|endoftext|>"
# open_clip tokenizer.py, SimpleTokenizer.__init__: `special + r"""|'s|'t|..."""`, re.IGNORECASE.
SPLIT_REGEX = (
    r"(?i)<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"
)


def build(bpe_path: str) -> dict:
    lines = gzip.open(bpe_path).read().decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1 : N_MERGES + 1]]
    assert len(merges) == N_MERGES and all(len(m) == 2 for m in merges)
    byte_chars = list(bytes_to_unicode().values())
    vocab_list = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m) for m in merges]
    vocab_list += [SOT, EOT]
    vocab = {tok: i for i, tok in enumerate(vocab_list)}
    assert len(vocab) == len(vocab_list) == 49408, "duplicate vocabulary entries"
    added = [
        {"id": vocab[t], "content": t, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True}
        for t in (SOT, EOT)
    ]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": SPLIT_REGEX}, "behavior": "Removed",
                 "invert": True},
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                 "use_regex": False},
            ],
        },
        "post_processor": {
            "type": "RobertaProcessing",
            "sep": [EOT, vocab[EOT]],
            "cls": [SOT, vocab[SOT]],
            "trim_offsets": False,
            "add_prefix_space": False,
        },
        "decoder": {
            "type": "Sequence",
            "decoders": [
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                 "use_regex": False},
                {"type": "Replace", "pattern": {"String": "</w>"}, "content": " "},
            ],
        },
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": "</w>",
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": [list(m) for m in merges],
        },
    }


def check(path: str) -> None:
    """Encode a few cleaned strings with the written file (Python `tokenizers`) and open_clip."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(path)
    tok.encode_special_tokens = True  # a literal "<|endoftext|>" is text for open_clip
    ref = SimpleTokenizer()
    for text in ["a photo of a cat.", "hello, world! it's 2024", "naïve café ☕ 日本語",
                 "don't stop-believin' 123 ÿ", "<|endoftext|> x", "<start_of_text>y"]:
        cleaned = ref.clean_fn(text)
        ids = tok.encode(cleaned, add_special_tokens=False).ids
        want = ref.encode(text)
        if "<start_of_text>" in cleaned:
            continue  # the Rust side substitutes this word; not the file's job
        assert ids == want, (text, ids, want)
    print("ok: matches open_clip on the sample strings")


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    default_out = os.path.join(here, "..", "..", "assets", "tokenizer", "clip_bpe.json")
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=default_out)
    ap.add_argument("--bpe", default=default_bpe())
    args = ap.parse_args()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(build(args.bpe), f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes)")
    check(args.out)


if __name__ == "__main__":
    main()
