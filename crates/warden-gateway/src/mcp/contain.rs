//! The kill switch's reach into work already under way (KS-1, KS-3): a call waiting for its
//! upstream, an answer still streaming, an open event stream. Each watches the revocation
//! state ([`Revocations::until_revoked`]), which wakes it the moment a change is published:
//! no polling, no per-agent registry to keep in step.
//!
//! * A call in flight is aborted by a **forced** kill of an agent on its delegation chain
//!   (a graceful kill lets it finish): if the upstream has not answered yet, the agent gets
//!   a JSON-RPC error (`agent_killed`); if the answer is streaming, the stream ends after an
//!   error event.
//! * An open GET event stream ends as soon as its token is no longer good for any reason:
//!   kill (either mode), suspension, revocation.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::response::Response;
use http_body::Frame;
use serde_json::json;
use warden_identity::token::AccessClaims;
use warden_identity::verifier::TokenVerifier;
use warden_mcp::{RequestId, codes, error_response};

use super::{McpState, rpc_error};

type Stop = Pin<Box<dyn Future<Output = String> + Send>>;

/// Called once if a kill cuts an answer that is already streaming.
pub(crate) type OnAbort = Box<dyn FnOnce(&str) + Send>;

fn stop(verifier: &Arc<TokenVerifier>, claims: &Arc<AccessClaims>, abort_only: bool) -> Stop {
    let (v, c) = (Arc::clone(verifier), Arc::clone(claims));
    Box::pin(async move { v.revocations().until_revoked(&c, abort_only).await })
}

/// The answer to a call aborted by a kill.
pub(crate) fn killed(id: Option<&RequestId>, why: &str) -> Response {
    rpc_error(
        StatusCode::OK,
        id,
        codes::DENIED,
        &format!("the call was aborted: {why}"),
        json!({"reason": "agent_killed"}),
    )
}

/// Runs the forwarding of one permitted call so that a forced kill aborts it, and keeps
/// watching while its answer streams.
pub(crate) async fn call(
    s: &McpState,
    claims: &Arc<AccessClaims>,
    id: Option<&RequestId>,
    on_abort: Option<OnAbort>,
    forward: impl Future<Output = Response>,
) -> Response {
    let verifier = &s.authority.verifier;
    let mut abort = stop(verifier, claims, true);
    let answer = tokio::select! {
        biased;
        why = &mut abort => {
            tracing::warn!(agent = %claims.client_id, "call in flight aborted: {why}");
            return killed(id, &why);
        }
        a = forward => a,
    };
    let sse = super::http::is_sse(answer.headers());
    let tail = sse.then(|| {
        let err = error_response(
            id,
            codes::DENIED,
            "the call was aborted: the agent was killed",
            json!({"reason": "agent_killed"}),
        );
        Bytes::from(format!("event: message\ndata: {err}\n\n"))
    });
    answer.map(|body| {
        Body::new(Contained {
            inner: body,
            stop: abort,
            tail,
            on_abort,
            ended: false,
        })
    })
}

/// Keeps an open event stream only while its token stays good.
pub(crate) fn stream(s: &McpState, claims: &Arc<AccessClaims>, answer: Response) -> Response {
    let abort = stop(&s.authority.verifier, claims, false);
    answer.map(|body| {
        Body::new(Contained {
            inner: body,
            stop: abort,
            tail: None,
            on_abort: None,
            ended: false,
        })
    })
}

/// A response body that ends when `stop` resolves (after `tail`, if any).
struct Contained {
    inner: Body,
    stop: Stop,
    tail: Option<Bytes>,
    on_abort: Option<OnAbort>,
    ended: bool,
}

impl http_body::Body for Contained {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(None);
        }
        if let Poll::Ready(why) = this.stop.as_mut().poll(cx) {
            tracing::warn!("stream closed: {why}");
            this.ended = true;
            if let Some(f) = this.on_abort.take() {
                f(&why);
            }
            return Poll::Ready(this.tail.take().map(|b| Ok(Frame::data(b))));
        }
        let frame = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(frame, Poll::Ready(None)) {
            this.ended = true;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }
}
