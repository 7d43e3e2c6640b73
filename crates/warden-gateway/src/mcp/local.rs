//! Agent-bound local listeners (`[[local_listeners]]`): MCP endpoints without tokens, for
//! local clients that cannot attach them. Every request on such a listener acts as its one
//! configured agent; the listener binds only to loopback or a unix socket, and every decision
//! made through it is marked `via = "local:<agent>"`.
//!
//! The agent must exist and be active when Warden starts; its suspension or revocation
//! applies to the next request, exactly as for tokens (the same revocation state is checked).
//! With `tools` configured the task narrows like a token's granted actions; without, the
//! policy alone decides (deny by default).

use std::sync::Arc;

use warden_config::LocalListenerConfig;
use warden_core::{ActionKind, AgentRecord, AgentState};
use warden_identity::token::{AccessClaims, GrantedAction, TASK_DETAIL_TYPE, TaskDetail};

/// The identity a local listener lends to every request.
#[derive(Debug)]
pub struct LocalBinding {
    /// `local:<agent>`: how decisions made through it are marked.
    pub via: String,
    /// No task narrowing: the policy alone decides.
    pub policy_only: bool,
    pub claims: Arc<AccessClaims>,
    /// The listener's own origins (`http://127.0.0.1:<port>`, `http://localhost:<port>`),
    /// allowed besides the configured ones.
    pub origins: Vec<String>,
}

impl LocalBinding {
    /// The binding for `agent` (its registry record), or why there can be none.
    pub fn new(
        cfg: &LocalListenerConfig,
        agent: &AgentRecord,
        issuer: &str,
        now: i64,
    ) -> Result<Self, String> {
        if agent.state != AgentState::Active {
            return Err(format!(
                "agent `{}` is {}: a local listener needs an active agent",
                agent.id, agent.state
            ));
        }
        let actions = cfg
            .tools
            .iter()
            .map(|t| GrantedAction {
                action: ActionKind::CallTool,
                resource: t.clone(),
            })
            .collect();
        let via = format!("local:{}", agent.id);
        Ok(Self {
            policy_only: cfg.tools.is_empty(),
            claims: Arc::new(AccessClaims {
                iss: issuer.to_owned(),
                sub: agent.id.to_string(),
                aud: via.clone(),
                exp: i64::MAX,
                iat: now,
                jti: via.clone(),
                client_id: agent.id.to_string(),
                authorization_details: vec![TaskDetail {
                    kind: TASK_DETAIL_TYPE.to_owned(),
                    task_id: cfg.task.clone(),
                    purpose: cfg.purpose.clone(),
                    actions,
                    on_behalf_of: None,
                }],
                act: None,
                cnf: None,
                autonomy: agent.autonomy,
                sponsor: agent.sponsors.clone(),
                depth: 0,
                parents: Vec::new(),
            }),
            via,
            origins: Vec::new(),
        })
    }

    /// Allows the loopback origins of a TCP listener on `port`.
    pub fn with_port(mut self, port: u16) -> Self {
        self.origins = ["127.0.0.1", "localhost", "[::1]"]
            .iter()
            .map(|h| format!("http://{h}:{port}"))
            .collect();
        self
    }
}
