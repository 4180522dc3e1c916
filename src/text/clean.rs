//! open_clip's text clean-up before BPE, in Rust.
//!
//! open_clip's `SimpleTokenizer.encode` (open_clip `tokenizer.py`, clean `'lower'`) runs
//! `_clean_lower(text) = whitespace_clean(basic_clean(text)).lower()` where
//!
//! ```text
//! basic_clean(text)      = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
//! whitespace_clean(text) = " ".join(text.split()).strip()
//! ```
//!
//! Hugging Face's fast CLIP tokenizer skips most of this, so the ids differ on e.g. `&amp;`,
//! curly quotes, ligatures or fullwidth text. [`clean_text`] reproduces it: the Python
//! `html.unescape` exactly (named entities via `htmlize`'s HTML5 table, numeric references with
//! Python's `_replace_charref` rules), and the parts of `ftfy.fix_text` 6.3.1 (default config)
//! that real captions hit, in ftfy's order (`ftfy.fix_and_explain`), per line segment, repeated
//! until nothing changes:
//!
//! 1. `unescape_html` (only while no line so far contained `<`: ftfy's `"auto"` mode);
//! 2. `fix_encoding`: mojibake repair when ftfy's `is_bad` heuristic fires (its `BADNESS_RE`,
//!    reimplemented in full), for UTF-8 that was decoded as Latin-1 or Windows-1252 (with
//!    `restore_byte_a0`, `replace_lossy_sequences` and the `utf-8-variants` decoding),
//!    `decode_inconsistent_utf8` (mojibake runs inside otherwise good text), and the C1-control
//!    fallbacks;
//! 3. `fix_c1_controls`, `fix_latin_ligatures`, `fix_character_width`, `uncurl_quotes`,
//!    `fix_line_breaks`, `remove_terminal_escapes`, `remove_control_chars`;
//! 4. NFC.
//!
//! Known differences from ftfy (documented and pinned by `tests/tokenizer.rs`):
//! * mojibake through the other single-byte code pages ftfy tries (Windows-1250/1251/1253/1254/
//!   1257, ISO-8859-2, MacRoman, CP437) is left as is;
//! * segments over ftfy's `max_decode_length` (1,000,000 code points without a newline) are not
//!   split; Unicode-version differences between Python 3.11 and Rust's tables (lower-casing,
//!   NFC, `\s`) are possible on recently added characters.

use std::borrow::Cow;

use unicode_normalization::UnicodeNormalization;

/// What open_clip feeds to BPE: `_clean_lower(text)` (see the module docs).
pub fn clean_text(text: &str) -> String {
    let fixed = fix_text(text);
    let unescaped = html_unescape(&html_unescape(&fixed));
    // `" ".join(text.split())` with Python's `str.split()` whitespace; also does the `strip()`s.
    let folded = unescaped.split(is_py_space).filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ");
    // Python's `str.lower()`: full case mapping with the final-sigma rule, as `str::to_lowercase`.
    folded.to_lowercase()
}

/// Python's `str.isspace()` (what `str.split()` and `re`'s `\s` split on): Unicode White_Space
/// plus the ASCII separators U+001C..U+001F.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

// ---------------------------------------------------------------------------------------------
// ftfy.fix_text
// ---------------------------------------------------------------------------------------------

/// `ftfy.fix_text(text)` with the default `TextFixerConfig` (see the module docs for what is
/// covered). Segments end after each `\n`; once a segment contains `<`, HTML unescaping stays
/// off for the rest of the text (ftfy's `config._replace(unescape_html=False)`).
pub fn fix_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut unescape = true;
    for segment in text.split_inclusive('\n') {
        if unescape && segment.contains('<') {
            unescape = false;
        }
        out.push_str(&fix_segment(segment, unescape));
    }
    out
}

/// `ftfy.fix_and_explain`: the fixers in ftfy's order, then NFC, until a fixed point.
fn fix_segment(segment: &str, unescape: bool) -> String {
    let mut text = segment.to_string();
    loop {
        let orig = text.clone();
        if unescape {
            text = ftfy_unescape_html(&text);
        }
        text = fix_encoding(&text);
        text = fix_c1_controls(&text);
        text = fix_latin_ligatures(&text);
        text = fix_character_width(&text);
        text = uncurl_quotes(&text);
        text = fix_line_breaks(&text);
        text = remove_terminal_escapes(&text);
        text = remove_control_chars(&text);
        text = text.nfc().collect();
        if text == orig {
            return text;
        }
    }
}

/// ftfy `fixes.fix_latin_ligatures` (its `LIGATURES` table).
fn fix_latin_ligatures(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            'Ĳ' => out.push_str("IJ"),
            'ĳ' => out.push_str("ij"),
            'ŉ' => out.push_str("ʼn"),
            'Ǳ' => out.push_str("DZ"),
            'ǲ' => out.push_str("Dz"),
            'ǳ' => out.push_str("dz"),
            'Ǆ' => out.push_str("DŽ"),
            'ǅ' => out.push_str("Dž"),
            'ǆ' => out.push_str("dž"),
            'Ǉ' => out.push_str("LJ"),
            'ǈ' => out.push_str("Lj"),
            'ǉ' => out.push_str("lj"),
            'Ǌ' => out.push_str("NJ"),
            'ǋ' => out.push_str("Nj"),
            'ǌ' => out.push_str("nj"),
            'ﬀ' => out.push_str("ff"),
            'ﬁ' => out.push_str("fi"),
            'ﬂ' => out.push_str("fl"),
            'ﬃ' => out.push_str("ffi"),
            'ﬄ' => out.push_str("ffl"),
            'ﬅ' => out.push_str("ſt"),
            'ﬆ' => out.push_str("st"),
            _ => out.push(c),
        }
    }
    out
}

/// ftfy `fixes.fix_character_width` (its `WIDTH_MAP`): U+3000 to a space, and every character
/// in U+FF01..U+FFEF to its NFKC form.
fn fix_character_width(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\u{3000}' => out.push(' '),
            '\u{ff01}'..='\u{ffef}' => out.extend(std::iter::once(c).nfkc()),
            _ => out.push(c),
        }
    }
    out
}

