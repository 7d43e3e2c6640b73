//! A small blocking MCP Streamable HTTP client for agents behind Warden: every request
//! carries the task token and a fresh DPoP proof. Speaks 2025-06-18 / 2025-11-25 (with
//! `initialize` and sessions) and 2026-07-28 (stateless, `_meta` and standard headers).

use serde_json::{Value, json};

use crate::{AgentClient, ClientError};

/// An HTTP answer as received.
#[derive(Debug, Clone)]
pub struct RawAnswer {
    pub status: u16,
    pub content_type: String,
    pub session: Option<String>,
    pub www_authenticate: Option<String>,
    pub body: String,
}

impl RawAnswer {
    /// The JSON-RPC messages in the body (one JSON object, or the `data:` of SSE events).
    pub fn messages(&self) -> Vec<Value> {
        if self.content_type.starts_with("text/event-stream") {
            let mut out = Vec::new();
            for event in self.body.replace("\r\n", "\n").split("\n\n") {
                let data: Vec<&str> = event
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(|d| d.strip_prefix(' ').unwrap_or(d))
                    .collect();
                if let Ok(v) = serde_json::from_str::<Value>(&data.join("\n")) {
                    out.push(v);
                }
            }
            out
        } else {
            serde_json::from_str::<Value>(&self.body)
                .map(|v| vec![v])
                .unwrap_or_default()
        }
    }

    /// The answer to request `id`.
    pub fn response_to(&self, id: i64) -> Option<Value> {
        self.messages()
            .into_iter()
            .find(|m| m.get("id") == Some(&json!(id)))
    }
}

/// One MCP conversation with an upstream through Warden.
#[derive(Debug, Clone)]
pub struct McpSession {
    agent: AgentClient,
    url: String,
    token: String,
    protocol: String,
    session: Option<String>,
    next_id: i64,
    reason: Option<String>,
    timeout: Option<std::time::Duration>,
}

/// The protocol versions this client speaks.
pub const PROTOCOL_VERSIONS: [&str; 3] = ["2025-06-18", "2025-11-25", "2026-07-28"];

impl McpSession {
    /// `url` is the MCP endpoint (`<issuer>/mcp/<upstream>`); the token's audience.
    pub fn new(agent: AgentClient, url: &str, token: &str, protocol: &str) -> Self {
        Self {
            agent,
            url: url.to_owned(),
            token: token.to_owned(),
            protocol: protocol.to_owned(),
            session: None,
            next_id: 1,
            reason: None,
            timeout: None,
        }
    }

    /// States a reason (`Warden-Reason` header) on the following requests.
    pub fn with_reason(mut self, reason: &str) -> Self {
        self.reason = Some(reason.to_owned());
        self
    }

    /// Gives up on each following request after `t` (closing its connection), instead of
    /// the agent's default.
    pub fn with_timeout(mut self, t: std::time::Duration) -> Self {
        self.timeout = Some(t);
        self
    }

    /// The task token this session presents.
    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn session_id(&self) -> Option<&str> {
        self.session.as_deref()
    }

    /// Replaces the session id (to test what Warden does with foreign or made-up ones).
    pub fn set_session_id(&mut self, id: Option<&str>) {
        self.session = id.map(str::to_owned);
    }

    fn stateless(&self) -> bool {
        self.protocol.as_str() >= "2026-07-28"
    }

    /// Adds the protocol version, the token (with a fresh DPoP proof for `method`) and the
    /// session id.
    fn signed<B>(&self, req: ureq::RequestBuilder<B>, method: &str) -> ureq::RequestBuilder<B> {
        let mut req = req.header("MCP-Protocol-Version", &self.protocol);
        req = match self.agent.proof(method, &self.url, Some(&self.token)) {
            Some(p) => req
                .header("Authorization", format!("DPoP {}", self.token))
                .header("DPoP", p),
            None => req.header("Authorization", format!("Bearer {}", self.token)),
        };
        if let Some(s) = &self.session {
            req = req.header("Mcp-Session-Id", s);
        }
        if let Some(t) = self.timeout {
            req = req.config().timeout_global(Some(t)).build();
        }
        req
    }

