//! The optional ONNX backend (`--features onnx`): a user-supplied prompt-injection
//! classifier — typically a Hugging Face sequence-classification model exported to ONNX, with
//! its `tokenizer.json` — run by ONNX Runtime, which is loaded at run time from a library the
//! user supplies (`libonnxruntime.so`; nothing is downloaded or linked at build time).
//!
//! The contract: the model's inputs are among `input_ids`, `attention_mask` and
//! `token_type_ids` (int64, `[1, tokens]`); its first output is `[1, classes]` float logits
//! (one class: a sigmoid logit; several: softmax, and `label` is the injection class). Long
//! texts are scored in overlapping windows of `max_tokens` (at most [`MAX_WINDOWS`]); the
//! text's score is its worst window's.

use std::path::Path;
use std::sync::Mutex;

use ort::session::Session;
use ort::value::Tensor;
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::Classifier;

/// Most windows scored per text (a 64 KiB text at 512 tokens is about 30).
pub const MAX_WINDOWS: usize = 32;

/// Tokens shared by consecutive windows.
const STRIDE: usize = 64;

/// Why the classifier could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error("ONNX Runtime library {path}: {why}")]
    Runtime { path: String, why: String },
    #[error("model {path}: {why}")]
    Model { path: String, why: String },
    #[error("tokenizer {path}: {why}")]
    Tokenizer { path: String, why: String },
    #[error("{0}")]
    Run(String),
}

/// Where the classifier's parts are.
#[derive(Debug, Clone)]
pub struct OnnxConfig<'a> {
    /// `libonnxruntime.so` (1.22 or later).
    pub runtime: &'a Path,
    pub model: &'a Path,
    pub tokenizer: &'a Path,
    /// The index of the injection class among the model's outputs.
    pub label: usize,
    /// Tokens per window (the model's maximum sequence length).
    pub max_tokens: usize,
}

#[derive(Debug, Clone, Copy)]
enum Feed {
    Ids,
    Mask,
    TypeIds,
}

/// A loaded classifier. Runs are serialised (ONNX Runtime sessions here need `&mut`); the
/// backend is for accuracy, not for the hot path's throughput.
#[derive(Debug)]
pub struct OnnxClassifier {
    session: Mutex<Session>,
    feeds: Vec<(String, Feed)>,
    /// The logits' output.
    output: String,
    tokenizer: Tokenizer,
    label: usize,
}

impl OnnxClassifier {
    /// Loads ONNX Runtime, the model and the tokenizer; checks the model's inputs.
    pub fn load(c: &OnnxConfig<'_>) -> Result<Self, OnnxError> {
        let runtime_err = |why: String| OnnxError::Runtime {
            path: c.runtime.display().to_string(),
            why,
        };
        if !c.runtime.is_file() {
            return Err(runtime_err("no such file".into()));
        }
        // `ort` panics when the library cannot be loaded or is too old: contained here.
        let runtime = c.runtime.to_string_lossy().into_owned();
        let session = std::panic::catch_unwind(|| {
            ort::init_from(runtime)
                .with_name("warden-inspect")
                .commit()
                .map_err(|e| runtime_err(e.to_string()))?;
            Session::builder()
                .and_then(|b| b.commit_from_file(c.model))
                .map_err(|e| OnnxError::Model {
                    path: c.model.display().to_string(),
                    why: e.to_string(),
                })
        })
        .map_err(|p| {
            runtime_err(
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "could not be loaded".into()),
            )
        })??;
        let model_err = |why: String| OnnxError::Model {
            path: c.model.display().to_string(),
            why,
        };
        let feeds = session
            .inputs
            .iter()
            .map(|i| {
                let feed = match i.name.as_str() {
                    "input_ids" => Feed::Ids,
                    "attention_mask" => Feed::Mask,
                    "token_type_ids" => Feed::TypeIds,
                    other => {
                        return Err(model_err(format!(
                            "input `{other}` is not one of input_ids, attention_mask, token_type_ids"
                        )));
                    }
                };
                Ok((i.name.clone(), feed))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let output = session
            .outputs
            .first()
            .map(|o| o.name.clone())
            .ok_or_else(|| model_err("it has no output".into()))?;
        let tok_err = |why: String| OnnxError::Tokenizer {
            path: c.tokenizer.display().to_string(),
            why,
        };
        let mut tokenizer =
            Tokenizer::from_file(c.tokenizer).map_err(|e| tok_err(e.to_string()))?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: c.max_tokens.max(STRIDE * 2),
                stride: STRIDE,
                strategy: TruncationStrategy::LongestFirst,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| tok_err(e.to_string()))?;
        Ok(Self {
            session: Mutex::new(session),
            feeds,
            output,
            tokenizer,
            label: c.label,
        })
    }

    fn window(&self, session: &mut Session, e: &tokenizers::Encoding) -> Result<f32, OnnxError> {
        let run = |e: ort::Error| OnnxError::Run(e.to_string());
        let n = e.get_ids().len();
        let column = |v: &[u32]| v.iter().map(|&x| i64::from(x)).collect::<Vec<i64>>();
        let mut inputs = Vec::with_capacity(self.feeds.len());
        for (name, feed) in &self.feeds {
            let data = match feed {
                Feed::Ids => column(e.get_ids()),
                Feed::Mask => column(e.get_attention_mask()),
                Feed::TypeIds => column(e.get_type_ids()),
            };
            let t = Tensor::from_array(([1usize, n], data)).map_err(run)?;
            inputs.push((name.as_str(), t));
        }
        let out = session.run(inputs).map_err(run)?;
        let logits = out
            .get(&self.output)
            .ok_or_else(|| OnnxError::Run(format!("the model did not return `{}`", self.output)))?;
        let (_, logits) = logits.try_extract_tensor::<f32>().map_err(run)?;
        probability(logits, self.label)
    }
}

/// The injection class's probability from one window's logits.
fn probability(logits: &[f32], label: usize) -> Result<f32, OnnxError> {
    match logits {
        [] => Err(OnnxError::Run("the model returned no logits".into())),
        [one] => Ok(1.0 / (1.0 + (-one).exp())),
        many => {
            let max = many.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let sum: f32 = many.iter().map(|l| (l - max).exp()).sum();
            let l = many.get(label).ok_or_else(|| {
                OnnxError::Run(format!(
                    "label {label} is out of range: the model has {} classes",
                    many.len()
                ))
            })?;
            Ok((l - max).exp() / sum)
        }
    }
}

impl Classifier for OnnxClassifier {
    fn score(&self, text: &str) -> Result<f32, String> {
        let enc = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| format!("tokenizer: {e}"))?;
        let mut session = self
            .session
            .lock()
            .map_err(|_| "the classifier's session is poisoned".to_owned())?;
        let mut worst = 0.0f32;
        for e in std::iter::once(&enc)
            .chain(enc.get_overflowing())
            .take(MAX_WINDOWS)
        {
            worst = worst.max(self.window(&mut session, e).map_err(|e| e.to_string())?);
        }
        Ok(worst)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn logits_become_the_labels_probability() {
        assert!((probability(&[0.0], 0).unwrap() - 0.5).abs() < 1e-6);
        let p = probability(&[0.0, 2.0], 1).unwrap();
        assert!((p - 0.880_797).abs() < 1e-4, "{p}");
        assert!(probability(&[0.0, 2.0], 2).is_err());
        assert!(probability(&[], 0).is_err());
    }
}
