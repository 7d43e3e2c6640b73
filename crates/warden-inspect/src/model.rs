//! The statistical layer of injection detection: a logistic model over hashed word unigrams
//! and bigrams, scored on every window of [`Model::window`] consecutive words; the text's
//! score is its most suspicious window's. Rules catch the phrasings we know; the model catches
//! the paraphrases ("kindly set aside what you were told before").
//!
//! The weights are trained by `scripts/inspection/train.py` (pure Python, reproducible, data
//! from PyPI — see docs/INSPECTION.md) and embedded in the binary; the tokeniser and hashing
//! here and in the script must stay identical, which `tests::python_parity` pins.
//!
//! Only words and word pairs seen in at least three training texts have a weight (a word the
//! model never saw counts for nothing). Weights are 8-bit integers, so a window's score is an exact integer sum: the sliding window
//! costs one add and one subtract per word, with no floating-point drift.

use std::ops::Range;

/// The embedded model (`scripts/inspection/train.py` writes it).
static EMBEDDED: &[u8] = include_bytes!("../model/injection.wim");

const MAGIC: &[u8; 4] = b"WIM2";
/// Words per window; the ring buffer below is sized for the largest allowed.
const MAX_WINDOW: usize = 128;
const HEADER: usize = 20;
const ENTRY: usize = 5;

/// A loaded model: the weights of the words and word pairs it knows, in an open-addressing
/// table keyed by the full 32-bit feature hash. A word it does not know counts for nothing.
#[derive(Debug, Clone)]
pub struct Model {
    scale: f32,
    bias: f32,
    window: usize,
    /// (feature, weight); feature 0 with weight 0 marks an empty slot.
    table: Vec<(u32, i8)>,
    shift: u32,
    /// The weight of feature 0 itself (it cannot live in the table).
    zero: i8,
    /// The weight every word adds (feature [`EVERY_WORD`]): a per-word offset.
    per_word: i32,
}

/// The feature every word has; its weight offsets length (train.py's `EVERY_WORD`).
const EVERY_WORD: u32 = u32::MAX;

