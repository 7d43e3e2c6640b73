//! MCP messages as Warden sees them (PEP, issue 4): JSON-RPC 2.0 frames decoded into typed
//! actions, strictly.
//!
//! - A frame is at most `max_bytes`, UTF-8 JSON, with **no duplicate keys** at any depth
//!   ([`strict`]), a single message (JSON-RPC batches were removed from MCP in 2025-06-18 and
//!   are refused), `"jsonrpc": "2.0"`, and the shape of a request, notification or response.
//! - Requests become [`Action`]s: `tools/call` (tool name and arguments), `resources/read`
//!   (URI), `prompts/get` (name and arguments), the list calls, and the rest by method name.
//! - The frame keeps the exact bytes it was parsed from. The only way to get them back for
//!   forwarding is [`Permitted::bytes`], and a [`Permitted`] is made only from an allowing
//!   [`Decision`](warden_core::Decision): what was decided is exactly what is forwarded.

pub mod strict;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod fuzz;

use serde_json::{Map, Value};
use warden_core::{Decision, Effect};

/// JSON-RPC and Warden error codes (stable; documented in docs/mcp.md).
pub mod codes {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    /// The policy denied the action.
    pub const DENIED: i64 = -32001;
    /// A human must approve the action first.
    pub const APPROVAL_REQUIRED: i64 = -32002;
    /// The action is not among the task token's granted actions.
    pub const NOT_IN_TASK: i64 = -32003;
    /// The upstream could not be reached or answered garbage.
    pub const UPSTREAM_FAILED: i64 = -32004;
}

/// Why a frame was refused before any decision.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("the message is {size} bytes; at most {max} are accepted")]
    TooLarge { size: usize, max: usize },
    #[error("not valid JSON: {0}")]
    Parse(String),
    #[error("invalid JSON-RPC message: {0}")]
    Invalid(String),
    #[error("invalid params for {method}: {reason}")]
    Params { method: String, reason: String },
}

impl FrameError {
    /// The JSON-RPC error code for this refusal.
    pub fn code(&self) -> i64 {
        match self {
            Self::Parse(_) => codes::PARSE_ERROR,
            Self::Params { .. } => codes::INVALID_PARAMS,
            Self::TooLarge { .. } | Self::Invalid(_) => codes::INVALID_REQUEST,
        }
    }

    /// A stable reason id for the error's `data`.
    pub fn reason_id(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "frame_too_large",
            Self::Parse(_) => "malformed_json",
            Self::Invalid(_) => "invalid_jsonrpc",
            Self::Params { .. } => "invalid_params",
        }
    }
}

/// A JSON-RPC request id: a string or an integer (never null for requests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestId {
    Str(String),
    Num(i64),
}

impl RequestId {
    pub fn to_value(&self) -> Value {
        match self {
            Self::Str(s) => Value::String(s.clone()),
            Self::Num(n) => Value::from(*n),
        }
    }
}

/// What a list call lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    Tools,
    Resources,
    ResourceTemplates,
    Prompts,
}

/// A client request, typed by what Warden decides about.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    CallTool {
        name: String,
        arguments: Map<String, Value>,
    },
    ReadResource {
        uri: String,
    },
    GetPrompt {
        name: String,
        arguments: Map<String, Value>,
    },
    List(ListKind),
    /// `completion/complete`: argument completions for a prompt or a resource template.
    Complete(CompletionRef),
    /// `initialize`, `ping`, `server/discover`, `logging/setLevel`, ...: decided by method
    /// name. (`resources/subscribe` and `unsubscribe` decode as [`Action::ReadResource`]:
    /// subscribing to a resource is reading its updates.)
    Other(String),
}

/// What a completion request completes for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompletionRef {
    /// `ref/prompt`: a prompt's name.
    Prompt(String),
    /// `ref/resource`: a resource (template) URI.
    Resource(String),
}