    /// POSTs `body` as is, with the token, a DPoP proof, the protocol and session headers,
    /// and `extra` headers.
    pub fn post_raw(&self, body: &[u8], extra: &[(&str, &str)]) -> Result<RawAnswer, ClientError> {
        let mut req = self.signed(
            self.agent
                .http
                .post(&self.url)
                .header("Content-Type", "application/json")
                .header("Accept", "application/json, text/event-stream"),
            "POST",
        );
        if let Some(r) = &self.reason {
            req = req.header("Warden-Reason", r);
        }
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        let mut resp = req
            .send(body)
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let header = |k: &str| {
            resp.headers()
                .get(k)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let content_type = header("content-type").unwrap_or_default();
        let session = header("mcp-session-id");
        let www_authenticate = header("www-authenticate");
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| ClientError::Http(e.to_string()))?;
        Ok(RawAnswer {
            status,
            content_type,
            session,
            www_authenticate,
            body,
        })
    }

    /// Opens the session's server-to-client event stream (`GET`): the HTTP status and a
    /// reader that ends when Warden or the upstream closes the stream (at most 30 s).
    pub fn open_stream(&self) -> Result<(u16, Box<dyn std::io::Read + Send>), ClientError> {
        let req = self.signed(
            self.agent
                .http
                .get(&self.url)
                .header("Accept", "text/event-stream"),
            "GET",
        );
        let resp = req.call().map_err(|e| ClientError::Http(e.to_string()))?;
        let status = resp.status().as_u16();
        Ok((status, Box::new(resp.into_body().into_reader())))
    }

    /// Ends the session (`DELETE` with its `Mcp-Session-Id`); the HTTP status. Warden then
    /// forgets the session: a later request naming it gets 404.
    pub fn close(&mut self) -> Result<u16, ClientError> {
        let req = self.signed(self.agent.http.delete(&self.url), "DELETE");
        let resp = req.call().map_err(|e| ClientError::Http(e.to_string()))?;
        self.session = None;
        Ok(resp.status().as_u16())
    }

    /// Sends a request; returns the JSON-RPC response message (`result` or `error`).
    pub fn request(&mut self, method: &str, mut params: Value) -> Result<Value, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut extra: Vec<(&str, String)> = Vec::new();
        if self.stateless() {
            if let Some(p) = params.as_object_mut() {
                let meta = p.entry("_meta").or_insert_with(|| json!({}));
                if let Some(m) = meta.as_object_mut() {
                    m.insert(
                        "io.modelcontextprotocol/protocolVersion".into(),
                        json!(self.protocol),
                    );
                    m.insert(
                        "io.modelcontextprotocol/clientCapabilities".into(),
                        json!({}),
                    );
                }
            }
            extra.push(("Mcp-Method", method.to_owned()));
            let name = match method {
                "tools/call" | "prompts/get" => params.get("name"),
                "resources/read" => params.get("uri"),
                _ => None,
            };
            if let Some(n) = name.and_then(Value::as_str) {
                extra.push(("Mcp-Name", n.to_owned()));
            }
        }
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let answer = self.post_raw(body.to_string().as_bytes(), &extra)?;
        if let Some(s) = &answer.session
            && method == "initialize"
        {
            self.session = Some(s.clone());
        }
        answer.response_to(id).ok_or_else(|| {
            ClientError::Protocol(format!("HTTP {}: {}", answer.status, answer.body))
        })
    }

    /// `initialize` + `notifications/initialized` (nothing to do from 2026-07-28 on).
    pub fn initialize(&mut self) -> Result<Value, ClientError> {
        if self.stateless() {
            return self.request("server/discover", json!({}));
        }
        let r = self.request(
            "initialize",
            json!({"protocolVersion": self.protocol, "capabilities": {},
                   "clientInfo": {"name": "warden-client", "version": env!("CARGO_PKG_VERSION")}}),
        )?;
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        self.post_raw(note.to_string().as_bytes(), &[])?;
        Ok(r)
    }

    /// `tools/call`; the JSON-RPC response message.
    pub fn call_tool(&mut self, name: &str, arguments: Value) -> Result<Value, ClientError> {
        self.request("tools/call", json!({"name": name, "arguments": arguments}))
    }

    /// The names `tools/list` shows.
    pub fn tool_names(&mut self) -> Result<Vec<String>, ClientError> {
        let r = self.request("tools/list", json!({}))?;
        Ok(r.pointer("/result/tools")
            .and_then(Value::as_array)
            .map(|t| {
                t.iter()
                    .filter_map(|t| t.get("name").and_then(Value::as_str).map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }
}
