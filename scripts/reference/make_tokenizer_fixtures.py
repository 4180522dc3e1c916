#!/usr/bin/env python3
"""Write `tests/fixtures/tokenizer_corpus.json`: a varied text corpus with what open_clip makes
of each text, for `tests/tokenizer.rs`.

For every text the fixture holds
* `cleaned`: open_clip's clean-up, `SimpleTokenizer.clean_fn(text)` (= `_clean_lower`:
  `ftfy.fix_text`, `html.unescape` twice, strip, whitespace folding, lower-casing);
* `ids`: `open_clip.tokenize([text], context_length=77)[0]` without its zero padding, i.e.
  `[sot] + encode(text) + [eot]`, cut to 77 with the last id set to eot.

Versions (pinned in requirements.txt): open_clip_torch 3.2.0, ftfy 6.3.1, python 3.11.

    python3.11 scripts/reference/make_tokenizer_fixtures.py [--out tests/fixtures/tokenizer_corpus.json]
"""

import argparse
import json
import os
import random

import ftfy
import open_clip
import torch
from open_clip.tokenizer import SimpleTokenizer

CONTEXT = 77

CORPUS = [
    # plain, punctuation, digits, mixed case
    "",
    "   ",
    "a photo of a cat.",
    "A Photo Of A DOG!!!",
    "Hello, World! How's it going? I'm fine; you'll see... they've gone, we'd go, it's, isn't",
    "IT'S, I'M, WE'LL, THEY'RE, YOU'VE, SHE'D, DON'T",
    "e-mail: someone@example.com, url https://example.org/path?q=1&r=2#frag",
    "Prices: $3.50, €12, £7, ¥1000, 50% off; 3.14159 2024-01-31 1,000,000 007",
    "x² + y³ = z¹; ½ ¼ ¾ ⅓ Ⅻ ① ٣ ४ 〇",
    "(parentheses) [brackets] {braces} <angles> \"quotes\" 'single' `back` ~tilde^ |pipe| \\slash/",
    "!!!???...,,,;;;:::---___+++===***&&&%%%$$$###@@@",
    "camelCaseWord snake_case_word kebab-case-word PascalCase ALLCAPS",
    "a" * 30 + " " + "ab" * 20,
    # accents, NFC / NFD
    "naïve café résumé façade jalapeño Ångström Øre Straße Œuvre",
    "cafe\u0301 nai\u0308ve A\u030angstro\u0308m",  # decomposed: ftfy NFC composes
    "Ελληνικά ΟΔΟΣ Σίσυφος ΣΊΣΥΦΟΣ",  # Greek, final sigma on lower-casing
    "İstanbul ıi DİYARBAKIR",  # Turkish dotted/dotless i
    "ǅemal ǈubljana ǋ",  # titlecase digraphs (ftfy splits them)
    # non-Latin scripts
    "日本語のテキストと漢字、かな。中文句子，标点！한국어 문장입니다.",
    "Привет, мир! Съешь же ещё этих мягких французских булок.",
    "مرحبا بالعالم! هذا نص عربي ١٢٣",
    "नमस्ते दुनिया। यह हिन्दी पाठ है। १२३",
    "שלום עולם ไทย ภาษา ქართული Հայերեն አማርኛ",
    # emoji
    "I ❤️ 🍕 and 🐱‍👤 😀😃😄",
    "family 👨‍👩‍👧‍👦 thumbs 👍🏽 👍🏿 flags 🇺🇸🇯🇵 🏴󠁧󠁢󠁷󠁬󠁳󠁿 keycap 1️⃣ #️⃣",
    "🧑🏻‍🤝‍🧑🏿 woman technologist 👩‍💻 rainbow flag 🏳️‍🌈",
    # HTML entities
    "Tom &amp; Jerry",
    "Tom &amp;amp; Jerry",
    "a &lt;b&gt; c",
    "it&#39;s &#x27;quoted&#x27; &#8217;curly&#8217; &#128512;",
    "non&nbsp;breaking&nbsp;space",
    "Tom &amp Jerry &lt3 &copy 2024 &notit; &not",
    "&amp;amp;amp; triple",
    "&AMP; &EACUTE; P&EACUTE;REZ &NTILDE; &nTILDE; &Eacute;",
    "&hellip; &mdash; &ldquo;x&rdquo; &euro;5 &#0; &#x110000; &#65;&#66;",
    "<b>bold</b> &amp;amp; with a tag",
    "line one &amp;amp;\nline two has < so &amp;amp;",
    "&semi; &ampx; &amp;x; &#x41 &#65 &#1234567890;",
    "a < b &amp;amp;amp; (ftfy does not unescape a line with <)",
    # quotes, ligatures, width
    "“curly double” ‘curly single’ ‚low‛ „low double‟ ʼmodifier",
    "ﬁnd the ﬂower, ﬀ ﬃ ﬄ ﬅ ﬆ Ĳ ĳ ŉ",
    "ＦＵＬＬＷＩＤＴＨ　ｔｅｘｔ　１２３！？ ｶﾀｶﾅ ﾊﾟﾝ ￥￦",
    # whitespace and controls
    "many     spaces\t\ttabs\n\nnewlines\r\nCRLF\rCR",
    "  leading and trailing  \n",
    "zero\u200bwidth\u200cnon\u200djoiner\ufeffbom\u00a0nbsp\u2003em\u3000ideographic",
    "bell\x07null\x00esc\x1b[31mred\x1b[0m del\x7f vt\x0bff\x0c",
    "line\u2028sep\u2029para\x85nel",
    "c1 controls \x80 \x91quoted\x92 \x96 \x9d",
    "unit\x1fsep\x1crec\x1d\x1e",
    "arabic controls \u206a\u206f interlinear \ufff9\ufffa\ufffb obj \ufffc",
    # mojibake
    "cafÃ©",
    "The cafÃ© serves crÃ¨me brÃ»lÃ©e",
    "Ã©tÃ© Ã  la plage",
    "â€œquotedâ€\x9d and donâ€™t",
    "Ð¿Ñ€Ð¸Ð²ÐµÑ‚",
    "ã‚¹ã‚¿ãƒ¼",
    "schÃ¶n und groÃŸ",
    "cafÃ© 日本",  # mixed: not encodable as one single-byte charset
    "Ã¤",
    "voilÃ le travail",
    "Ã la mode",
    "âœ” No problems",
    "the Â£5 note",
    "РїСЂРёРІРµС‚ РјРёСЂ",  # UTF-8 read as Windows-1251
    "Ã\x80 and Ã\x85",  # C1 controls in Latin-1 mojibake
    # special-token lookalikes
    "<|startoftext|> and <|endoftext|>",
    "<start_of_text> a <end_of_text>",
    "<START_OF_TEXT>x.<start_of_text>",
    "it'ſ and 'ſt",
    # long texts (over 77 tokens)
    " ".join(["word"] * 100),
    "The quick brown fox jumps over the lazy dog. " * 12,
    "supercalifragilisticexpialidocious " * 20,
    "日本語" * 60,
    "🙂" * 80,
    "a, " * 40,
]