/// One decoded message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Request {
        id: RequestId,
        method: String,
        action: Action,
        /// `params._meta`, if any (where `warden/reason` is read from).
        meta: Option<Map<String, Value>>,
    },
    Notification {
        method: String,
    },
    /// A response to a request the server sent the client (sampling, elicitation, roots).
    Response {
        id: RequestId,
        is_error: bool,
    },
}

/// A parsed frame: the message and the exact bytes it came from.
#[derive(Debug, Clone)]
pub struct Frame {
    message: Message,
    bytes: Vec<u8>,
}

/// The `params._meta` key where an agent states why it acts.
pub const REASON_META_KEY: &str = "warden/reason";
/// Where an agent names the approval it presents for a call (`params._meta`).
pub const APPROVAL_META_KEY: &str = "warden/approval";

impl Frame {
    /// Decodes one message of at most `max_bytes`.
    pub fn parse(bytes: &[u8], max_bytes: usize) -> Result<Self, FrameError> {
        if bytes.len() > max_bytes {
            return Err(FrameError::TooLarge {
                size: bytes.len(),
                max: max_bytes,
            });
        }
        let value = strict::parse(bytes).map_err(|e| FrameError::Parse(e.to_string()))?;
        let message = decode(value)?;
        Ok(Self {
            message,
            bytes: bytes.to_vec(),
        })
    }

    pub fn message(&self) -> &Message {
        &self.message
    }

    /// The request id, for answering with an error.
    pub fn id(&self) -> Option<&RequestId> {
        match &self.message {
            Message::Request { id, .. } | Message::Response { id, .. } => Some(id),
            Message::Notification { .. } => None,
        }
    }

    /// The approval the agent presents (`params._meta["warden/approval"]`), if any.
    pub fn approval_id(&self) -> Option<&str> {
        self.meta_str(APPROVAL_META_KEY)
    }

    /// A string in the request's `params._meta`.
    pub fn meta_str(&self, key: &str) -> Option<&str> {
        self.meta(key).and_then(Value::as_str)
    }

    /// A value in the request's `params._meta` (e.g. `progressToken`).
    pub fn meta(&self, key: &str) -> Option<&Value> {
        match &self.message {
            Message::Request { meta: Some(m), .. } => m.get(key),
            _ => None,
        }
    }

    /// The agent's stated reason (`params._meta["warden/reason"]`), if given.
    pub fn stated_reason(&self) -> Option<&str> {
        match &self.message {
            Message::Request { meta: Some(m), .. } => {
                m.get(REASON_META_KEY).and_then(Value::as_str)
            }
            _ => None,
        }
    }
}

fn invalid(m: impl Into<String>) -> FrameError {
    FrameError::Invalid(m.into())
}

fn decode(v: Value) -> Result<Message, FrameError> {
    let Value::Object(mut o) = v else {
        return Err(invalid(if v.is_array() {
            "batches are not accepted (removed from MCP in 2025-06-18); send one message"
        } else {
            "a message is a JSON object"
        }));
    };
    if o.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(invalid("`jsonrpc` must be \"2.0\""));
    }
    let id = match o.get("id") {
        None => None,
        Some(Value::String(s)) => Some(RequestId::Str(s.clone())),
        Some(Value::Number(n)) => {
            Some(RequestId::Num(n.as_i64().ok_or_else(|| {
                invalid("a numeric `id` must be an integer")
            })?))
        }
        Some(_) => return Err(invalid("`id` must be a string or an integer")),
    };
    match o.remove("method") {
        Some(Value::String(method)) => {
            for k in o.keys() {
                if !["jsonrpc", "id", "params"].contains(&k.as_str()) {
                    return Err(invalid(format!("unexpected member `{k}` in a request")));
                }
            }
            let params = match o.remove("params") {
                None => Map::new(),
                Some(Value::Object(p)) => p,
                Some(_) => {
                    return Err(FrameError::Params {
                        method,
                        reason: "params must be an object".into(),
                    });
                }
            };
            match id {
                None => Ok(Message::Notification { method }),
                Some(id) => {
                    let meta = params.get("_meta").and_then(Value::as_object).cloned();
                    let action = action(&method, &params)?;
                    Ok(Message::Request {
                        id,
                        method,
                        action,
                        meta,
                    })
                }
            }
        }
        Some(_) => Err(invalid("`method` must be a string")),
        None => {
            let id = id.ok_or_else(|| invalid("a response needs an `id`"))?;
            match (o.contains_key("result"), o.contains_key("error")) {
                (true, false) => Ok(Message::Response {
                    id,
                    is_error: false,
                }),
                (false, true) => Ok(Message::Response { id, is_error: true }),
                _ => Err(invalid(
                    "a message without `method` is a response: exactly one of `result`, `error`",
                )),
            }
        }
    }
}

