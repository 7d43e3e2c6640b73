//! Normalisation: decode the carrier before scanning, and remember where every byte came from.
//!
//! Attackers hide instructions from pattern matchers by encoding them: JSON or HTML escapes,
//! percent-encoding, zero-width characters inside words, Unicode "tag" characters that render
//! as nothing (ASCII smuggling), look-alike letters from other scripts, full-width or
//! mathematical letters, base64. The scanners run on the *normalised* text, where all of these
//! read as plain ASCII; every finding is mapped back to the byte range of the original text it
//! came from, so masking and reporting act on what the user actually sent.
//!
//! Markup that splits words is undone too: inline HTML tags (`ig<b></b>nore`) are dropped and
//! block tags (`<br>`, `<p>`) read as a space; Markdown emphasis and code marks inside a word
//! (`ig**no**re`) are dropped; a backslash line continuation (YAML double-quoted scalars,
//! shell, C) joins its lines. Tags that carry meaning for the rules (`<system>`,
//! `<IMPORTANT>`, comments) are kept.
//!
//! Plain ASCII without escapes or such markup (most tool output) is not copied at all.

use std::borrow::Cow;
use std::ops::Range;

use base64::Engine as _;

/// Text ready for scanning, with the way back to the original offsets.
#[derive(Debug)]
pub struct Normalised<'a> {
    text: Cow<'a, str>,
    /// For each byte of `text`, the offset in the original of the character it came from,
    /// then one entry for the end. `None` when `text` is the original (identity map).
    map: Option<Vec<u32>>,
    original_len: usize,
    /// What the normaliser had to undo: each is a signal on its own.
    pub signals: Signals,
    /// Base64 runs that decode to text, each scanned as well.
    pub decoded: Vec<Decoded>,
}

/// Traces of concealment found while normalising.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Signals {
    /// Zero-width characters, word joiners, soft hyphens and BOMs dropped (not counting a
    /// zero-width joiner between two non-ASCII characters, which is how emoji are built).
    pub invisible: u32,
    /// Bidirectional controls dropped (they reorder what a human sees).
    pub bidi: u32,
    /// Unicode tag characters (U+E0000–U+E007F) turned back into the ASCII they smuggle.
    pub tag_chars: u32,
    /// Look-alike letters from another script next to Latin ones, mapped to Latin.
    pub homoglyphs: u32,
    /// Original byte range of the first and last concealment trace (for the finding's span).
    pub span: Option<Range<usize>>,
}

impl Signals {
    fn note(&mut self, at: Range<usize>) {
        self.span = Some(match self.span.take() {
            Some(s) => s.start.min(at.start)..s.end.max(at.end),
            None => at,
        });
    }
}

/// A base64 run in the original that decodes to readable text.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// The run's range in the original text.
    pub span: Range<usize>,
    /// The decoded text.
    pub text: String,
}

/// Bytes the fast path copies as they are: ASCII other than the escape introducers and the
/// markup characters.
const fn is_plain(b: u8) -> bool {
    b < 0x80 && !matches!(b, b'\\' | b'&' | b'%' | b'<' | b'*' | b'~' | b'`')
}

/// Markup characters: special only where [`markup`] finds something to undo.
const fn is_markup(b: u8) -> bool {
    matches!(b, b'<' | b'*' | b'~' | b'`')
}

/// HTML elements that only style text: dropped.
const INLINE_TAGS: &[&[u8]] = &[
    b"a", b"abbr", b"b", b"big", b"cite", b"code", b"del", b"em", b"font", b"i", b"ins", b"kbd",
    b"mark", b"q", b"s", b"small", b"span", b"strike", b"strong", b"sub", b"sup", b"tt", b"u",
    b"var", b"wbr",
];

/// HTML elements that break text into blocks: read as a space.
const BLOCK_TAGS: &[&[u8]] = &[
    b"article",
    b"aside",
    b"blockquote",
    b"body",
    b"br",
    b"dd",
    b"div",
    b"dl",
    b"dt",
    b"footer",
    b"h1",
    b"h2",
    b"h3",
    b"h4",
    b"h5",
    b"h6",
    b"header",
    b"hr",
    b"html",
    b"li",
    b"main",
    b"nav",
    b"ol",
    b"p",
    b"pre",
    b"section",
    b"table",
    b"tbody",
    b"td",
    b"tfoot",
    b"th",
    b"thead",
    b"tr",
    b"ul",
];

/// Longest tag (with its attributes) that is undone.
const MAX_TAG: usize = 512;

