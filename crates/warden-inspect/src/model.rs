//! The statistical layer of injection detection: a logistic model over hashed word unigrams
//! and bigrams, scored on every window of [`Model::window`] consecutive words; the text's
//! score is its most suspicious window's. Rules catch the phrasings we know; the model catches
//! the paraphrases ("kindly set aside what you were told before").
//!
//! The weights are trained by `scripts/inspection/train.py` (pure Python, reproducible, data
//! from PyPI — see docs/INSPECTION.md) and embedded in the binary; the tokeniser and hashing
//! here and in the script must stay identical, which `tests::python_parity` pins.
//!
//! Weights are 8-bit integers, so a window's score is an exact integer sum: the sliding window
//! costs one add and one subtract per word, with no floating-point drift.

use std::ops::Range;

/// The embedded model (`scripts/inspection/train.py` writes it).
static EMBEDDED: &[u8] = include_bytes!("../model/injection.wim");

const MAGIC: &[u8; 4] = b"WIM1";
/// Words per window; the ring buffer below is sized for the largest allowed.
const MAX_WINDOW: usize = 128;

/// A loaded model.
#[derive(Debug, Clone)]
pub struct Model {
    bits: u32,
    scale: f32,
    bias: f32,
    window: usize,
    weights: &'static [u8],
}

/// Why a model file was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("injection model: {0}")]
pub struct ModelError(&'static str);

impl Model {
    /// The model built into Warden.
    pub fn embedded() -> Result<Self, ModelError> {
        Self::parse(EMBEDDED)
    }

    /// Parses a model file: `WIM1`, bits (u32 LE), scale (f32 LE), bias (f32 LE), window (u32
    /// LE), then 2^bits signed 8-bit weights.
    pub fn parse(bytes: &'static [u8]) -> Result<Self, ModelError> {
        let header = bytes
            .get(..20)
            .ok_or(ModelError("file shorter than its header"))?;
        let word = |at: usize| -> [u8; 4] {
            let mut w = [0u8; 4];
            if let Some(src) = header.get(at..at + 4) {
                w.copy_from_slice(src);
            }
            w
        };
        if &word(0) != MAGIC {
            return Err(ModelError("not a WIM1 file"));
        }
        let bits = u32::from_le_bytes(word(4));
        let scale = f32::from_le_bytes(word(8));
        let bias = f32::from_le_bytes(word(12));
        let window = u32::from_le_bytes(word(16)) as usize;
        if !(8..=24).contains(&bits) {
            return Err(ModelError("hash width outside 8..=24 bits"));
        }
        if window == 0 || window > MAX_WINDOW {
            return Err(ModelError("window outside 1..=128 words"));
        }
        if !(scale.is_finite() && scale > 0.0 && bias.is_finite()) {
            return Err(ModelError("scale or bias is not a finite number"));
        }
        let weights = bytes.get(20..).ok_or(ModelError("no weights"))?;
        if weights.len() != 1usize << bits {
            return Err(ModelError("weight count does not match the hash width"));
        }
        Ok(Self {
            bits,
            scale,
            bias,
            window,
            weights,
        })
    }

    /// Words per scored window.
    pub fn window(&self) -> usize {
        self.window
    }

    fn weight(&self, index: u32) -> i32 {
        let mask = (1u32 << self.bits) - 1;
        self.weights
            .get((index & mask) as usize)
            .map_or(0, |&w| i32::from(w as i8))
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
            let mut c = self.weight(unigram(h));
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

const fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b >= 0x80
}

impl Iterator for Tokens<'_> {
    type Item = (Range<usize>, u32);

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.bytes.get(self.at..)?;
        let start = self.at + rest.iter().position(|&b| is_word(b))?;
        let mut h = FNV_OFFSET;
        let mut end = start;
        for &b in self.bytes.get(start..)? {
            if !is_word(b) {
                break;
            }
            h = (h ^ u32::from(b.to_ascii_lowercase())).wrapping_mul(FNV_PRIME);
            end += 1;
        }
        self.at = end;
        Some((start..end, h))
    }
}

#[cfg(test)]
mod tests;