/// Why a model file was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("injection model: {0}")]
pub struct ModelError(&'static str);

impl Model {
    /// The model built into Warden.
    pub fn embedded() -> Result<Self, ModelError> {
        Self::parse(EMBEDDED)
    }

    /// Parses a model file: `WIM2`, count (u32 LE), scale (f32 LE), bias (f32 LE), window
    /// (u32 LE), then `count` entries of feature (u32 LE) and weight (i8).
    pub fn parse(bytes: &[u8]) -> Result<Self, ModelError> {
        let header = bytes
            .get(..HEADER)
            .ok_or(ModelError("file shorter than its header"))?;
        let word = |at: usize| -> [u8; 4] {
            let mut w = [0u8; 4];
            if let Some(src) = header.get(at..at + 4) {
                w.copy_from_slice(src);
            }
            w
        };
        if &word(0) != MAGIC {
            return Err(ModelError("not a WIM2 file"));
        }
        let count = u32::from_le_bytes(word(4)) as usize;
        let scale = f32::from_le_bytes(word(8));
        let bias = f32::from_le_bytes(word(12));
        let window = u32::from_le_bytes(word(16)) as usize;
        if window == 0 || window > MAX_WINDOW {
            return Err(ModelError("window outside 1..=128 words"));
        }
        if !(scale.is_finite() && scale > 0.0 && bias.is_finite()) {
            return Err(ModelError("scale or bias is not a finite number"));
        }
        if count > 1 << 24 {
            return Err(ModelError("more than 16M features"));
        }
        let entries = bytes.get(HEADER..).ok_or(ModelError("no weights"))?;
        if entries.len() != count * ENTRY {
            return Err(ModelError("file length does not match its feature count"));
        }
        let capacity = (count * 2).next_power_of_two().max(16);
        let mut model = Self {
            scale,
            bias,
            window,
            table: vec![(0, 0); capacity],
            shift: 32 - capacity.trailing_zeros(),
            zero: 0,
            per_word: 0,
        };
        for e in entries.chunks_exact(ENTRY) {
            let mut k = [0u8; 4];
            k.copy_from_slice(e.get(..4).unwrap_or(&[0; 4]));
            let key = u32::from_le_bytes(k);
            let weight = e.get(4).map_or(0, |&w| w as i8);
            model.insert(key, weight);
        }
        model.per_word = model.weight(EVERY_WORD);
        Ok(model)
    }

    fn slot(&self, key: u32) -> usize {
        (key.wrapping_mul(0x9E37_79B1) >> self.shift) as usize
    }

    fn insert(&mut self, key: u32, weight: i8) {
        if key == 0 {
            self.zero = weight;
            return;
        }
        let mask = self.table.len() - 1;
        let mut i = self.slot(key);
        while let Some(e) = self.table.get_mut(i) {
            if e.0 == 0 || e.0 == key {
                *e = (key, weight);
                return;
            }
            i = (i + 1) & mask;
        }
    }

    fn weight(&self, key: u32) -> i32 {
        if key == 0 {
            return i32::from(self.zero);
        }
        let mask = self.table.len() - 1;
        let mut i = self.slot(key);
        // The table is at most half full, so a probe ends at an empty slot.
        while let Some(&(k, w)) = self.table.get(i) {
            if k == key {
                return i32::from(w);
            }
            if k == 0 {
                return 0;
            }
            i = (i + 1) & mask;
        }
        0
    }

    /// The probability that some window of `text` is an injection, and that window's byte
    /// range in `text`.
    pub fn score(&self, text: &str) -> (f32, Range<usize>) {
        let mut ring = [(0i32, 0usize); MAX_WINDOW];
        let w = self.window;
        let mut sum = 0i32;
        let mut count = 0usize;
        let mut best: Option<(i32, Range<usize>)> = None;
        let mut prev: Option<u32> = None;
        let mut first_start = 0;
        let mut last_end = 0;
        for (range, h) in Tokens::new(text.as_bytes()) {
            let mut c = self.per_word + self.weight(unigram(h));
            if let Some(p) = prev {
                c += self.weight(bigram(p, h));
            }
            prev = Some(h);
            if count == 0 {
                first_start = range.start;
            }
            last_end = range.end;
            let slot = count % w;
            if let Some(s) = ring.get_mut(slot) {
                if count >= w {
                    sum -= s.0;
                }
                *s = (c, range.start);
            }
            sum += c;
            count += 1;
            if count >= w {
                // The window is the last `w` words; its first word sits in the next slot.
                let first = ring.get(count % w).map_or(0, |s| s.1);
                if best.as_ref().is_none_or(|(b, _)| sum > *b) {
                    best = Some((sum, first..range.end));
                }
            }
        }
        if count > 0 && count < w {
            best = Some((sum, first_start..last_end));
        }
        match best {
            Some((s, r)) => (sigmoid(self.bias + self.scale * s as f32), r),
            None => (sigmoid(self.bias), 0..0),
        }
    }
}

fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

/// FNV-1a, 32 bits, over the lower-cased word bytes.
const FNV_OFFSET: u32 = 0x811c_9dc5;
const FNV_PRIME: u32 = 0x0100_0193;

fn unigram(h: u32) -> u32 {
    h
}

fn bigram(prev: u32, h: u32) -> u32 {
    let mut x = prev
        .wrapping_mul(0x9E37_79B1)
        .wrapping_add(h)
        .wrapping_add(0x7F4A_7C15);
    x ^= x >> 16;
    x
}

/// Words: runs of ASCII letters and digits (lower-cased) and non-ASCII bytes; everything else
/// separates. Yields each word's byte range and hash.
struct Tokens<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Tokens<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }
}

/// Per byte: 0 for a separator, else the byte lower-cased (non-ASCII bytes are word bytes).
// Evaluated at compile time: an index out of bounds would fail the build, not panic.
#[allow(clippy::indexing_slicing)]
static WORD: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = if c.is_ascii_alphanumeric() || c >= 0x80 {
            c.to_ascii_lowercase()
        } else {
            0
        };
        b += 1;
    }
    t
};

fn word_byte(b: u8) -> u8 {
    WORD.get(usize::from(b)).copied().unwrap_or(0)
}

impl Iterator for Tokens<'_> {
    type Item = (Range<usize>, u32);

    fn next(&mut self) -> Option<Self::Item> {
        // One-letter words and numbers say nothing about intent, and as features they learnt
        // noise (the `r` of `-rw-r--r--`); they are skipped, in train.py too.
        loop {
            let (range, h, digits) = self.word()?;
            if range.len() > 1 && digits < range.len() {
                return Some((range, h));
            }
        }
    }
}

impl Tokens<'_> {
    /// The next run of word bytes, its hash and how many of its bytes are digits.
    fn word(&mut self) -> Option<(Range<usize>, u32, usize)> {
        let bytes = self.bytes;
        let mut i = self.at;
        while i < bytes.len() && word_byte(bytes.get(i).copied().unwrap_or(0)) == 0 {
            i += 1;
        }
        if i >= bytes.len() {
            self.at = i;
            return None;
        }
        let start = i;
        let mut h = FNV_OFFSET;
        let mut digits = 0;
        for &b in bytes.get(start..).unwrap_or_default() {
            let w = word_byte(b);
            if w == 0 {
                break;
            }
            digits += usize::from(w.is_ascii_digit());
            h = (h ^ u32::from(w)).wrapping_mul(FNV_PRIME);
            i += 1;
        }
        self.at = i;
        Some((start..i, h, digits))
    }
}

#[cfg(test)]
mod tests;