/// The markup at `i` that hides how words read: its length, and whether it reads as a space.
fn markup(bytes: &[u8], i: usize) -> Option<(usize, bool)> {
    let c = *bytes.get(i)?;
    if c == b'<' {
        let rest = bytes.get(i + 1..)?;
        let close = usize::from(rest.first() == Some(&b'/'));
        let name_len = rest
            .get(close..)?
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric())
            .count();
        let name = rest.get(close..close + name_len)?.to_ascii_lowercase();
        let after = rest.get(close + name_len..)?;
        // `<b>`, `</b>`, `<br/>`, `<span style="...">`: a name, then the end or attributes.
        if !matches!(after.first(), Some(b'>' | b' ' | b'\t' | b'\n' | b'/')) {
            return None;
        }
        let end = after.iter().take(MAX_TAG).position(|&b| b == b'>')?;
        let attributes = after.get(..end)?;
        // Attributes have values (`a<b and b>c` is a comparison, not a tag).
        let bare = attributes.iter().all(|&b| b == b'/');
        if attributes.contains(&b'<') || !(bare || attributes.contains(&b'=')) {
            return None;
        }
        let len = 1 + close + name_len + end + 1;
        let name = name.as_slice();
        return if INLINE_TAGS.contains(&name) {
            Some((len, false))
        } else if BLOCK_TAGS.contains(&name) {
            Some((len, true))
        } else {
            None
        };
    }
    // `ig**no**re`, `ig`no`re`, `ig~~no~~re`: marks between two letters.
    let run = bytes.get(i..)?.iter().take_while(|&&b| b == c).count();
    let before = i.checked_sub(1).and_then(|p| bytes.get(p));
    let after = bytes.get(i + run);
    (before.is_some_and(u8::is_ascii_alphabetic) && after.is_some_and(u8::is_ascii_alphabetic))
        .then_some((run, false))
}

/// Where the fast path must stop: the first escape, non-ASCII byte or markup to undo.
fn first_special(bytes: &[u8]) -> Option<usize> {
    let mut from = 0;
    loop {
        let i = from + bytes.get(from..)?.iter().position(|&b| !is_plain(b))?;
        let c = *bytes.get(i)?;
        if !is_markup(c) || markup(bytes, i).is_some() {
            return Some(i);
        }
        from = i + 1;
    }
}

/// Shortest base64 run worth decoding (18 bytes of payload: a short sentence).
const MIN_BASE64_RUN: usize = 24;

impl<'a> Normalised<'a> {
    /// Normalises `original`.
    pub fn new(original: &'a str) -> Self {
        let bytes = original.as_bytes();
        let mut n = match first_special(bytes) {
            None => Normalised {
                text: Cow::Borrowed(original),
                map: None,
                original_len: original.len(),
                signals: Signals::default(),
                decoded: Vec::new(),
            },
            Some(first) => Builder::run(original, first),
        };
        n.decoded = find_base64(&n);
        n
    }

    /// The normalised text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether normalisation changed anything.
    pub fn changed(&self) -> bool {
        self.map.is_some()
    }

    /// The original byte range that the normalised range `r` came from.
    pub fn original(&self, r: Range<usize>) -> Range<usize> {
        let Some(map) = &self.map else {
            return r.start.min(self.original_len)..r.end.min(self.original_len);
        };
        let at = |i: usize| map.get(i).map_or(self.original_len, |&o| o as usize);
        let start = at(r.start);
        if r.end <= r.start {
            return start..start;
        }
        let last = at(r.end - 1);
        // The end is where the next normalised byte's source begins (several normalised bytes
        // can come from one original character).
        let end = map
            .get(r.end..)
            .and_then(|rest| rest.iter().find(|&&o| o as usize > last))
            .map_or(self.original_len, |&o| o as usize);
        start..end.max(start)
    }
}

/// The slow path: copies plain runs, decodes everything else.
struct Builder<'s> {
    src: &'s str,
    out: String,
    map: Vec<u32>,
    signals: Signals,
}

