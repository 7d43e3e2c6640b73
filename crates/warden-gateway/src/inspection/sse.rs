//! An SSE answer inspected event by event: progress notifications and server requests
//! stream through as they come; an event carrying a result is held until it is complete,
//! inspected ([`ResultGate::apply`]) and sent on rewritten. A stream that ends inside an
//! event has that last event inspected too, and an event larger than the limit is replaced
//! by an error: nothing reaches the agent uninspected.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use http_body::Frame;

use super::gate::ResultGate;

/// The SSE body of an answer, inspected.
#[derive(Debug)]
pub struct InspectedSse {
    inner: Body,
    gate: ResultGate,
    events: Events,
    /// The most bytes one event may hold.
    max_event: usize,
    done: bool,
}

impl InspectedSse {
    pub fn new(inner: Body, gate: ResultGate, max_event: usize) -> Self {
        Self {
            inner,
            gate,
            events: Events::default(),
            max_event,
            done: false,
        }
    }

    /// One event (without its blank line), inspected, with its blank line.
    fn process(&self, event: &[u8]) -> Vec<u8> {
        let text = String::from_utf8_lossy(event);
        crate::mcp::http::rewrite_sse_events(&text, |v| self.gate.apply(v)).into_bytes()
    }

    fn too_large(&self) -> Vec<u8> {
        let v = serde_json::json!({
            "jsonrpc": "2.0",
            "id": null,
            "error": {
                "code": warden_mcp::codes::DENIED,
                "message": format!("an event of the answer exceeds {} bytes and was not inspected", self.max_event),
                "data": {"reason": "result_too_large"},
            },
        });
        format!("event: message\ndata: {v}\n\n").into_bytes()
    }
}

/// SSE events cut out of a byte stream as it arrives, whatever its chunking.
#[derive(Debug, Default)]
pub(crate) struct Events {
    pending: Vec<u8>,
    /// How far `pending` has been searched for the end of an event.
    scanned: usize,
    /// Past the stream's first bytes (where a byte-order mark is dropped).
    started: bool,
}

const BOM: &[u8] = "\u{feff}".as_bytes();

impl Events {
    /// Adds `data` and hands `each` every event it completes (without its blank line).
    pub(crate) fn push(&mut self, data: &[u8], mut each: impl FnMut(&[u8])) {
        self.pending.extend_from_slice(data);
        if !self.started {
            if BOM.starts_with(&self.pending) {
                return; // maybe a byte-order mark: wait for the rest of it
            }
            self.start();
        }
        while let Some((end, sep)) = event_end(&self.pending, self.scanned.saturating_sub(3)) {
            let rest = self.pending.split_off(end + sep);
            let mut event = std::mem::replace(&mut self.pending, rest);
            event.truncate(end);
            self.scanned = 0;
            each(&event);
        }
        self.scanned = self.pending.len();
    }

    /// Drops a byte-order mark at the very start of the stream, as clients do.
    fn start(&mut self) {
        if !self.started && self.pending.starts_with(BOM) {
            self.pending.drain(..BOM.len());
        }
        self.started = true;
    }

    /// Bytes waiting for the end of their event.
    pub(crate) fn pending(&self) -> usize {
        self.pending.len()
    }

    /// At the end of the stream: the unfinished last event, unless it is only whitespace.
    pub(crate) fn finish(&mut self) -> Option<Vec<u8>> {
        self.start();
        let last = std::mem::take(&mut self.pending);
        (!last.iter().all(u8::is_ascii_whitespace)).then_some(last)
    }
}

/// Where the first event ends (a blank line: two line endings in a row, each `\r\n`, `\n`
/// or `\r`) and the separator's length.
pub(crate) fn event_end(b: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut i = from;
    while i + 1 < b.len() {
        match (b.get(i), b.get(i + 1)) {
            (Some(b'\n'), Some(b'\n')) => return Some((i, 2)),
            (Some(b'\r'), Some(b'\n'))
                if b.get(i + 2) == Some(&b'\r') && b.get(i + 3) == Some(&b'\n') =>
            {
                return Some((i, 4));
            }
            (Some(b'\r'), Some(b'\r')) => return Some((i, 2)),
            // LF then CRLF (or a lone CR). A CR at the very end may yet be followed by its
            // LF: that LF then opens the next event as an empty line, which clients skip.
            (Some(b'\n'), Some(b'\r')) => {
                let sep = if b.get(i + 2) == Some(&b'\n') { 3 } else { 2 };
                return Some((i, sep));
            }
            _ => i += 1,
        }
    }
    None
}

impl http_body::Body for InspectedSse {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        continue; // trailers: none in SSE
                    };
                    let mut out = Vec::new();
                    let mut events = std::mem::take(&mut this.events);
                    events.push(&data, |event| out.extend_from_slice(&this.process(event)));
                    this.events = events;
                    if this.events.pending() > this.max_event {
                        this.done = true;
                        out.extend_from_slice(&this.too_large());
                        return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                    }
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                    }
                }
                Poll::Ready(None) => {
                    this.done = true;
                    let Some(last) = this.events.finish() else {
                        return Poll::Ready(None);
                    };
                    let out = this.process(&last);
                    return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                }
            }
        }
    }
}