fn action(method: &str, params: &Map<String, Value>) -> Result<Action, FrameError> {
    let bad = |reason: &str| FrameError::Params {
        method: method.to_owned(),
        reason: reason.to_owned(),
    };
    let string = |k: &str| -> Result<String, FrameError> {
        match params.get(k) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            _ => Err(bad(&format!("`{k}` must be a non-empty string"))),
        }
    };
    let arguments = || -> Result<Map<String, Value>, FrameError> {
        match params.get("arguments") {
            None | Some(Value::Null) => Ok(Map::new()),
            Some(Value::Object(a)) => Ok(a.clone()),
            Some(_) => Err(bad("`arguments` must be an object")),
        }
    };
    Ok(match method {
        "tools/call" => Action::CallTool {
            name: string("name")?,
            arguments: arguments()?,
        },
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            Action::ReadResource {
                uri: string("uri")?,
            }
        }
        "completion/complete" => {
            let r = params
                .get("ref")
                .and_then(Value::as_object)
                .ok_or_else(|| bad("`ref` must be an object"))?;
            let field = |k: &str| {
                r.get(k)
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .ok_or_else(|| bad(&format!("`ref.{k}` must be a non-empty string")))
            };
            Action::Complete(match r.get("type").and_then(Value::as_str) {
                Some("ref/prompt") => CompletionRef::Prompt(field("name")?),
                Some("ref/resource") => CompletionRef::Resource(field("uri")?),
                _ => return Err(bad("`ref.type` must be `ref/prompt` or `ref/resource`")),
            })
        }
        "prompts/get" => Action::GetPrompt {
            name: string("name")?,
            arguments: arguments()?,
        },
        "tools/list" => Action::List(ListKind::Tools),
        "resources/list" => Action::List(ListKind::Resources),
        "resources/templates/list" => Action::List(ListKind::ResourceTemplates),
        "prompts/list" => Action::List(ListKind::Prompts),
        other => Action::Other(other.to_owned()),
    })
}

/// A frame the Policy Engine allowed. The only source of bytes to forward.
#[derive(Debug)]
pub struct Permitted {
    frame: Frame,
    decision: Decision,
}

/// A frame that may not be forwarded, with the decision that said so.
#[derive(Debug)]
pub struct Refused {
    pub frame: Frame,
    pub decision: Decision,
}

impl Permitted {
    /// Wraps `frame` if `decision` allows it; otherwise hands both back.
    pub fn new(frame: Frame, decision: Decision) -> Result<Self, Box<Refused>> {
        if decision.effect == Effect::Allow {
            Ok(Self { frame, decision })
        } else {
            Err(Box::new(Refused { frame, decision }))
        }
    }

    /// The exact bytes that were decided on.
    pub fn bytes(&self) -> &[u8] {
        &self.frame.bytes
    }

    pub fn frame(&self) -> &Frame {
        &self.frame
    }

    pub fn decision(&self) -> &Decision {
        &self.decision
    }
}

