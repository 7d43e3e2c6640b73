//! Streamable HTTP upstreams: one pooled HTTP/1.1 client, the headers that may cross, the
//! upstream's credential, and rewriting of SSE answers (for list filtering).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use axum::body::Bytes;
use axum::http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, header,
};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

/// The HTTP client of upstreams and webhooks.
pub(crate) type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Client headers forwarded upstream. Nothing else crosses: not `Authorization`, not `DPoP`,
/// not cookies (MCP: no token passthrough; CR-7).
const FORWARDED_REQUEST_HEADERS: [&str; 7] = [
    "accept",
    "content-type",
    "mcp-protocol-version",
    "mcp-session-id",
    "mcp-method",
    "mcp-name",
    "last-event-id",
];

/// Upstream headers passed back to the client.
pub const FORWARDED_RESPONSE_HEADERS: [&str; 4] = [
    "content-type",
    "mcp-session-id",
    "cache-control",
    "mcp-protocol-version",
];

/// Why an upstream could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("the upstream did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the upstream is unreachable: {0}")]
    Unreachable(String),
    #[error("the upstream's answer could not be read: {0}")]
    Body(String),
    #[error("the upstream no longer knows Warden's session")]
    SessionGone,
}

fn rpc_body(id: u64, method: &str, params: &Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string()
}

fn header_text(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// Is this answer an SSE stream?
pub fn is_sse(h: &HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
}

/// One Streamable HTTP upstream.
#[derive(Debug)]
pub struct HttpUpstream {
    pub url: Uri,
    pub credential: Option<(HeaderName, HeaderValue)>,
    pub timeout: Duration,
    client: HttpClient,
    /// Warden's own session with the upstream, for the aggregate `/mcp` (opened lazily).
    own_session: ArcSwapOption<String>,
    opening: tokio::sync::Mutex<()>,
    next_id: AtomicU64,
}

/// The protocol version Warden speaks in its own sessions with upstreams.
pub const OWN_SESSION_VERSION: &str = "2025-11-25";

/// Largest upstream answer Warden reads whole (answers it rewrites or filters).
pub const MAX_READ_ANSWER: usize = 16 << 20;

impl HttpUpstream {
    /// `url` is `http://` or `https://`; `credential` is the header to inject, if any;
    /// `ca_file` holds PEM certificates trusted for this upstream besides the system's roots.
    pub fn new(
        url: &str,
        credential: Option<(HeaderName, HeaderValue)>,
        timeout: Duration,
        ca_file: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let url: Uri = url.parse().map_err(|e| anyhow::anyhow!("url {url}: {e}"))?;
        let client = client(&url, ca_file)?;
        Ok(Self {
            url,
            credential,
            timeout,
            client,
            own_session: ArcSwapOption::empty(),
            opening: tokio::sync::Mutex::new(()),
            next_id: AtomicU64::new(1),
        })
    }

    /// One request in Warden's own session with the upstream (opened on first use, reopened
    /// once if the upstream forgot it): the whole JSON-RPC answer message.
    pub async fn request(&self, method: &str, params: &Value) -> Result<Value, UpstreamError> {
        let session = self.own_session().await?;
        match self.exchange(&session, method, params).await {
            Err(UpstreamError::SessionGone) => {
                self.own_session
                    .compare_and_swap(&Some(session), None::<Arc<String>>);
                let session = self.own_session().await?;
                self.exchange(&session, method, params).await
            }
            other => other,
        }
    }

    async fn own_session(&self) -> Result<Arc<String>, UpstreamError> {
        if let Some(s) = self.own_session.load_full() {
            return Ok(s);
        }
        let _one_at_a_time = self.opening.lock().await;
        if let Some(s) = self.own_session.load_full() {
            return Ok(s);
        }
        let params = json!({
            "protocolVersion": OWN_SESSION_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "warden", "version": env!("CARGO_PKG_VERSION")},
        });
        let (head, answer) = self
            .post(None, &rpc_body(0, "initialize", &params), Some(0))
            .await?;
        if let Some(e) = answer.get("error") {
            return Err(UpstreamError::Body(format!("initialize refused: {e}")));
        }
        // A server without sessions answers none; Warden then sends no session id.
        let sid = Arc::new(header_text(&head, "mcp-session-id").unwrap_or_default());
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string();
        self.post(Some(&sid), &note, None).await?;
        self.own_session.store(Some(Arc::clone(&sid)));
        Ok(sid)
    }

    async fn exchange(
        &self,
        session: &str,
        method: &str,
        params: &Value,
    ) -> Result<Value, UpstreamError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (_, answer) = self
            .post(Some(session), &rpc_body(id, method, params), Some(id))
            .await?;
        Ok(answer)
    }

    /// POSTs one message in Warden's session; with `want`, reads the answer with that id
    /// (JSON or SSE). `SessionGone` when the upstream answers 404 to a session.
    async fn post(
        &self,
        session: Option<&str>,
        body: &str,
        want: Option<u64>,
    ) -> Result<(HeaderMap, Value), UpstreamError> {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        h.insert(
            "mcp-protocol-version",
            HeaderValue::from_static(OWN_SESSION_VERSION),
        );
        if let Some(sid) = session.filter(|s| !s.is_empty())
            && let Ok(v) = HeaderValue::from_str(sid)
        {
            h.insert("mcp-session-id", v);
        }
        let answer = self
            .send(Method::POST, &h, Bytes::from(body.to_owned()))
            .await?;
        let (parts, body) = answer.into_parts();
        if parts.status == StatusCode::NOT_FOUND && session.is_some_and(|s| !s.is_empty()) {
            return Err(UpstreamError::SessionGone);
        }
        let Some(want) = want else {
            return Ok((parts.headers, Value::Null));
        };
        if !parts.status.is_success() {
            return Err(UpstreamError::Body(format!("HTTP {}", parts.status)));
        }
        let raw = tokio::time::timeout(
            self.timeout,
            http_body_util::BodyExt::collect(http_body_util::Limited::new(body, MAX_READ_ANSWER)),
        )
        .await
        .map_err(|_| UpstreamError::Timeout(self.timeout))?
        .map_err(|e| UpstreamError::Body(e.to_string()))?
        .to_bytes();
        let want = json!(want);
        let mut found = None;
        if is_sse(&parts.headers) {
            rewrite_sse(&String::from_utf8_lossy(&raw), |v| {
                if v.get("id") == Some(&want) && found.is_none() {
                    found = Some(v.take());
                }
            });
        } else if let Ok(v) = serde_json::from_slice::<Value>(&raw)
            && v.get("id") == Some(&want)
        {
            found = Some(v);
        }
        found
            .map(|v| (parts.headers, v))
            .ok_or_else(|| UpstreamError::Body("no answer to Warden's request".into()))
    }

    /// Sends `body` with the forwardable subset of the client's headers and the upstream's
    /// credential. Waits at most the timeout for the answer's head; the body streams.
    pub async fn send(
        &self,
        method: Method,
        client_headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let mut req = Request::builder().method(method).uri(self.url.clone());
        if let Some(h) = req.headers_mut() {
            for name in FORWARDED_REQUEST_HEADERS {
                for v in client_headers.get_all(name) {
                    h.append(name, v.clone());
                }
            }
            if let Some((k, v)) = &self.credential {
                h.insert(k.clone(), v.clone());
            }
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| UpstreamError::Unreachable(e.to_string()))?;
        match tokio::time::timeout(self.timeout, self.client.request(req)).await {
            Err(_) => Err(UpstreamError::Timeout(self.timeout)),
            Ok(Err(e)) => Err(UpstreamError::Unreachable(e.to_string())),
            Ok(Ok(r)) => Ok(r),
        }
    }
}

