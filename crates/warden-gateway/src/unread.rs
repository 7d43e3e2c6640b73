//! `Connection: close` on answers given before the request's body was read to its end (a
//! refusal for a missing credential, a body over the limit). The server closes such a
//! connection anyway when the unread rest is not already buffered; without the header a
//! pooled client, told nothing, sends its next request on a dead connection. The MCP
//! endpoints mark their early refusals themselves (`mcp::unread_body`, no per-call
//! wrapping on the hot path); this layer covers the admin, OAuth and AuthZEN APIs.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use http_body::Frame;

/// The middleware (`axum::middleware::from_fn(unread::close_if_unread)`).
pub async fn close_if_unread(req: Request, next: Next) -> Response {
    if http_body::Body::is_end_stream(req.body()) {
        return next.run(req).await;
    }
    let read = Arc::new(AtomicBool::new(false));
    let tracked = Tracked {
        inner: Body::default(),
        read: Arc::clone(&read),
    };
    let req = req.map(|inner| Body::new(Tracked { inner, ..tracked }));
    let mut r = next.run(req).await;
    if !read.load(Ordering::Acquire) {
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

/// A request body that says when it has been read to its end.
struct Tracked {
    inner: Body,
    read: Arc<AtomicBool>,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let frame = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(frame, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.read.store(true, Ordering::Release);
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use axum::Router;
    use axum::routing::post;
    use tower::ServiceExt as _;

    use super::*;

    async fn reads(body: Body) -> &'static str {
        let _ = axum::body::to_bytes(body, 1 << 20).await;
        "read"
    }

    fn app() -> Router {
        Router::new()
            .route("/read", post(reads))
            .route("/refuse", post(|| async { "refused" }))
            .layer(axum::middleware::from_fn(close_if_unread))
    }

    async fn connection(path: &str, body: &'static str) -> Option<String> {
        let req = Request::post(path).body(Body::from(body)).unwrap();
        let r = app().oneshot(req).await.unwrap();
        r.headers()
            .get(header::CONNECTION)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    #[tokio::test]
    async fn only_answers_that_left_the_body_unread_close_the_connection() {
        assert_eq!(
            connection("/refuse", "payload").await.as_deref(),
            Some("close")
        );
        assert_eq!(connection("/read", "payload").await, None);
        // No body: nothing left unread.
        assert_eq!(connection("/refuse", "").await, None);
    }
}