/// A JSON-RPC error response.
pub fn error_response(id: Option<&RequestId>, code: i64, message: &str, data: Value) -> Value {
    serde_json::json!({
        "jsonrpc": "2.0",
        "id": id.map_or(Value::Null, RequestId::to_value),
        "error": {"code": code, "message": message, "data": data},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: &str) -> Result<Frame, FrameError> {
        Frame::parse(v.as_bytes(), 1 << 20)
    }

    #[test]
    fn tool_calls_resources_prompts_and_lists_are_typed() {
        let f = parse(r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"crm/search","arguments":{"q":"acme"},"_meta":{"warden/reason":"ticket 42"}}}"#).unwrap();
        match f.message() {
            Message::Request {
                id,
                action: Action::CallTool { name, arguments },
                ..
            } => {
                assert_eq!(*id, RequestId::Num(7));
                assert_eq!(name, "crm/search");
                assert_eq!(arguments["q"], "acme");
            }
            m => panic!("{m:?}"),
        }
        assert_eq!(f.stated_reason(), Some("ticket 42"));
        let r = parse(
            r#"{"jsonrpc":"2.0","id":"a","method":"resources/read","params":{"uri":"file:///x"}}"#,
        )
        .unwrap();
        assert!(
            matches!(r.message(), Message::Request { action: Action::ReadResource { uri }, .. } if uri == "file:///x")
        );
        let l = parse(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#).unwrap();
        assert!(matches!(
            l.message(),
            Message::Request {
                action: Action::List(ListKind::Tools),
                ..
            }
        ));
        let n = parse(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert!(matches!(n.message(), Message::Notification { .. }));
        let resp = parse(r#"{"jsonrpc":"2.0","id":3,"result":{}}"#).unwrap();
        assert!(matches!(
            resp.message(),
            Message::Response {
                is_error: false,
                ..
            }
        ));
    }

    #[test]
    fn malformed_frames_get_precise_errors() {
        let cases = [
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read","name":"delete"}}"#,
                codes::PARSE_ERROR,
            ),
            ("{not json", codes::PARSE_ERROR),
            (
                r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#,
                codes::INVALID_REQUEST,
            ),
            (
                r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#,
                codes::INVALID_REQUEST,
            ),
            (
                r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
                codes::INVALID_REQUEST,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#,
                codes::INVALID_REQUEST,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":5}"#,
                codes::INVALID_REQUEST,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"ping","extra":1}"#,
                codes::INVALID_REQUEST,
            ),
            (r#"{"jsonrpc":"2.0","id":1}"#, codes::INVALID_REQUEST),
            (
                r#"{"jsonrpc":"2.0","id":1,"result":1,"error":{}}"#,
                codes::INVALID_REQUEST,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":[]}"#,
                codes::INVALID_PARAMS,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#,
                codes::INVALID_PARAMS,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":[1]}}"#,
                codes::INVALID_PARAMS,
            ),
        ];
        for (text, code) in cases {
            assert_eq!(parse(text).unwrap_err().code(), code, "{text}");
        }
        let big = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"p":"{}"}}}}"#,
            "a".repeat(100)
        );
        assert!(matches!(
            Frame::parse(big.as_bytes(), 64),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn only_an_allow_yields_bytes_and_they_are_the_original_ones() {
        let text = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"n":1.0}}}"#;
        let f = parse(text).unwrap();
        let denied = Permitted::new(f.clone(), Decision::default_deny("no"));
        assert!(denied.is_err());
        let mut allow = Decision::default_deny("x");
        allow.effect = Effect::Allow;
        let p = Permitted::new(f, allow).unwrap();
        assert_eq!(
            p.bytes(),
            text.as_bytes(),
            "forwarded byte for byte, 1.0 stays 1.0"
        );
        let e = error_response(
            Some(&RequestId::Num(1)),
            codes::DENIED,
            "denied",
            json!({"reason_id": "policy_denied"}),
        );
        assert_eq!(e["error"]["code"], -32001);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = Frame::parse(&bytes, 1 << 20);
        }
    }
}