/// The TLS settings of an https:// upstream: TLS 1.2 or 1.3 (ring), the server's name
/// checked against its certificate, trusting the system's roots and the certificates in
/// `ca_file`.
/// An HTTP client for exactly the scheme of `url` (an http:// one refuses https and the
/// other way round), with rustls and the system's roots plus `ca_file` for https.
pub(crate) fn client(url: &Uri, ca_file: Option<&Path>) -> anyhow::Result<HttpClient> {
    let tls = match url.scheme_str() {
        Some("http") => {
            if ca_file.is_some() {
                anyhow::bail!("url {url}: `ca_file` is for an https:// upstream");
            }
            None
        }
        Some("https") => Some(tls_config(ca_file)?),
        _ => anyhow::bail!("url {url}: must start with http:// or https://"),
    };
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.enforce_http(false);
    let builder = hyper_rustls::HttpsConnectorBuilder::new();
    // An http:// upstream gets a connector that refuses https and the other way round:
    // the scheme in the config is the only one ever used.
    let connector = match tls {
        Some(tls) => builder
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .wrap_connector(connector),
        None => builder
            .with_tls_config(tls_client(rustls::RootCertStore::empty())?)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector),
    };
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .build(connector);
    Ok(client)
}

fn tls_config(ca_file: Option<&Path>) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in system_roots() {
        // A root the system lists but rustls cannot parse is skipped, as browsers do.
        let _ = roots.add(cert.clone());
    }
    if let Some(path) = ca_file {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| anyhow::anyhow!("ca_file {}: {e}", path.display()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("ca_file {}: {e}", path.display()))?;
        if certs.is_empty() {
            anyhow::bail!(
                "ca_file {}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it",
                path.display()
            );
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| anyhow::anyhow!("ca_file {}: {e}", path.display()))?;
        }
    }
    if roots.is_empty() {
        anyhow::bail!(
            "no trusted certificate authority: the system has none Warden can read (install \
             ca-certificates) and no `ca_file` is set"
        );
    }
    tls_client(roots)
}