impl<'s> Builder<'s> {
    fn run(src: &'s str, first: usize) -> Normalised<'s> {
        let mut b = Builder {
            src,
            out: String::with_capacity(src.len()),
            map: Vec::with_capacity(src.len() + 1),
            signals: Signals::default(),
        };
        let bytes = src.as_bytes();
        let mut i = 0;
        b.copy(0, first);
        i += first;
        while let Some(&c) = bytes.get(i) {
            if is_plain(c) {
                let end = bytes
                    .get(i..)
                    .and_then(|rest| rest.iter().position(|&b| !is_plain(b)))
                    .map_or(bytes.len(), |n| i + n);
                b.copy(i, end);
                i = end;
                continue;
            }
            i = match c {
                _ if is_markup(c) => b.markup(i),
                b'\\' => b.json_escape(i),
                b'&' => b.entity(i),
                b'%' => b.percent(i),
                _ => b.non_ascii(i),
            };
        }
        b.map.push(src.len() as u32);
        Normalised {
            text: Cow::Owned(b.out),
            map: Some(b.map),
            original_len: src.len(),
            signals: b.signals,
            decoded: Vec::new(),
        }
    }

    fn copy(&mut self, from: usize, to: usize) {
        if let Some(s) = self.src.get(from..to) {
            self.out.push_str(s);
            self.map.extend(from as u32..to as u32);
        }
    }

    fn push_raw(&mut self, c: char, at: usize) {
        self.out.push(c);
        for _ in 0..c.len_utf8() {
            self.map.push(at as u32);
        }
    }

    /// Pushes a decoded character, normalising it as if it had been written literally.
    fn push_char(&mut self, c: char, at: Range<usize>) {
        if c.is_ascii() {
            return self.push_raw(c, at.start);
        }
        let cp = c as u32;
        match cp {
            // Unicode tags: invisible ASCII. Decode what they smuggle.
            0xE0000..=0xE007F => {
                self.signals.tag_chars += 1;
                self.signals.note(at.clone());
                if let Some(a) = char::from_u32(cp - 0xE0000).filter(|a| !a.is_ascii_control()) {
                    self.push_raw(a, at.start);
                }
            }
            // Bidirectional embeddings, overrides and isolates.
            0x202A..=0x202E | 0x2066..=0x2069 | 0x200E | 0x200F | 0x061C => {
                self.signals.bidi += 1;
                self.signals.note(at);
            }
            // Zero-width joiner: part of emoji sequences between two non-ASCII characters.
            0x200D => {
                let prev_non_ascii = self.out.chars().next_back().is_some_and(|p| !p.is_ascii());
                let next_non_ascii = self
                    .src
                    .get(at.end..)
                    .and_then(|r| r.chars().next())
                    .is_some_and(|n| !n.is_ascii());
                if !(prev_non_ascii && next_non_ascii) {
                    self.signals.invisible += 1;
                    self.signals.note(at);
                }
            }
            // Zero-width space/non-joiner, word joiner and invisible operators, BOM, soft
            // hyphen, Mongolian vowel separator, Hangul fillers.
            0x200B | 0x200C | 0x2060..=0x2064 | 0xFEFF | 0x00AD | 0x180E | 0x3164 | 0xFFA0 => {
                // A byte-order mark at the very start is an encoding artefact.
                if !(cp == 0xFEFF && at.start == 0) {
                    self.signals.invisible += 1;
                    self.signals.note(at);
                }
            }
            _ => {
                if let Some(a) = homoglyph(c) {
                    let prev_latin = self
                        .out
                        .chars()
                        .next_back()
                        .is_some_and(|p| p.is_ascii_alphabetic());
                    let next_latin = self
                        .src
                        .get(at.end..)
                        .and_then(|r| r.chars().next())
                        .is_some_and(|n| n.is_ascii_alphabetic());
                    if prev_latin || next_latin {
                        self.signals.homoglyphs += 1;
                        self.signals.note(at.clone());
                    }
                    return self.push_raw(a, at.start);
                }
                self.compatibility(c, at.start);
            }
        }
    }

    /// Full-width, mathematical, ligature and accented Latin letters to plain ASCII; anything
    /// that does not decompose to ASCII (other scripts) is kept.
    fn compatibility(&mut self, c: char, at: usize) {
        let mut ascii = [0u8; 8];
        let mut n = 0;
        let mut ok = true;
        unicode_normalization::char::decompose_compatible(c, |d| {
            if d.is_ascii() {
                if let Some(slot) = ascii.get_mut(n) {
                    *slot = d as u8;
                    n += 1;
                } else {
                    ok = false;
                }
            } else if !('\u{300}'..='\u{36F}').contains(&d) {
                ok = false;
            }
        });
        match ascii.get(..n) {
            Some(a) if ok && n > 0 => {
                for &b in a {
                    self.push_raw(b as char, at);
                }
            }
            _ => self.push_raw(c, at),
        }
    }

    fn non_ascii(&mut self, i: usize) -> usize {
        let Some(c) = self.src.get(i..).and_then(|r| r.chars().next()) else {
            return i + 1;
        };
        let end = i + c.len_utf8();
        self.push_char(c, i..end);
        end
    }

    /// Markup to undo at `i` (see [`markup`]), or the character as it is.
    fn markup(&mut self, i: usize) -> usize {
        match markup(self.src.as_bytes(), i) {
            Some((len, space)) => {
                if space && !self.out.ends_with([' ', '\n']) {
                    self.push_raw(' ', i);
                }
                i + len
            }
            None => {
                self.copy(i, i + 1);
                i + 1
            }
        }
    }

    /// `\n`, `\"`, `\u0041` (and surrogate pairs) as a JSON string would decode them; a
    /// backslash at the end of a line joins it with the next (leading blanks dropped), as
    /// in YAML double-quoted scalars.
    fn json_escape(&mut self, i: usize) -> usize {
        let rest = self.src.as_bytes().get(i + 1..).unwrap_or_default();
        let newline = match rest {
            [b'\n', ..] => 1,
            [b'\r', b'\n', ..] => 2,
            _ => 0,
        };
        if newline > 0 {
            let blanks = rest
                .get(newline..)
                .unwrap_or_default()
                .iter()
                .take_while(|&&b| b == b' ' || b == b'\t')
                .count();
            return i + 1 + newline + blanks;
        }
        let simple = match rest.first() {
            Some(b'n') => Some('\n'),
            Some(b't') => Some('\t'),
            Some(b'r') => Some('\r'),
            Some(b'b') => Some('\u{8}'),
            Some(b'f') => Some('\u{c}'),
            Some(&q @ (b'"' | b'\\' | b'/' | b'\'')) => Some(q as char),
            _ => None,
        };
        if let Some(c) = simple {
            self.push_raw(c, i);
            return i + 2;
        }
        if rest.first() == Some(&b'u')
            && let Some(hi) = hex4(rest.get(1..5))
        {
            if !(0xD800..0xDC00).contains(&hi) {
                if let Some(c) = char::from_u32(hi) {
                    self.push_char(c, i..i + 6);
                    return i + 6;
                }
            } else if rest.get(5..7) == Some(b"\\u")
                && let Some(lo) = hex4(rest.get(7..11)).filter(|lo| (0xDC00..0xE000).contains(lo))
                && let Some(c) = char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
            {
                // A surrogate pair: \uD83D\uDE00.
                self.push_char(c, i..i + 12);
                return i + 12;
            }
        }
        self.push_raw('\\', i);
        i + 1
    }

    /// `&lt;`, `&#65;`, `&#x41;` and the common named entities.
    fn entity(&mut self, i: usize) -> usize {
        let bytes = self.src.as_bytes();
        let semi = bytes
            .get(i + 1..(i + 12).min(bytes.len()))
            .and_then(|r| r.iter().position(|&b| b == b';'))
            .map(|n| i + 1 + n);
        let decoded = semi.and_then(|semi| {
            let name = bytes.get(i + 1..semi)?;
            match name {
                b"amp" => Some('&'),
                b"lt" => Some('<'),
                b"gt" => Some('>'),
                b"quot" => Some('"'),
                b"apos" => Some('\''),
                b"nbsp" => Some(' '),
                b"shy" => Some('\u{AD}'),
                b"zwj" => Some('\u{200D}'),
                b"zwnj" => Some('\u{200C}'),
                [b'#', b'x' | b'X', hex @ ..] => {
                    u32::from_str_radix(std::str::from_utf8(hex).ok()?, 16)
                        .ok()
                        .and_then(char::from_u32)
                }
                [b'#', dec @ ..] => std::str::from_utf8(dec)
                    .ok()?
                    .parse()
                    .ok()
                    .and_then(char::from_u32),
                _ => None,
            }
            .map(|c| (c, semi + 1))
        });
        match decoded {
            Some((c, end)) => {
                self.push_char(c, i..end);
                end
            }
            None => {
                self.push_raw('&', i);
                i + 1
            }
        }
    }

    /// A run of `%XX` escapes that decodes to UTF-8 text.
    fn percent(&mut self, i: usize) -> usize {
        let bytes = self.src.as_bytes();
        let mut decoded = Vec::new();
        let mut j = i;
        while bytes.get(j) == Some(&b'%') {
            let Some(v) = bytes.get(j + 1..j + 3).and_then(hex_byte) else {
                break;
            };
            decoded.push(v);
            j += 3;
        }
        match std::str::from_utf8(&decoded) {
            Ok(s) if !s.is_empty() => {
                let mut at = i;
                for c in s.chars() {
                    let width = 3 * c.len_utf8();
                    self.push_char(c, at..at + width);
                    at += width;
                }
                j
            }
            _ => {
                self.push_raw('%', i);
                i + 1
            }
        }
    }
}

fn hex_val(b: u8) -> Option<u32> {
    (b as char).to_digit(16)
}

fn hex_byte(h: &[u8]) -> Option<u8> {
    match h {
        [a, b] => Some((hex_val(*a)? * 16 + hex_val(*b)?) as u8),
        _ => None,
    }
}

fn hex4(h: Option<&[u8]>) -> Option<u32> {
    let h = h?;
    if h.len() != 4 {
        return None;
    }
    h.iter()
        .try_fold(0u32, |acc, &b| Some(acc * 16 + hex_val(b)?))
}

/// Letters from Cyrillic and Greek that look like Latin ones.
fn homoglyph(c: char) -> Option<char> {
    Some(match c {
        'а' | 'α' => 'a',
        'е' | 'ε' => 'e',
        'о' | 'ο' | 'σ' => 'o',
        'р' | 'ρ' => 'p',
        'с' | 'ϲ' => 'c',
        'у' | 'γ' => 'y',
        'х' | 'χ' => 'x',
        'і' | 'ι' => 'i',
        'ј' => 'j',
        'ѕ' => 's',
        'ԁ' => 'd',
        'һ' => 'h',
        'ӏ' => 'l',
        'ԛ' => 'q',
        'ԝ' => 'w',
        'ν' => 'v',
        'κ' => 'k',
        'τ' => 't',
        'υ' => 'u',
        'ɡ' => 'g',
        'А' | 'Α' => 'A',
        'В' | 'Β' => 'B',
        'Е' | 'Ε' => 'E',
        'К' | 'Κ' => 'K',
        'М' | 'Μ' => 'M',
        'Н' | 'Η' => 'H',
        'О' | 'Ο' => 'O',
        'Р' | 'Ρ' => 'P',
        'С' => 'C',
        'Т' | 'Τ' => 'T',
        'Х' | 'Χ' => 'X',
        'У' | 'Υ' => 'Y',
        'І' | 'Ι' => 'I',
        'Ј' => 'J',
        'Ѕ' => 'S',
        'Ζ' => 'Z',
        'Ν' => 'N',
        _ => return None,
    })
}

/// Base64 alphabet (standard and URL-safe) bytes.
// Evaluated at compile time: an index out of bounds would fail the build, not panic.
#[allow(clippy::indexing_slicing)]
static BASE64: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || c == b'+' || c == b'/' || c == b'-' || c == b'_';
        b += 1;
    }
    t
};

