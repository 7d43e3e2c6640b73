//! `[inspection.classifier]`: the optional ONNX classifier (warden-inspect's `onnx`
//! feature). A configured classifier that cannot be loaded stops Warden from starting: it
//! never runs with less inspection than its configuration asks for.

use warden_config::ClassifierConfig;
use warden_inspect::Inspector;

/// `inspector` with the configured classifier, if any.
#[cfg(feature = "onnx")]
pub fn attach(inspector: Inspector, c: Option<&ClassifierConfig>) -> anyhow::Result<Inspector> {
    use anyhow::Context as _;
    let Some(c) = c else {
        return Ok(inspector);
    };
    let loaded = warden_inspect::onnx::OnnxClassifier::load(&warden_inspect::onnx::OnnxConfig {
        runtime: &c.runtime,
        model: &c.model,
        tokenizer: &c.tokenizer,
        label: c.label,
        max_tokens: c.max_tokens,
    })
    .context("cannot load [inspection.classifier]")?;
    tracing::info!(model = %c.model.display(), "ONNX injection classifier loaded");
    Ok(inspector.with_classifier(std::sync::Arc::new(loaded)))
}

/// `inspector` as it is; a configured classifier is an error (this build has no ONNX).
#[cfg(not(feature = "onnx"))]
pub fn attach(inspector: Inspector, c: Option<&ClassifierConfig>) -> anyhow::Result<Inspector> {
    match c {
        None => Ok(inspector),
        Some(_) => anyhow::bail!(
            "[inspection.classifier] is configured but this Warden was built without ONNX \
             support: build it with `cargo build --release -p warden-cli --features onnx`, or \
             remove the section"
        ),
    }
}
