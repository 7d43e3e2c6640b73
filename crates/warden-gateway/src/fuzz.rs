//! Fuzz targets for what the gateway parses itself: SSE streams from upstreams, the token
//! endpoint's form, and the 2026-07-28 `Mcp-Method`/`Mcp-Name` headers against the body.
//! `cargo test` replays the seed corpora in `src/__fuzz__/` and runs random inputs for a
//! second each; `scripts/fuzz.sh` runs them coverage-guided. docs/SECURITY-TESTS.md.

use std::collections::HashSet;

use axum::http::{HeaderMap, HeaderValue};
use serde_json::{Value, json};

use crate::inspection::sse::Events;
use crate::mcp::http::rewrite_sse_events;

/// The events a client following the SSE grammar dispatches from `stream`: their data.
fn client_events(stream: &str) -> Vec<String> {
    let stream = stream.strip_prefix('\u{feff}').unwrap_or(stream);
    let mut lines = Vec::new();
    let mut line = String::new();
    let mut chars = stream.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' | '\n' => {
                if c == '\r' && chars.peek() == Some(&'\n') {
                    chars.next();
                }
                lines.push(std::mem::take(&mut line));
            }
            c => line.push(c),
        }
    }
    let mut events = Vec::new();
    let mut data = String::new();
    for line in lines {
        if line.is_empty() {
            if !data.is_empty() {
                data.pop();
                events.push(std::mem::take(&mut data));
            }
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line.as_str(), ""),
        };
        if field == "data" {
            data.push_str(value);
            data.push('\n');
        }
    }
    events
}

/// An upstream's SSE answer in arbitrary chunks, cut into events and each rewritten the way
/// the result gate does: every event a client reads from the output is either empty, a
/// value that went through the inspector (`f`), or Warden's error; and the chunking does not
/// change the output. (This target found that a lone CR, a byte-order mark or a bare `data`
/// line let an uninspected event through; `rewrite_sse` now reads SSE as clients do.)
#[test]
fn sse() {
    bolero::check!().for_each(|input: &[u8]| {
        let Some((&cut, body)) = input.split_first() else {
            return;
        };
        let chunk = usize::from(cut % 16) + 1;
        let mut seen = HashSet::new();
        let mut n = 0u64;
        let mut mark = |v: &mut Value| {
            n += 1;
            *v = json!({"inspected": n});
            seen.insert(v.to_string());
        };
        let mut chunked = String::new();
        let mut events = Events::default();
        for part in body.chunks(chunk) {
            events.push(part, |e| {
                chunked.push_str(&rewrite_sse_events(&String::from_utf8_lossy(e), &mut mark));
            });
        }
        if let Some(last) = events.finish() {
            chunked.push_str(&rewrite_sse_events(
                &String::from_utf8_lossy(&last),
                &mut mark,
            ));
        }
        for data in client_events(&chunked) {
            let withheld = serde_json::from_str::<Value>(&data)
                .is_ok_and(|v| v["error"]["data"]["reason"] == "upstream_garbage");
            assert!(
                data.is_empty() || seen.contains(&data) || withheld,
                "a client reads uninspected data {data:?} from {chunked:?}"
            );
        }
        let mut whole = String::new();
        let mut events = Events::default();
        let mut count = |_: &mut Value| {};
        events.push(body, |e| {
            whole.push_str(&rewrite_sse_events(&String::from_utf8_lossy(e), &mut count));
        });
        if let Some(last) = events.finish() {
            whole.push_str(&rewrite_sse_events(
                &String::from_utf8_lossy(&last),
                &mut count,
            ));
        }
        assert_eq!(
            client_events(&whole).len(),
            client_events(&chunked).len(),
            "chunking changed the events"
        );
    });
}

/// The token endpoint's form: each parameter at most once after percent-decoding, and the
/// `authorization_details` task entry either refused or well-formed.
#[test]
fn token_form() {
    bolero::check!().for_each(|body: &[u8]| {
        let Ok(form) = crate::oauth::Form::parse(body) else {
            return;
        };
        let mut keys = HashSet::new();
        for (k, _) in form_urlencoded::parse(body) {
            assert!(keys.insert(k.clone()), "`{k}` accepted twice");
        }
        if let Ok(Some(d)) = crate::oauth::Authority::task_detail(&form) {
            assert!(!d.task_id.is_empty() && d.task_id.len() <= 128);
        }
    });
}

/// `Mcp-Method` / `Mcp-Name` against the body: when the check passes, the headers a proxy
/// or the upstream routes on say what the body says.
#[test]
fn mcp_headers() {
    bolero::check!().for_each(|input: &[u8]| {
        let mut parts = input.splitn(4, |b| *b == b'\n');
        let (Some(method), Some(name), Some(version), Some(body)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return;
        };
        let Ok(frame) = warden_mcp::Frame::parse(body, 64 * 1024) else {
            return;
        };
        let mut headers = HeaderMap::new();
        for (key, value) in [
            ("mcp-method", method),
            ("mcp-name", name),
            ("mcp-protocol-version", version),
        ] {
            if let Ok(v) = HeaderValue::from_bytes(value)
                && !value.is_empty()
            {
                headers.insert(key, v);
            }
        }
        if crate::mcp::check_headers(&headers, &frame).is_err() {
            return;
        }
        let body: Value = serde_json::from_slice(body).unwrap();
        if let Some(m) = headers.get("mcp-method").and_then(|v| v.to_str().ok()) {
            assert_eq!(
                body["method"].as_str(),
                Some(m),
                "Mcp-Method passed unequal"
            );
        }
        if let Some(n) = headers.get("mcp-name").and_then(|v| v.to_str().ok()) {
            let p = &body["params"];
            let named = [&p["name"], &p["uri"]]
                .iter()
                .any(|v| v.as_str() == Some(n));
            assert!(named, "Mcp-Name `{n}` passed for {body}");
        }
    });
}