fn tls_client(roots: rustls::RootCertStore) -> anyhow::Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow::anyhow!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The operating system's trusted roots, read once.
fn system_roots() -> &'static [rustls::pki_types::CertificateDer<'static>] {
    static ROOTS: std::sync::OnceLock<Vec<rustls::pki_types::CertificateDer<'static>>> =
        std::sync::OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::warn!(target: "warden::mcp", "reading the system's CA certificates: {e}");
        }
        found.certs
    })
}

/// Applies `f` to every JSON message in an SSE body (`data:` fields), keeping ids, event
/// names, retry hints and comments.
///
/// The body is read the way the SSE grammar says a client reads it, so that nothing reaches
/// the agent that Warden did not see: every line ending (CRLF, LF and a lone CR) ends a
/// line, a leading byte-order mark is dropped, a field is the text before the first `:`
/// (`data` alone is a data field too), and fields a client ignores are dropped here as
/// well. Data that is not JSON cannot be inspected or filtered: it is withheld and the
/// event carries a JSON-RPC error instead (fail closed; found by the `sse` fuzz target).
/// Events with no data (a stream's priming event) pass as they are.
pub fn rewrite_sse(body: &str, f: impl FnMut(&mut Value)) -> String {
    rewrite_sse_events(body.strip_prefix('\u{feff}').unwrap_or(body), f)
}

/// [`rewrite_sse`] for events cut from the middle of a stream: a byte-order mark is only
/// dropped at the start of a stream (`inspection::sse::Events` does that), so here it is
/// part of the first field's name, as for a client.
pub fn rewrite_sse_events(body: &str, mut f: impl FnMut(&mut Value)) -> String {
    // Most upstreams end lines with LF only: no copy for them.
    let body: std::borrow::Cow<'_, str> = if body.contains('\r') {
        body.replace("\r\n", "\n").replace('\r', "\n").into()
    } else {
        body.into()
    };
    let mut out = String::with_capacity(body.len());
    for event in body.split("\n\n") {
        let mut data: Option<String> = None;
        let mut kept = Vec::new();
        for line in event.split('\n').filter(|l| !l.is_empty()) {
            let (field, value) = match line.split_once(':') {
                Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
                None => (line, ""),
            };
            match field {
                "data" => match &mut data {
                    Some(d) => {
                        d.push('\n');
                        d.push_str(value);
                    }
                    None => data = Some(value.to_owned()),
                },
                // A comment, or a field a client acts on: kept as it came.
                "" | "id" | "event" | "retry" => kept.push(line),
                // Any other field is ignored by clients; dropping it keeps the output plain.
                _ => {}
            }
        }
        if kept.is_empty() && data.is_none() {
            continue;
        }
        for line in kept {
            out.push_str(line);
            out.push('\n');
        }
        match data.as_deref() {
            None => {}
            Some("") => out.push_str("data: \n"),
            Some(d) => {
                let v = match serde_json::from_str::<Value>(d) {
                    Ok(mut v) => {
                        f(&mut v);
                        v
                    }
                    Err(_) => json!({
                        "jsonrpc": "2.0",
                        "id": null,
                        "error": {
                            "code": warden_mcp::codes::UPSTREAM_FAILED,
                            "message": "the upstream sent an event whose data is not JSON; Warden withheld it",
                            "data": {"reason": "upstream_garbage"},
                        },
                    }),
                };
                out.push_str("data: ");
                out.push_str(&v.to_string());
                out.push('\n');
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Regressions from the `sse` fuzz target: each of these reached a client uninspected.
    #[test]
    fn sse_rewrite_reads_events_as_clients_do() {
        let mark = |v: &mut Value| *v = serde_json::json!("seen");
        // A lone CR ends a line: `data:` after it is a data field for the client.
        assert_eq!(
            rewrite_sse("id: 1\rdata: {\"result\":1}\r\r", mark),
            "id: 1\ndata: \"seen\"\n\n"
        );
        // A leading byte-order mark is not part of the first field's name.
        assert_eq!(
            rewrite_sse("\u{feff}data: {\"result\":1}\n\n", mark),
            "data: \"seen\"\n\n"
        );
        // Data that is not JSON (here NaN, which some client parsers accept) is withheld.
        let out = rewrite_sse("data: {\"result\":NaN}\n\n", mark);
        assert!(
            out.contains("upstream_garbage") && !out.contains("NaN"),
            "{out}"
        );
        // Fields clients ignore are dropped; comments kept.
        assert_eq!(
            rewrite_sse(": hi\nfoo: bar\ndata\ndata: 1\n\n", mark),
            ": hi\ndata: \"seen\"\n\n"
        );
    }

    #[test]
    fn sse_rewrite_keeps_framing_and_touches_only_json() {
        let body = "data: \nid: 0\nretry: 3000\n\nid: 1\ndata: {\"id\":1,\"result\":{\"tools\":[1,2]}}\n\n";
        let out = rewrite_sse(body, |v| {
            v["result"]["tools"] = serde_json::json!([1]);
        });
        assert_eq!(
            out,
            "id: 0\nretry: 3000\ndata: \n\nid: 1\ndata: {\"id\":1,\"result\":{\"tools\":[1]}}\n\n"
        );
    }
}