/// ftfy `fixes.uncurl_quotes`: `[\u02bc\u2018-\u201b]` to `'`, `[\u201c-\u201f]` to `"`.
fn uncurl_quotes(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\u{2bc}' | '\u{2018}'..='\u{201b}' => '\'',
            '\u{201c}'..='\u{201f}' => '"',
            _ => c,
        })
        .collect()
}

/// ftfy `fixes.fix_line_breaks`: CRLF, CR, U+2028, U+2029 and U+0085 to `\n`.
fn fix_line_breaks(text: &str) -> String {
    text.replace("\r\n", "\n").replace(['\r', '\u{2028}', '\u{2029}', '\u{85}'], "\n")
}

/// ftfy `fixes.remove_terminal_escapes`: `ANSI_RE = "\033\[((?:\d|;)*)([a-zA-Z])"` removed.
/// (`\d` is taken as ASCII digits.)
fn remove_terminal_escapes(text: &str) -> String {
    if !text.contains('\u{1b}') {
        return text.to_string();
    }
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '\u{1b}' && chars.get(i + 1) == Some(&'[') {
            let mut j = i + 2;
            while j < chars.len() && (chars[j].is_ascii_digit() || chars[j] == ';') {
                j += 1;
            }
            if j < chars.len() && chars[j].is_ascii_alphabetic() {
                i = j + 1;
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// ftfy `fixes.remove_control_chars` (its `CONTROL_CHARS`): U+00..08, U+0B, U+0E..1F, U+7F,
/// U+206A..206F, U+FEFF, U+FFF9..FFFC removed.
fn remove_control_chars(text: &str) -> String {
    text.chars()
        .filter(|&c| {
            !matches!(c,
                '\u{0}'..='\u{8}' | '\u{b}' | '\u{e}'..='\u{1f}' | '\u{7f}'
                | '\u{206a}'..='\u{206f}' | '\u{feff}' | '\u{fff9}'..='\u{fffc}')
        })
        .collect()
}

/// ftfy `fixes.fix_c1_controls`: each C1 control `[\x80-\x9f]` read as its Windows-1252 byte
/// (sloppy: the five unassigned bytes stay as they are).
fn fix_c1_controls(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\u{80}'..='\u{9f}' => cp1252_decode(c as u8).unwrap_or(c),
            _ => c,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// HTML: Python's html.unescape and ftfy's stricter unescape_html
// ---------------------------------------------------------------------------------------------

/// Python's `html.unescape`: every match of
/// `&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)` replaced by `_replace_charref`.
///
/// Named references go through `htmlize` (the same WHATWG table as Python's `html5` dict); for a
/// name Python does not know exactly, both take the longest/only legacy no-semicolon prefix
/// (`&ampx` gives `&x`), since no legacy name is a prefix of another.
pub fn html_unescape(text: &str) -> String {
    if !text.contains('&') {
        return text.to_string();
    }
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '&' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let (len, replacement) = match_charref(&chars[i..]);
        if len == 0 {
            out.push('&');
            i += 1;
        } else {
            out.push_str(&replacement);
            i += len;
        }
    }
    out
}

/// One `_charref` match at `s[0] == '&'`: its length in chars (0 for no match) and replacement.
fn match_charref(s: &[char]) -> (usize, Cow<'static, str>) {
    let semicolon = |at: usize| usize::from(s.get(at) == Some(&';'));
    if s.get(1) == Some(&'#') {
        let hex = matches!(s.get(2), Some('x' | 'X'));
        let start = if hex { 3 } else { 2 };
        let digits = s[start.min(s.len())..]
            .iter()
            .take_while(|c| if hex { c.is_ascii_hexdigit() } else { c.is_ascii_digit() })
            .count();
        if digits == 0 {
            return (0, Cow::Borrowed(""));
        }
        let num: String = s[start..start + digits].iter().collect();
        let value = u32::from_str_radix(&num, if hex { 16 } else { 10 }).unwrap_or(u32::MAX);
        return (start + digits + semicolon(start + digits), Cow::Owned(numeric_charref(value)));
    }
    let name = s[1..]
        .iter()
        .take(32)
        .take_while(|c| !matches!(c, '\t' | '\n' | '\u{c}' | ' ' | '<' | '&' | '#' | ';'))
        .count();
    if name == 0 {
        return (0, Cow::Borrowed(""));
    }
    let len = 1 + name + semicolon(1 + name);
    let reference: String = s[..len].iter().collect();
    (len, Cow::Owned(htmlize::unescape(reference.as_str()).into_owned()))
}

/// Python `html._replace_charref` for a numeric reference.
fn numeric_charref(num: u32) -> String {
    match num {
        0 => "\u{fffd}".into(),
        0x0d => "\r".into(),
        // `_invalid_charrefs`: Windows-1252 (0x81, 0x8d, 0x8f, 0x90, 0x9d map to themselves)
        0x80..=0x9f => cp1252_decode(num as u8).map(String::from).unwrap_or_default(),
        0xd800..=0xdfff | 0x110000.. => "\u{fffd}".into(),
        // `_invalid_codepoints`: C0/C1 controls but whitespace, U+FDD0..FDEF, U+xFFFE/U+xFFFF.
        0x1..=0x8 | 0xb | 0xe..=0x1f | 0x7f | 0xfdd0..=0xfdef => String::new(),
        n if n & 0xfffe == 0xfffe => String::new(),
        n => char::from_u32(n).map(String::from).unwrap_or_else(|| "\u{fffd}".into()),
    }
}

/// ftfy `fixes.unescape_html`: only `&#?[0-9A-Za-z]{1,24};` matches are decoded, and only when
/// they are an exact HTML5 entity with its semicolon, an all-caps form of a lower-case entity
/// that is not itself decodable (`&EACUTE;` gives `É`), or a numeric reference that
/// `html.unescape` consumes whole.
fn ftfy_unescape_html(text: &str) -> String {
    if !text.contains('&') {
        return text.to_string();
    }
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '&' {
            let hash = usize::from(chars.get(i + 1) == Some(&'#'));
            let body = chars[i + 1 + hash..].iter().take(24).take_while(|c| c.is_ascii_alphanumeric()).count();
            let end = i + 1 + hash + body;
            if body > 0 && chars.get(end) == Some(&';') {
                let entity: String = chars[i..=end].iter().collect();
                if let Some(fixed) = ftfy_unescape_fixup(&entity) {
                    out.push_str(&fixed);
                    i = end + 1;
                    continue;
                }
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// ftfy `fixes._unescape_fixup` for one `&...;` match; `None` keeps it.
fn ftfy_unescape_fixup(entity: &str) -> Option<String> {
    if entity.starts_with("&#") {
        let decoded = html_unescape(entity);
        return (!decoded.contains(';')).then_some(decoded);
    }
    if let Some(value) = exact_entity(entity) {
        return Some(value);
    }
    // `_build_html_entities`: upper-cased forms of all-lower-case names, when the upper-cased
    // form means nothing to `html.unescape`.
    let lower = entity.to_ascii_lowercase();
    if lower.to_ascii_uppercase() == entity && html_unescape(entity) == entity {
        return exact_entity(&lower).map(|v| v.to_uppercase());
    }
    None
}

/// The value of `&name;` if it is exactly an HTML5 entity (a key of Python's `html5` dict with
/// its semicolon). A legacy-prefix decoding (`&ampx;` gives `&x;`) keeps the `;` at its end,
/// which tells the two apart (`&semi;` is the one entity whose value is `;`).
fn exact_entity(entity: &str) -> Option<String> {
    let decoded = htmlize::unescape(entity);
    let exact = decoded != entity && (!decoded.ends_with(';') || entity == "&semi;");
    exact.then(|| decoded.into_owned())
}

// ---------------------------------------------------------------------------------------------
// Mojibake: ftfy.fix_encoding for UTF-8 read as Latin-1 / Windows-1252
// ---------------------------------------------------------------------------------------------

// Windows-1252 is encoding_rs's, which implements WHATWG's `windows-1252`: the 27 assigned bytes
// of 0x80..0x9F as Python's `cp1252`, and the five bytes Python leaves undefined (0x81, 0x8D,
// 0x8F, 0x90, 0x9D) mapped to the C1 controls of the same number. That is exactly ftfy's
// `sloppy-windows-1252` (bar its U+FFFD <-> 0x1A, kept below by hand). Python's strict `cp1252`
// is the same with those five bytes refused, which stays hand-written as the list below.

/// The bytes Python's `cp1252` leaves undefined (WHATWG and ftfy's sloppy codec: C1 controls).
const CP1252_UNDEFINED: [u8; 5] = [0x81, 0x8d, 0x8f, 0x90, 0x9d];

/// ftfy's `sloppy-windows-1252` decoding of one byte 0x80..0x9F (unassigned bytes stay C1).
fn cp1252_decode(byte: u8) -> Option<char> {
    if (0x80..=0x9f).contains(&byte) {
        encoding_rs::WINDOWS_1252.decode_without_bom_handling(&[byte]).0.chars().next()
    } else {
        None
    }
}

/// Python's strict `cp1252` decoding of a C1 control read as its byte: `None` for the five
/// undefined bytes.
fn cp1252_strict(c: char) -> Option<char> {
    let byte = u8::try_from(c as u32).ok()?;
    if CP1252_UNDEFINED.contains(&byte) { None } else { cp1252_decode(byte) }
}

/// The single-byte encodings tried, in ftfy's `CHARMAP_ENCODINGS` order (the first two).
#[derive(Clone, Copy, PartialEq)]
enum Charmap {
    Latin1,
    SloppyWindows1252,
}

/// `text.encode(encoding)` if `chardata.possible_encoding(text, encoding)`.
fn encode_charmap(text: &str, enc: Charmap) -> Option<Vec<u8>> {
    text.chars()
        .map(|c| {
            let cp = c as u32;
            match enc {
                Charmap::Latin1 => u8::try_from(cp).ok(),
                Charmap::SloppyWindows1252 => match c {
                    '\u{1a}' => None, // byte 0x1A stands for U+FFFD in the sloppy codecs
                    '\u{fffd}' => Some(0x1a),
                    // ASCII and Latin-1 map to themselves, U+0080 and the C1 controls of the 27
                    // assigned bytes do not map, the other five C1 controls map to their bytes.
                    _ => {
                        let mut utf8 = [0u8; 4];
                        let (bytes, _, unmappable) = encoding_rs::WINDOWS_1252.encode(c.encode_utf8(&mut utf8));
                        if unmappable { None } else { bytes.first().copied() }
                    }
                },
            }
        })
        .collect()
}

/// `ftfy.fix_encoding`: one-step fixes until nothing changes.
fn fix_encoding(text: &str) -> String {
    let mut text = text.to_string();
    loop {
        let fixed = fix_encoding_one_step(&text);
        if fixed == text {
            return text;
        }
        text = fixed;
    }
}

/// `ftfy._fix_encoding_one_step_and_explain`, for the Latin-1 and Windows-1252 charmaps.
fn fix_encoding_one_step(text: &str) -> String {
    if text.is_ascii() || !is_bad(text) {
        return text.to_string();
    }
    let mut possible = Vec::new();
    for enc in [Charmap::Latin1, Charmap::SloppyWindows1252] {
        let Some(mut bytes) = encode_charmap(text, enc) else {
            continue;
        };
        possible.push(enc);
        if (0..bytes.len()).any(|i| altered_utf8_match(&bytes, i).is_some()) {
            bytes = restore_byte_a0(&bytes);
        }
        if enc == Charmap::SloppyWindows1252 {
            bytes = replace_lossy_sequences(&bytes);
        }
        if let Some(decoded) = decode_utf8_variants(&bytes) {
            return decoded;
        }
    }
    let chars: Vec<char> = text.chars().collect();
    if (0..chars.len()).any(|i| utf8_detector_match(&chars, i) > 0) {
        let fixed = decode_inconsistent_utf8(text);
        if fixed != text {
            return fixed;
        }
    }
    if possible.contains(&Charmap::Latin1) {
        if possible.contains(&Charmap::SloppyWindows1252) {
            return text.to_string();
        }
        // Latin-1 but not Windows-1252: C1 controls, read strictly as Windows-1252.
        let strict: Option<String> = text
            .chars()
            .map(|c| match c {
                '\u{80}'..='\u{9f}' => cp1252_strict(c),
                _ => Some(c),
            })
            .collect();
        if let Some(fixed) = strict
            && fixed != text
        {
            return fixed;
        }
    }
    if text.chars().any(|c| ('\u{80}'..='\u{9f}').contains(&c)) {
        return fix_c1_controls(text);
    }
    text.to_string()
}

/// UTF-8 decoding, or ftfy's `utf-8-variants` when the bytes hold 0xED or 0xC0: CESU-8
/// surrogate pairs and the Java null `C0 80` are accepted too.
fn decode_utf8_variants(bytes: &[u8]) -> Option<String> {
    if !bytes.contains(&0xed) && !bytes.contains(&0xc0) {
        return String::from_utf8(bytes.to_vec()).ok();
    }
    let cont = |b: u8| (0x80..=0xbf).contains(&b);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = &bytes[i..];
        if b.len() >= 2 && b[0] == 0xc0 && b[1] == 0x80 {
            out.push(0);
            i += 2;
        } else if b.len() >= 6
            && b[0] == 0xed
            && (0xa0..=0xaf).contains(&b[1])
            && cont(b[2])
            && b[3] == 0xed
            && (0xb0..=0xbf).contains(&b[4])
            && cont(b[5])
        {
            let hi = 0xd000 | (u32::from(b[1] & 0x3f) << 6) | u32::from(b[2] & 0x3f);
            let lo = 0xd000 | (u32::from(b[4] & 0x3f) << 6) | u32::from(b[5] & 0x3f);
            let c = char::from_u32(0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00))?;
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            i += 6;
        } else {
            out.push(b[0]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Length of an `ALTERED_UTF8_RE` match at `i`: UTF-8 sequences whose 0xA0 byte became a space.
fn altered_utf8_match(b: &[u8], i: usize) -> Option<usize> {
    let at = |k: usize| b.get(i + k).copied();
    let cont = |x: Option<u8>| matches!(x, Some(0x80..=0xbf));
    let cont_no_85_a0 = |x: Option<u8>| matches!(x, Some(0x80..=0x84 | 0x86..=0x9f | 0xa1..=0xbf));
    let sp = |x: Option<u8>| x == Some(b' ');
    let b0 = at(0)?;
    if matches!(b0, 0xc2 | 0xc3 | 0xc5 | 0xce | 0xd0 | 0xd9) && sp(at(1)) {
        return Some(2);
    }
    if matches!(b0, 0xe2 | 0xe3) && sp(at(1)) && cont_no_85_a0(at(2)) {
        return Some(3);
    }
    if (0xe0..=0xe3).contains(&b0) && cont_no_85_a0(at(1)) && sp(at(2)) {
        return Some(3);
    }
    if b0 == 0xf0 {
        let (x1, x2, x3) = (at(1), at(2), at(3));
        if (sp(x1) && cont(x2) && cont(x3)) || (cont(x1) && sp(x2) && cont(x3)) || (cont(x1) && cont(x2) && sp(x3)) {
            return Some(4);
        }
    }
    None
}

/// ftfy `fixes.restore_byte_a0`: `A_GRAVE_WORD_RE` (`\xc3 (?! |quele|quela|quilo|s )` to
/// `\xc3\xa0 `), then spaces inside `ALTERED_UTF8_RE` matches back to 0xA0.
fn restore_byte_a0(bytes: &[u8]) -> Vec<u8> {
    let mut a = Vec::with_capacity(bytes.len() + 4);
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == 0xc3 && bytes.get(i + 1) == Some(&b' ') {
            let rest = &bytes[i + 2..];
            let excluded = [&b" "[..], b"quele", b"quela", b"quilo", b"s "].iter().any(|p| rest.starts_with(p));
            if !excluded {
                a.extend_from_slice(b"\xc3\xa0 ");
                i += 2;
                continue;
            }
        }
        a.push(bytes[i]);
        i += 1;
    }
    let mut out = Vec::with_capacity(a.len());
    let mut i = 0;
    while i < a.len() {
        if let Some(len) = altered_utf8_match(&a, i) {
            out.extend(a[i..i + len].iter().map(|&x| if x == b' ' { 0xa0 } else { x }));
            i += len;
        } else {
            out.push(a[i]);
            i += 1;
        }
    }
    out
}

/// ftfy `fixes.replace_lossy_sequences`: UTF-8-looking sequences with a lost byte (0x1A, or
/// sometimes `?`) become the UTF-8 of U+FFFD (`LOSSY_UTF8_RE`, alternatives in order).
fn replace_lossy_sequences(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if let Some(len) = lossy_match(bytes, i) {
            out.extend_from_slice("\u{fffd}".as_bytes());
            i += len;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// Length of a `LOSSY_UTF8_RE` match at `i`.
fn lossy_match(b: &[u8], i: usize) -> Option<usize> {
    let at = |k: usize| b.get(i + k).copied();
    let lost = |x: Option<u8>| matches!(x, Some(0x1a | b'?')); // [\x1a?]
    let sub = |x: Option<u8>| matches!(x, Some(0x1a)); // [\x1a]
    let cont = |x: Option<u8>| matches!(x, Some(0x1a | 0x80..=0xbf)); // [\x1a\x80-\xbf]
    let any = |x: Option<u8>| matches!(x, Some(0x1a | b'?' | 0x80..=0xbf)); // [\x1a?\x80-\xbf]
    let b0 = at(0)?;
    if (0xc2..=0xdf).contains(&b0) && sub(at(1)) {
        return Some(2);
    }
    if (0xc2..=0xc3).contains(&b0) && at(1) == Some(b'?') {
        return Some(2);
    }
    let hi = |x: Option<u8>| matches!(x, Some(0xa0..=0xaf));
    let lo = |x: Option<u8>| matches!(x, Some(0xb0..=0xbf));
    if b0 == 0xed
        && hi(at(1))
        && at(3) == Some(0xed)
        && lo(at(4))
        && ((lost(at(2)) && any(at(5))) || (any(at(2)) && lost(at(5))))
    {
        return Some(6);
    }
    if (0xe0..=0xef).contains(&b0) && ((lost(at(1)) && cont(at(2))) || (cont(at(1)) && lost(at(2)))) {
        return Some(3);
    }
    if (0xf0..=0xf4).contains(&b0) {
        let (x1, x2, x3) = (at(1), at(2), at(3));
        if (lost(x1) && cont(x2) && cont(x3))
            || (cont(x1) && lost(x2) && cont(x3))
            || (cont(x1) && cont(x2) && lost(x3))
        {
            return Some(4);
        }
    }
    (b0 == 0x1a).then_some(1)
}

// ftfy `chardata.UTF8_CLUES`: characters that single-byte decodings of UTF-8 lead and
// continuation bytes produce (generated by ftfy's scripts/char_data_table.py; `a-b` is a range).
const UTF8_FIRST_OF_2: &str = "\u{102}\u{c2}\u{c4}\u{100}\u{c5}\u{c3}\u{c6}\u{106}\u{10c}\u{c7}\u{10e}\u{110}\u{c9}\u{11a}\u{ca}\u{cb}\u{116}\u{c8}\u{112}\u{118}\u{d0}\u{11e}\u{122}\u{cd}\u{ce}\u{cf}\u{130}\u{cc}\u{12a}\u{136}\u{139}\u{13b}\u{141}\u{143}\u{147}\u{145}\u{d1}\u{d3}\u{d4}\u{d6}\u{150}\u{d2}\u{14c}\u{d8}\u{d5}\u{158}\u{15a}\u{160}\u{15e}\u{162}\u{de}\u{da}\u{db}\u{dc}\u{170}\u{d9}\u{16a}\u{172}\u{16e}\u{dd}\u{179}\u{17d}\u{17b}\u{df}\u{d7}\u{392}\u{393}\u{394}\u{395}\u{396}\u{397}\u{398}\u{399}\u{39a}\u{39b}\u{39c}\u{39d}\u{39e}\u{39f}\u{3a0}\u{3a1}\u{3a3}\u{3a4}\u{3a5}\u{3a6}\u{3a7}\u{3a8}\u{3a9}\u{3aa}\u{3ab}\u{3ac}\u{3ad}\u{3ae}\u{3af}\u{412}\u{413}\u{414}\u{415}\u{416}\u{417}\u{418}\u{419}\u{41a}\u{41b}\u{41c}\u{41d}\u{41e}\u{41f}\u{420}\u{421}\u{422}\u{423}\u{424}\u{425}\u{426}\u{427}\u{428}\u{429}\u{42a}\u{42b}\u{42c}\u{42d}\u{42e}\u{42f}";
const UTF8_FIRST_OF_3: &str = "\u{e1}\u{103}\u{e2}\u{e4}\u{e0}\u{101}\u{105}\u{e5}\u{e3}\u{e6}\u{107}\u{10d}\u{e7}\u{10f}\u{e9}\u{11b}\u{ea}\u{eb}\u{117}\u{e8}\u{113}\u{119}\u{119}\u{123}\u{ed}\u{ee}\u{ef}\u{ec}\u{12b}\u{12f}\u{137}\u{13a}\u{13c}\u{155}\u{17a}\u{3b0}\u{3b1}\u{3b2}\u{3b3}\u{3b4}\u{3b5}\u{3b6}\u{3b7}\u{3b8}\u{3b9}\u{3ba}\u{3bb}\u{3bc}\u{3bd}\u{3be}\u{3bf}\u{430}\u{431}\u{432}\u{433}\u{434}\u{435}\u{436}\u{437}\u{438}\u{439}\u{43a}\u{43b}\u{43c}\u{43d}\u{43e}\u{43f}";
const UTF8_FIRST_OF_4: &str = "\u{111}\u{f0}\u{11f}\u{f3}\u{161}\u{3c0}\u{3c3}\u{440}\u{443}";
const UTF8_CONTINUATION: &str = "\u{80}-\u{bf} \u{104}\u{c6}\u{13d}\u{141}\u{d8}\u{156}\u{15a}\u{160}\u{15e}\u{164}\u{178}\u{179}\u{17d}\u{17b}\u{152}\u{105}\u{e6}\u{192}\u{13e}\u{142}\u{f8}\u{157}\u{15b}\u{161}\u{15f}\u{165}\u{17a}\u{17e}\u{17c}\u{153}\u{2c6}\u{2c7}\u{2d8}\u{2db}\u{2dc}\u{2dd}\u{384}\u{385}\u{386}\u{388}\u{389}\u{38a}\u{38c}\u{38e}\u{38f}\u{401}\u{402}\u{403}\u{404}\u{405}\u{406}\u{407}\u{408}\u{409}\u{40a}\u{40b}\u{40c}\u{40e}\u{40f}\u{451}\u{452}\u{453}\u{454}\u{455}\u{456}\u{457}\u{458}\u{459}\u{45a}\u{45b}\u{45c}\u{45e}\u{45f}\u{490}\u{491}\u{2013}\u{2014}\u{2015}\u{2018}\u{2019}\u{201a}\u{201c}\u{201d}\u{201e}\u{2020}\u{2021}\u{2022}\u{2026}\u{2030}\u{2039}\u{203a}\u{20ac}\u{2116}\u{2122}";
const UTF8_CONTINUATION_STRICT: &str = "\u{80}-\u{bf}\u{104}\u{c6}\u{13d}\u{141}\u{d8}\u{156}\u{15a}\u{160}\u{15e}\u{164}\u{178}\u{179}\u{17d}\u{17b}\u{152}\u{105}\u{e6}\u{192}\u{13e}\u{142}\u{f8}\u{157}\u{15b}\u{161}\u{15f}\u{165}\u{17a}\u{17e}\u{17c}\u{153}\u{2c6}\u{2c7}\u{2d8}\u{2db}\u{2dc}\u{2dd}\u{384}\u{385}\u{386}\u{388}\u{389}\u{38a}\u{38c}\u{38e}\u{38f}\u{401}\u{402}\u{403}\u{404}\u{405}\u{406}\u{407}\u{408}\u{409}\u{40a}\u{40b}\u{40c}\u{40e}\u{40f}\u{451}\u{452}\u{453}\u{454}\u{455}\u{456}\u{457}\u{458}\u{459}\u{45a}\u{45b}\u{45c}\u{45e}\u{45f}\u{490}\u{491}\u{2020}\u{2021}\u{2030}\u{2039}\u{203a}\u{20ac}\u{2116}\u{2122}";

/// Length of a `UTF8_DETECTOR_RE` match at `i` (0 for none):
/// `(?<![cont_strict])([first_of_2][cont] | [first_of_3][cont]{2} | [first_of_4][cont]{3})+`.
fn utf8_detector_match(chars: &[char], i: usize) -> usize {
    if i > 0 && in_category(chars[i - 1], UTF8_CONTINUATION_STRICT) {
        return 0;
    }
    let cont =
        |k: usize, n: usize| chars.len() >= k + n && chars[k..k + n].iter().all(|&c| in_category(c, UTF8_CONTINUATION));
    let mut end = i;
    while end < chars.len() {
        let c = chars[end];
        let step = if in_category(c, UTF8_FIRST_OF_2) && cont(end + 1, 1) {
            2
        } else if in_category(c, UTF8_FIRST_OF_3) && cont(end + 1, 2) {
            3
        } else if in_category(c, UTF8_FIRST_OF_4) && cont(end + 1, 3) {
            4
        } else {
            break;
        };
        end += step;
    }
    end - i
}

/// ftfy `fixes.decode_inconsistent_utf8`: each `UTF8_DETECTOR_RE` run shorter than the text
/// that `is_bad` flags is fixed on its own with `fix_encoding`.
fn decode_inconsistent_utf8(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let len = utf8_detector_match(&chars, i);
        if len == 0 {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let sub: String = chars[i..i + len].iter().collect();
        if len < chars.len() && is_bad(&sub) {
            out.push_str(&fix_encoding(&sub));
        } else {
            out.push_str(&sub);
        }
        i += len;
    }
    out
}

// ---------------------------------------------------------------------------------------------
// ftfy.badness.is_bad
// ---------------------------------------------------------------------------------------------

// ftfy `badness.MOJIBAKE_CATEGORIES` (`a-b` is a range).
const COMMON: &str = "\u{a0}\u{ad}\u{b7}\u{b4}\u{2013}\u{2014}\u{2015}\u{2026}\u{2019}";
const C1: &str = "\u{80}-\u{9f}";
const BAD: &str = "\u{a6}\u{a4}\u{a8}\u{ac}\u{af}\u{b8}\u{192}\u{2c6}\u{2c7}\u{2d8}\u{2db}\u{2dc}\u{2020}\u{2021}\u{2030}\u{2310}\u{25ca}\u{fffd}\u{aa}\u{ba}";
const LAW: &str = "\u{b6}\u{a7}";
const CURRENCY: &str = "\u{a2}\u{a3}\u{a5}\u{20a7}\u{20ac}";
const START_PUNCT: &str =
    "\u{a1}\u{ab}\u{bf}\u{a9}\u{384}\u{385}\u{2018}\u{201a}\u{201c}\u{201e}\u{2022}\u{2039}\u{f8ff}";
const END_PUNCT: &str = "\u{ae}\u{bb}\u{2dd}\u{201d}\u{203a}\u{2122}";
const NUMERIC: &str = "\u{b2}\u{b3}\u{b9}\u{b1}\u{bc}\u{bd}\u{be}\u{d7}\u{b5}\u{f7}\u{2044}\u{2202}\u{2206}\u{220f}\u{2211}\u{221a}\u{221e}\u{2229}\u{222b}\u{2248}\u{2260}\u{2261}\u{2264}\u{2265}\u{2116}";
const KAOMOJI: &str = "\u{d2}-\u{d6}\u{d9}-\u{dc}\u{f2}-\u{f6}\u{f8}-\u{fc}\u{150}\u{14c}\u{16a}\u{172}\u{b0}";
const UPPER_ACC: &str = "\u{c0}-\u{d1}\u{d8}\u{dc}\u{dd}\u{102}\u{100}\u{104}\u{106}\u{10c}\u{10e}\u{110}\u{118}\u{11a}\u{112}\u{116}\u{11e}\u{122}\u{130}\u{12a}\u{136}\u{139}\u{13d}\u{141}\u{13b}\u{143}\u{147}\u{145}\u{152}\u{158}\u{15a}\u{15e}\u{160}\u{162}\u{164}\u{16e}\u{170}\u{178}\u{179}\u{17b}\u{17d}\u{490}";
const LOWER_ACC: &str = "\u{df}\u{e0}-\u{f1}\u{103}\u{105}\u{101}\u{107}\u{10d}\u{10f}\u{111}\u{119}\u{11b}\u{113}\u{117}\u{11f}\u{123}\u{12f}\u{12b}\u{137}\u{13a}\u{13e}\u{142}\u{13c}\u{153}\u{155}\u{15b}\u{15f}\u{161}\u{165}\u{fc}\u{17a}\u{17c}\u{17e}\u{491}\u{fb01}\u{fb02}";
const UPPER_COMMON: &str =
    "\u{de}\u{391}-\u{3a9}\u{386}\u{388}\u{389}\u{38a}\u{38c}\u{38e}\u{38f}\u{3aa}\u{3ab}\u{401}-\u{42f}";
const LOWER_COMMON: &str = "\u{3b1}-\u{3c9}\u{3ac}\u{3ad}\u{3ae}\u{3af}\u{3b0}\u{430}-\u{45f}";
const BOX: &str = "\u{2502}\u{250c}\u{2510}\u{2518}\u{251c}\u{2524}\u{252c}\u{253c}\u{2550}-\u{256c}\u{2580}\u{2584}\u{2588}\u{258c}\u{2590}\u{2591}\u{2592}\u{2593}";

/// One position of a `BADNESS_RE` alternative.
#[derive(Clone, Copy)]
enum Class {
    /// A union of category strings (character class).
    Set(&'static [&'static str]),
    /// `[a-zA-Z]`.
    AsciiAlpha,
    /// `[a-z]`.
    AsciiLower,
    /// `[^A-Za-z]`.
    NotAsciiAlpha,
    /// `\s`.
    Space,
    /// `\w`.
    Word,
    /// `.` (anything but `\n`).
    Any,
}

use Class::{Any, AsciiAlpha, AsciiLower, NotAsciiAlpha, Set, Space, Word};

/// `ftfy.badness.BADNESS_RE`, alternative by alternative (`\s?` expanded into two, `^` marked
/// by the boolean).
#[rustfmt::skip]
const BADNESS: &[(bool, &[Class])] = &[
    (false, &[Set(&[C1])]),
    (false, &[Set(&[BAD, LOWER_ACC, UPPER_ACC, BOX, START_PUNCT, END_PUNCT, CURRENCY, NUMERIC, LAW]), Set(&[BAD])]),
    (false, &[AsciiAlpha, Set(&[LOWER_COMMON, UPPER_COMMON]), Set(&[BAD])]),
    (false, &[Set(&[BAD]), Set(&[LOWER_ACC, UPPER_ACC, BOX, START_PUNCT, END_PUNCT, CURRENCY, NUMERIC, LAW])]),
    (false, &[Set(&[LOWER_ACC, LOWER_COMMON, BOX, END_PUNCT, CURRENCY, NUMERIC]), Set(&[UPPER_ACC])]),
    (false, &[Set(&[BOX, END_PUNCT, CURRENCY, NUMERIC]), Set(&[LOWER_ACC])]),
    (false, &[Set(&[LOWER_ACC, BOX, END_PUNCT]), Set(&[CURRENCY])]),
    (false, &[Space, Set(&[UPPER_ACC]), Set(&[CURRENCY])]),
    (false, &[Set(&[UPPER_ACC, BOX]), Set(&[NUMERIC, LAW])]),
    (false, &[Set(&[LOWER_ACC, UPPER_ACC, BOX, CURRENCY, END_PUNCT]), Set(&[START_PUNCT]), Set(&[NUMERIC])]),
    (false, &[Set(&[LOWER_ACC, UPPER_ACC, CURRENCY, NUMERIC, BOX, LAW]), Set(&[END_PUNCT]), Set(&[START_PUNCT])]),
    (false, &[Set(&[CURRENCY, NUMERIC, BOX]), Set(&[START_PUNCT])]),
    (false, &[AsciiLower, Set(&[UPPER_ACC]), Set(&[START_PUNCT, CURRENCY])]),
    (false, &[Set(&[BOX]), Set(&[KAOMOJI])]),
    (false, &[Set(&[LOWER_ACC, UPPER_ACC, CURRENCY, NUMERIC, START_PUNCT, END_PUNCT, LAW]), Set(&[BOX])]),
    (false, &[Set(&[BOX]), Set(&[END_PUNCT])]),
    (false, &[Set(&[LOWER_ACC, UPPER_ACC]), Set(&[START_PUNCT, END_PUNCT]), Word]),
    (false, &[Set(&["Œœ"]), NotAsciiAlpha]),
    (false, &[Set(&[UPPER_ACC]), Set(&["°"])]),
    (false, &[Set(&["ÂÃÎÐ"]), Set(&["€œŠš¢£Ÿž\u{a0}\u{ad}®©°·»", START_PUNCT, END_PUNCT, "–—´"])]),
    (false, &[Set(&["×"]), Set(&["²³"])]),
    (false, &[
        Set(&["ØÙ"]), Set(&[COMMON, CURRENCY, BAD, NUMERIC, START_PUNCT, "ŸŠ®°µ»"]),
        Set(&["ØÙ"]), Set(&[COMMON, CURRENCY, BAD, NUMERIC, START_PUNCT, "ŸŠ®°µ»"]),
    ]),
    (false, &[Set(&["à"]), Set(&["²µ¹¼½¾"])]),
    (false, &[Set(&["√"]), Set(&["±∂†≠®™´≤≥¥µø"])]),
    (false, &[Set(&["≈"]), Set(&["°¢"])]),
    (false, &[Set(&["‚"]), Set(&["Ä"]), Set(&["ìîïòôúùû†°¢π"])]),
    (false, &[Set(&["‚"]), Set(&["âó"]), Set(&["àä°ê"])]),
    (false, &[Set(&["в"]), Set(&["Ђ"])]),
    (false, &[Set(&["ВГРС"]), Set(&[C1, BAD, START_PUNCT, END_PUNCT, CURRENCY, "°µ"]), Set(&["ВГРС"])]),
    (false, &[Set(&["Г"]), Set(&["ў"]), Set(&["В"]), Set(&["Ђ"]), Set(&["В"]), Any, Set(&["A-Za-z "])]),
    (false, &[Set(&["Ã"]), Set(&["\u{a0}¡"])]),
    (false, &[AsciiLower, Set(&["ÃÂ"]), Set(&[" "])]),
    (false, &[AsciiLower, Space, Set(&["ÃÂ"]), Set(&[" "])]),
    (true, &[Set(&["ÃÂ"]), Set(&[" "])]),
    (false, &[Set(&["a-z.,?!", END_PUNCT]), Set(&["Â"]), Set(&[" ", START_PUNCT, END_PUNCT])]),
    (false, &[Set(&["β"]), Set(&["€"]), Set(&["™\u{a0}Ά\u{ad}®°"])]),
    (false, &[Set(&["ΒΓΞΟ"]), Set(&[C1, BAD, START_PUNCT, END_PUNCT, CURRENCY, "°"]), Set(&["ΒΓΞΟ"])]),
    (false, &[Set(&["ā"]), Set(&["€"])]),
];

/// Whether `c` is in a category string (`a-b` denotes a range).
fn in_category(c: char, spec: &str) -> bool {
    let s: Vec<char> = spec.chars().collect();
    let mut i = 0;
    while i < s.len() {
        if i + 2 < s.len() && s[i + 1] == '-' {
            if (s[i]..=s[i + 2]).contains(&c) {
                return true;
            }
            i += 3;
        } else {
            if s[i] == c {
                return true;
            }
            i += 1;
        }
    }
    false
}

fn class_matches(class: Class, c: char) -> bool {
    match class {
        Set(specs) => specs.iter().any(|s| in_category(c, s)),
        AsciiAlpha => c.is_ascii_alphabetic(),
        AsciiLower => c.is_ascii_lowercase(),
        NotAsciiAlpha => !c.is_ascii_alphabetic(),
        Space => is_py_space(c),
        Word => c.is_alphanumeric() || c == '_',
        Any => c != '\n',
    }
}

/// `ftfy.badness.is_bad`: does any `BADNESS_RE` alternative match somewhere in `text`?
pub fn is_bad(text: &str) -> bool {
    let chars: Vec<char> = text.chars().collect();
    (0..chars.len()).any(|start| {
        // Every alternative has a non-ASCII class within its first three positions.
        if chars[start..].iter().take(3).all(char::is_ascii) {
            return false;
        }
        BADNESS.iter().any(|&(anchored, alt)| {
            (!anchored || start == 0)
                && start + alt.len() <= chars.len()
                && alt.iter().zip(&chars[start..]).all(|(&class, &c)| class_matches(class, c))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Python's `bytes(range(0x80, 0xa0)).decode("cp1252", errors="replace")`: `?` marks the five
    /// undefined bytes.
    const PYTHON_CP1252_80_9F: &str = "€?‚ƒ„…†‡ˆ‰Š‹Œ?Ž??‘’“”•–—˜™š›œ?žŸ";

    /// encoding_rs's windows-1252 plus the hand-kept exceptions give Python's `cp1252` (strict)
    /// and ftfy's `sloppy-windows-1252` (decoding and `possible_encoding`) byte for byte.
    #[test]
    fn windows_1252_matches_python_and_ftfy() {
        for (i, py) in PYTHON_CP1252_80_9F.chars().enumerate() {
            let byte = 0x80 + i as u8;
            let c1 = char::from(byte);
            let defined = py != '?';
            assert_eq!(defined, !CP1252_UNDEFINED.contains(&byte), "{byte:#x}");
            assert_eq!(cp1252_strict(c1), defined.then_some(py), "{byte:#x}");
            assert_eq!(cp1252_decode(byte), Some(if defined { py } else { c1 }), "{byte:#x}");
            let sloppy = |c: char| encode_charmap(&c.to_string(), Charmap::SloppyWindows1252);
            assert_eq!(sloppy(c1), (!defined).then_some(vec![byte]), "{byte:#x}");
            if defined {
                assert_eq!(sloppy(py), Some(vec![byte]), "{py}");
            }
        }
        for cp in (0..0x80).chain(0xa0..0x100).filter(|&cp| cp != 0x1a) {
            let c = char::from_u32(cp).unwrap();
            assert_eq!(encode_charmap(&c.to_string(), Charmap::SloppyWindows1252), Some(vec![cp as u8]), "{cp:#x}");
        }
        assert_eq!(cp1252_decode(0x7f), None);
        assert_eq!(cp1252_decode(0xa0), None);
        assert_eq!(encode_charmap("\u{1a}", Charmap::SloppyWindows1252), None);
        assert_eq!(encode_charmap("a\u{fffd}€", Charmap::SloppyWindows1252), Some(vec![b'a', 0x1a, 0x80]));
        assert_eq!(encode_charmap("ā", Charmap::SloppyWindows1252), None);
        assert_eq!(encode_charmap("中", Charmap::SloppyWindows1252), None);
    }

    #[test]
    fn basic_cleanup() {
        assert_eq!(clean_text("  A  Photo\tOf\n\nA CAT  "), "a photo of a cat");
        assert_eq!(clean_text(""), "");
        assert_eq!(clean_text("ﬁne “quotes” ＡＢＣ"), "fine \"quotes\" abc");
    }

    #[test]
    fn html_twice_and_ftfy_once() {
        assert_eq!(clean_text("Tom &amp;amp;amp; Jerry"), "tom & jerry");
        // a `<` turns ftfy's unescaping off: only Python's two html.unescape calls remain
        assert_eq!(clean_text("a < b &amp;amp;amp;"), "a < b &amp;");
        assert_eq!(clean_text("&EACUTE;t&eacute; &ampx; &#39;"), "été &x; '");
    }

    #[test]
    fn python_numeric_charrefs() {
        assert_eq!(html_unescape("&#0;&#7;&#x80;&#x110000;&#65"), "\u{fffd}€\u{fffd}A");
    }

    #[test]
    fn mojibake() {
        assert!(is_bad("cafÃ©"));
        assert!(!is_bad("café"));
        assert_eq!(fix_text("cafÃ©"), "café");
        assert_eq!(fix_text("voilÃ le travail"), "voilà le travail");
        assert_eq!(fix_text("â€œquotedâ€\u{9d}"), "\"quoted\"");
    }
}