/// Base64 runs in the normalised text that decode to mostly printable UTF-8.
fn find_base64(n: &Normalised<'_>) -> Vec<Decoded> {
    let bytes = n.text.as_bytes();
    let mut found = Vec::new();
    let b64 = |b: &u8| BASE64.get(usize::from(*b)).copied().unwrap_or(false);
    let mut i = 0;
    while let Some(off) = bytes.get(i..).and_then(|r| r.iter().position(b64)) {
        let start = i + off;
        let rest = bytes.get(start..).unwrap_or_default();
        let len = rest.iter().position(|b| !b64(b)).unwrap_or(rest.len());
        i = start + len;
        if len >= MIN_BASE64_RUN {
            let mut end = i;
            while end < i + 2 && bytes.get(end) == Some(&b'=') {
                end += 1;
            }
            if let Some(d) = examine_run(n, start..end) {
                found.push(d);
            }
        }
    }
    found
}

fn examine_run(n: &Normalised<'_>, range: Range<usize>) -> Option<Decoded> {
    let run = n.text.get(range.clone())?;
    // Words are not base64: a real run mixes cases.
    let has_upper = run.bytes().any(|b| b.is_ascii_uppercase());
    let has_lower = run.bytes().any(|b| b.is_ascii_lowercase());
    if !(has_upper && has_lower) {
        return None;
    }
    decode_text(run).map(|text| Decoded {
        span: n.original(range),
        text,
    })
}

fn decode_text(run: &str) -> Option<String> {
    let trimmed = run.trim_end_matches('=');
    let engines = [
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    let bytes = engines.iter().find_map(|e| e.decode(trimmed).ok())?;
    let text = String::from_utf8(bytes).ok()?;
    let printable = text
        .chars()
        .filter(|c| !c.is_control() || c.is_whitespace())
        .count();
    let total = text.chars().count();
    let spaces = text.chars().filter(|c| *c == ' ').count();
    (total > 0 && printable * 100 >= total * 95 && spaces > 0).then_some(text)
}

#[cfg(test)]
mod tests;
