//! Streamable HTTP upstreams: one pooled HTTP/1.1 client, the headers that may cross, the
//! upstream's credential, and rewriting of SSE answers (for list filtering).

use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

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
}

/// One Streamable HTTP upstream.
#[derive(Debug)]
pub struct HttpUpstream {
    pub url: Uri,
    pub credential: Option<(HeaderName, HeaderValue)>,
    pub timeout: Duration,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl HttpUpstream {
    /// `url` must be `http://`; `credential` is the header to inject, if any.
    pub fn new(
        url: &str,
        credential: Option<(HeaderName, HeaderValue)>,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let url: Uri = url.parse().map_err(|e| anyhow::anyhow!("url {url}: {e}"))?;
        if url.scheme_str() != Some("http") {
            anyhow::bail!(
                "url {url}: only http:// upstreams are supported so far (put TLS in front, or \
                 run the upstream on loopback)"
            );
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Ok(Self {
            url,
            credential,
            timeout,
            client,
        })
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

/// Applies `f` to every JSON message in an SSE body (`data:` lines), keeping ids, event
/// names and retry hints. Events whose data is not JSON are kept as they were.
pub fn rewrite_sse(body: &str, mut f: impl FnMut(&mut Value)) -> String {
    let body = body.replace("\r\n", "\n");
    let mut out = String::with_capacity(body.len());
    for event in body.split("\n\n") {
        if event.is_empty() {
            continue;
        }
        let mut data = String::new();
        let mut other = Vec::new();
        for line in event.lines() {
            match line.strip_prefix("data:") {
                Some(d) => {
                    if !data.is_empty() {
                        data.push('\n');
                    }
                    data.push_str(d.strip_prefix(' ').unwrap_or(d));
                }
                None => other.push(line),
            }
        }
        for line in other {
            out.push_str(line);
            out.push('\n');
        }
        match serde_json::from_str::<Value>(&data) {
            Ok(mut v) if !data.is_empty() => {
                f(&mut v);
                out.push_str("data: ");
                out.push_str(&v.to_string());
                out.push('\n');
            }
            _ if !data.is_empty() || event.contains("data:") => {
                for d in data.split('\n') {
                    out.push_str("data: ");
                    out.push_str(d);
                    out.push('\n');
                }
            }
            _ => {}
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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