def random_texts(n: int, seed: int = 0) -> list[str]:
    """Deterministic random mixtures of the awkward characters above."""
    pool = list(
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
        "     \t\n.,;:!?'\"-_()[]{}<>/\\@#$%^&*+=~`|"
        "éèêëàâäôöûüçñßÉÀÖÜœæøåÅ"
        "ﬁﬂ“”‘’…–—•€£¥©®™°±²³½"
        "ＡＢＣａｂｃ１２３！？　"
        "日本語漢字かなカナ한국어"
        "привет мир ΑΒΓαβγ"
        "مرحبا नमस्ते"
        "😀👍🏽❤️🇫🇷"
    ) + ["&amp;", "&lt;", "&#39;", "&nbsp;", "&amp", "\u200d", "\u0301", "\x07", "Ã©", "'s", "'ll"]
    rng = random.Random(seed)
    return ["".join(rng.choice(pool) for _ in range(rng.randint(1, 120))) for _ in range(n)]


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    default_out = os.path.join(here, "..", "..", "tests", "fixtures", "tokenizer_corpus.json")
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=default_out)
    ap.add_argument("--random", type=int, default=150, help="number of random mixtures")
    args = ap.parse_args()

    tok = SimpleTokenizer()
    texts = CORPUS + random_texts(args.random)
    batch = open_clip.tokenize(texts, context_length=CONTEXT)  # [N, 77], zero padded
    entries = []
    for text, row in zip(texts, batch):
        full = [tok.sot_token_id] + tok.encode(text) + [tok.eot_token_id]
        ids = full[:CONTEXT]
        ids[-1] = tok.eot_token_id
        # the unpadded ids must be what open_clip.tokenize put in the row
        assert row[: len(ids)].tolist() == ids and not row[len(ids) :].any(), text
        entries.append({"text": text, "cleaned": tok.clean_fn(text), "ids": ids,
                        "untruncated_len": len(full)})
    fixture = {
        "source": "open_clip.tokenize / SimpleTokenizer (clean='lower'), context_length 77",
        "versions": {"open_clip_torch": open_clip.__version__, "ftfy": ftfy.__version__,
                     "torch": torch.__version__},
        "context_length": CONTEXT,
        "sot": tok.sot_token_id,
        "eot": tok.eot_token_id,
        "entries": entries,
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(fixture, f, ensure_ascii=True, indent=None, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {args.out}: {len(entries)} entries, {os.path.getsize(args.out)} bytes")


if __name__ == "__main__":
    main()
