//! Progress notifications while a call is held for approval (HC-1), where the protocol
//! allows them: the request carries `params._meta.progressToken` and its client accepts an
//! SSE answer. Then the first notification switches the answer to an event stream at once:
//! `notifications/progress` events while the call waits (who may approve, for how long),
//! then the call's own answer (its events, or its JSON as one event).
//!
//! The request's handler runs inside a task-local [`Slot`]; code deep in the decision path
//! ([`notify`]) finds it there, so nothing is threaded through the layers in between. A
//! request that is not held is answered exactly as before.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use http_body::Frame;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// Where a held call's progress goes: the request's progress token, once read, and the
/// channel to its answer.
#[derive(Debug)]
pub(crate) struct Slot {
    tx: mpsc::Sender<Bytes>,
    token: Mutex<Option<Value>>,
}

tokio::task_local! {
    static SLOT: Arc<Slot>;
}

type Handler = Pin<Box<dyn Future<Output = Response> + Send>>;

/// Does the client take an SSE answer?
pub(crate) fn accepts_sse(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .any(|v| v.to_str().is_ok_and(|s| s.contains("text/event-stream")))
}

/// Runs one POST's handler so that a held call can report progress (`sse`: the client
/// accepts an SSE answer, [`accepts_sse`]).
pub(crate) async fn serve<F>(sse: bool, handler: F) -> Response
where
    F: Future<Output = Response> + Send + 'static,
{
    if !sse {
        return handler.await;
    }
    let (tx, mut rx) = mpsc::channel(16);
    let slot = Arc::new(Slot {
        tx,
        token: Mutex::new(None),
    });
    let mut handler: Handler = Box::pin(SLOT.scope(slot, handler));
    tokio::select! {
        biased;
        answer = &mut handler => answer,
        Some(first) = rx.recv() => {
            let mut r = Response::new(Body::new(Progressing {
                first: Some(first),
                rx,
                handler: Some(handler),
                answer: None,
                json: None,
            }));
            let h = r.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            r
        }
    }
}

/// Remembers the request's progress token (`params._meta.progressToken`), if it has one.
pub(crate) fn offer(token: Option<&Value>) {
    if let Some(t) = token.filter(|t| t.is_string() || t.is_i64() || t.is_u64()) {
        let _ = SLOT.try_with(|s| {
            *s.token
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(t.clone());
        });
    }
}

/// Is there a client to tell? (A progress token was offered and SSE is accepted.)
pub(crate) fn wanted() -> bool {
    SLOT.try_with(|s| {
        s.token
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some()
    })
    .unwrap_or(false)
}

/// Sends one `notifications/progress` to the client, if it asked for progress. Never
/// waits: a client that does not read loses notifications, not the call.
pub(crate) fn notify(progress: u64, total: Option<u64>, message: &str) {
    let _ = SLOT.try_with(|s| {
        let token = s
            .token
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let Some(token) = token {
            let n = json!({
                "jsonrpc": "2.0",
                "method": "notifications/progress",
                "params": {
                    "progressToken": token,
                    "progress": progress,
                    "total": total,
                    "message": message,
                },
            });
            let _ = s.tx.try_send(event(&n.to_string()));
        }
    });
}

/// One SSE event carrying `data` (each of its lines as a `data:` line).
fn event(data: &str) -> Bytes {
    let mut out = String::with_capacity(data.len() + 24);
    out.push_str("event: message\n");
    for line in data.lines() {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    Bytes::from(out)
}

type JsonRead = Pin<Box<dyn Future<Output = Option<Bytes>> + Send>>;

/// The event stream of a held call: progress, then the call's answer.
struct Progressing {
    first: Option<Bytes>,
    rx: mpsc::Receiver<Bytes>,
    handler: Option<Handler>,
    /// The answer, once it is an event stream being relayed.
    answer: Option<Body>,
    /// The answer, once it is JSON being read (to send as one event).
    json: Option<JsonRead>,
}

impl http_body::Body for Progressing {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if let Some(b) = this.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(b))));
        }
        loop {
            if let Some(answer) = this.answer.as_mut() {
                return Pin::new(answer).poll_frame(cx);
            }
            if let Some(read) = this.json.as_mut() {
                let Poll::Ready(body) = read.as_mut().poll(cx) else {
                    return Poll::Pending;
                };
                this.json = None;
                // An answer that cannot be read ends the stream without it (the client sees
                // no result, never a wrong one).
                return Poll::Ready(
                    body.map(|b| Ok(Frame::data(event(String::from_utf8_lossy(&b).trim())))),
                );
            }
            let Some(handler) = this.handler.as_mut() else {
                return Poll::Ready(None);
            };
            if let Poll::Ready(Some(b)) = this.rx.poll_recv(cx) {
                return Poll::Ready(Some(Ok(Frame::data(b))));
            }
            let Poll::Ready(answer) = handler.as_mut().poll(cx) else {
                return Poll::Pending;
            };
            this.handler = None;
            if super::http::is_sse(answer.headers()) {
                this.answer = Some(answer.into_body());
            } else {
                let body = answer.into_body();
                this.json = Some(Box::pin(async move {
                    axum::body::to_bytes(body, super::http::MAX_READ_ANSWER)
                        .await
                        .ok()
                }));
            }
        }
    }
}
