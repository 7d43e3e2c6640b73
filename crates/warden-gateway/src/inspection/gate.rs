//! The result gate (IO-1..IO-3): every string of a tool result, resource or prompt result is
//! inspected before the agent sees it, and the configured actions applied in place:
//! injection → annotate (`_meta["warden/findings"]`), redact, block or taint; secrets and
//! personal data → allow, mask, block or alert; oversize → block or truncate. Findings are
//! audited (no content; DLP values masked).

use std::sync::Arc;

use serde_json::{Map, Value, json};
use warden_config::{ContentActions, DlpAction, InjectionAction, OutputSchemaAction, Oversize};
use warden_core::ActionKind;
use warden_identity::token::AccessClaims;
use warden_inspect::{Kind, Report};
use warden_mcp::codes;

use super::outputs::{self, Output};
use super::walk::{self, Scope};
use super::{Inspection, Taint, describe, dlp_action, rules_of};

/// What replaces a passage removed as a prompt injection.
pub const REDACTED: &str = "[removed by Warden: possible prompt injection]";

/// The `_meta` key findings are reported under in a result the agent receives.
pub const FINDINGS_META_KEY: &str = "warden/findings";

/// Inspects the answers to one forwarded call.
#[derive(Debug, Clone)]
pub struct ResultGate {
    inspection: Arc<Inspection>,
    agent: String,
    task: String,
    resource: String,
    /// The decision the answer belongs to; `None` for messages that answer no decided
    /// call (protocol answers, the session's event stream).
    decision_seq: Option<u64>,
    /// The answer to `initialize` or `server/discover`: its `instructions` are the server's
    /// self-description ([`ResultGate::describing_itself`]).
    self_description: bool,
    actions: ContentActions,
    /// Tool calls only, when output schemas are checked: the called tool's compiled output
    /// schema (`None` inside: Warden could not read the tool's definition).
    output: Option<Option<Arc<Output>>>,
}

impl ResultGate {
    /// The gate for the answer to the call of `kind` on `upstream/name` recorded as
    /// `decision_seq`; `None` when inspection is off.
    pub fn new(
        inspection: &Arc<Inspection>,
        claims: &AccessClaims,
        kind: ActionKind,
        upstream: &str,
        name: &str,
        decision_seq: u64,
    ) -> Option<Self> {
        if !inspection.config.enabled {
            return None;
        }
        let output = (kind == ActionKind::CallTool
            && inspection.config.output_schema != OutputSchemaAction::Off)
            .then(|| inspection.pins.output(upstream, name));
        Self::build(
            inspection,
            claims,
            format!("{upstream}/{name}"),
            output,
            Some(decision_seq),
        )
    }

    /// The gate for what an upstream sends that answers no decided call: the answers to
    /// protocol requests (a server's `instructions` read as its self-description), server
    /// requests and notifications inside list answers, and the session's GET event stream.
    /// Inspected with the actions for `{upstream}/({what})` (a name no tool can have; a
    /// rule for `{upstream}/*` covers it); `None` when inspection is off.
    pub fn for_messages(
        inspection: &Arc<Inspection>,
        claims: &AccessClaims,
        upstream: &str,
        what: &str,
    ) -> Option<Self> {
        Self::build(
            inspection,
            claims,
            format!("{upstream}/({what})"),
            None,
            None,
        )
    }

    fn build(
        inspection: &Arc<Inspection>,
        claims: &AccessClaims,
        resource: String,
        output: Option<Option<Arc<Output>>>,
        decision_seq: Option<u64>,
    ) -> Option<Self> {
        if !inspection.config.enabled {
            return None;
        }
        Some(Self {
            actions: inspection.result_actions(&resource, claims.autonomy),
            output,
            inspection: Arc::clone(inspection),
            agent: claims.client_id.clone(),
            task: claims
                .task()
                .map_or_else(String::new, |t| t.task_id.clone()),
            resource,
            decision_seq,
            self_description: false,
        })
    }

    /// For the answer to `initialize` or `server/discover` only: its `result.instructions`
    /// address the model by design, like a tool's description, so they are read as one and
    /// an injection finding there is audited (alert), never acted on — legitimate servers
    /// would otherwise taint every session (the official `server-everything` does). The
    /// same key in any other answer is content like the rest.
    #[must_use]
    pub fn describing_itself(mut self) -> Self {
        self.self_description = true;
        self
    }

    /// The error that replaces a blocked answer.
    fn refusal(&self, msg: &Value, reason: &str, message: &str) -> Value {
        json!({
            "jsonrpc": "2.0",
            "id": msg.get("id").cloned().unwrap_or(Value::Null),
            "error": {
                "code": codes::DENIED,
                "message": message,
                "data": {"reason": reason, "resource": self.resource},
            },
        })
    }

    /// What replaces a server request or notification withheld from the agent: a log
    /// notification saying so (the upstream's request goes unanswered, as if the client had
    /// ignored it; the agent is not handed an answer to an id it never sent).
    fn withheld(&self, msg: &Value, reason: &str, message: &str) -> Value {
        json!({
            "jsonrpc": "2.0",
            "method": "notifications/message",
            "params": {
                "level": "warning",
                "logger": "warden",
                "data": {
                    "withheld": msg.get("method").cloned().unwrap_or(Value::Null),
                    "reason": reason,
                    "message": message,
                    "resource": self.resource,
                },
            },
        })
    }

    /// Inspects one JSON-RPC message and acts on it in place: an answer (a `result`, or an
    /// upstream's `error`, whose message and data reach the agent too), and the `params` of
    /// a request or notification the upstream sends the agent with it (a sampling request's
    /// prompt, an elicitation's message, a log line: all text that reaches the agent's
    /// model). A blocked answer becomes an error; a blocked request or notification is
    /// withheld and a warning notification takes its place.
    pub fn apply(&self, msg: &mut Value) {
        // A batch (no longer in MCP, but a client may still read one) is inspected message
        // by message: nothing passes because of its shape.
        if let Value::Array(batch) = msg {
            batch.iter_mut().for_each(|m| self.apply(m));
            return;
        }
        let key = if msg.get("result").is_some() {
            "result"
        } else if msg.get("error").is_some() {
            "error"
        } else if msg.get("method").is_some() {
            "params"
        } else {
            return;
        };
        let base = match key {
            "result" => "/result",
            "error" => "/error",
            _ => "/params",
        };
        // Audited as what the agent was sent: a result, or a message of the upstream's own.
        let direction = if key == "params" {
            "server_message"
        } else {
            "result"
        };
        let block_with = |gate: &Self, msg: &Value, reason: &str, why: &str| {
            if key == "params" {
                gate.withheld(msg, reason, why)
            } else {
                gate.refusal(msg, reason, why)
            }
        };
        match msg.get(key) {
            Some(Value::Object(_)) => {}
            // A request or notification without params: nothing the agent reads.
            None | Some(Value::Null) if key == "params" => return,
            // MCP answers, requests and notifications carry objects; any other shape (a bare
            // string, an array) is withheld rather than passed on unread.
            _ => {
                self.record(direction, "shape", &[], "block");
                let why = format!("{base} from {} is not a JSON object", self.resource);
                *msg = block_with(self, msg, "upstream_garbage", &why);
                return;
            }
        }
        let Some(Value::Object(result)) = msg.get_mut(key) else {
            return;
        };
        let config = &self.inspection.config;
        // IO-3: checked first, on the structured content exactly as the upstream sent it.
        if let Some(output) = self.output.as_ref().filter(|_| key == "result")
            && let Err(why) = outputs::check(output.as_deref(), result)
        {
            let finding = json!({"rule": "output_schema", "path": "/result/structuredContent", "reason": why});
            tracing::warn!(target: "warden::inspection", resource = %self.resource, %why,
                "a tool result breaks the tool's declared output schema");
            if config.output_schema == OutputSchemaAction::Block {
                self.record(direction, "output_schema", &[finding], "block");
                let why = format!("the result of {}: {why}", self.resource);
                *msg = self.refusal(msg, "output_schema_violation", &why);
                return;
            }
            self.record(direction, "output_schema", &[finding], "alert");
        }
        let size = text_bytes(result);
        if key == "result" && self.decision_seq.is_some() {
            // MO-1: how much the agent receives from its calls feeds its baseline.
            self.inspection.monitoring.reply(&warden_monitor::Reply {
                time_ms: crate::audit::now_ms(),
                agent: &self.agent,
                tool: &self.resource,
                kind: warden_monitor::ReplyKind::Content(size as u64),
            });
        }
        if size > config.max_result_bytes {
            match config.oversize {
                Oversize::Block => {
                    let why = format!(
                        "the result of {} holds {size} bytes of text, over the {} allowed \
                         (inspection.max_result_bytes)",
                        self.resource, config.max_result_bytes
                    );
                    self.record(direction, "oversize", &[], "block");
                    *msg = block_with(self, msg, "result_too_large", &why);
                    return;
                }
                Oversize::Truncate => truncate(result, config.max_result_bytes),
            }
        }
        let inspector = &self.inspection.inspector;
        let actions = self.actions;
        let mut findings = Vec::new();
        let mut injection_rules = String::new();
        let mut block: Option<String> = None;
        let mut alerts = Vec::new();
        // Whether anything was found that is not simply allowed through.
        let mut acted = false;
        let mut masked = false;
        // See `describing_itself`.
        let self_description = self.self_description && key == "result";
        walk::strings_mut(result, Scope::Content, base, &mut |path, text| {
            let instructions = self_description && path == "/result/instructions";
            let kind = if instructions {
                Kind::ToolDescription
            } else {
                Kind::ToolResult
            };
            let report = inspector.inspect(text, kind);
            if report.findings.is_empty() && report.dlp.is_empty() {
                return;
            }
            describe(&report, path, &mut findings);
            acted |= report.injection;
            if report.injection && instructions {
                tracing::warn!(target: "warden::inspection", resource = %self.resource,
                    rules = %rules_of(&report),
                    "a server's instructions read as a prompt injection (audited, not acted on)");
            }
            if report.injection && !instructions {
                if !injection_rules.is_empty() {
                    injection_rules.push_str(", ");
                }
                injection_rules.push_str(&rules_of(&report));
                if actions.injection == InjectionAction::Block && block.is_none() {
                    block = Some(format!(
                        "the content at {path} reads as a prompt injection ({})",
                        rules_of(&report)
                    ));
                }
            }
            for m in &report.dlp {
                let action = dlp_action(actions, m.class);
                acted |= action != DlpAction::Allow;
                masked |= action == DlpAction::Mask;
                match action {
                    DlpAction::Block if block.is_none() => {
                        block = Some(format!(
                            "the content at {path} carries {} ({})",
                            m.class.as_str(),
                            m.rule
                        ));
                    }
                    DlpAction::Alert if !alerts.contains(&m.rule) => alerts.push(m.rule),
                    _ => {}
                }
            }
            let redact =
                report.injection && !instructions && actions.injection == InjectionAction::Redact;
            if let Some(new) = rewrite(text, &report, redact, actions) {
                *text = new;
            }
        });
        if !injection_rules.is_empty() {
            // MO-1: an injection received raises the agent's risk, and what it does next
            // weighs double.
            self.inspection
                .monitoring
                .finding(&self.agent, warden_monitor::Finding::Injection);
        }
        if !acted {
            return;
        }
        self.inspection
            .alert(&self.agent, &self.resource, direction, &alerts);
        if let Some(why) = block {
            self.record(direction, "findings", &findings, "block");
            *msg = block_with(self, msg, "content_blocked", &why);
            return;
        }
        let injected = !injection_rules.is_empty();
        let action = match actions.injection {
            _ if !injected && masked => "mask",
            _ if !injected => "alert",
            InjectionAction::Annotate => "annotate",
            InjectionAction::Redact => "redact",
            InjectionAction::Block => "block",
            InjectionAction::Taint => "taint",
        };
        if injected && key != "error" {
            annotate(result, &findings);
        }
        self.record(direction, "findings", &findings, action);
        if injected && actions.injection == InjectionAction::Taint {
            self.taint(&injection_rules);
        }
    }

    /// The audit event of what this result showed.
    fn record(&self, direction: &str, what: &str, findings: &[Value], action: &str) {
        self.inspection.audit.event(
            warden_audit::EventRecord::new(crate::audit::now_ms(), "content_findings", "warden")
                .agent(&self.agent)
                .detail("resource", self.resource.as_str())
                .detail("decision_seq", self.decision_seq)
                .detail("task", self.task.as_str())
                .detail("direction", direction)
                .detail("what", what)
                .detail("action", action)
                .detail("findings", Value::Array(findings.to_vec())),
        );
    }

    fn taint(&self, rules: &str) {
        let i = &self.inspection;
        let now = crate::unix_now();
        let expires_at = now.saturating_add(i64::try_from(i.config.taint_secs).unwrap_or(i64::MAX));
        i.taints.add(
            &self.agent,
            Taint {
                task: self.task.clone(),
                source: self.resource.clone(),
                finding: rules.to_owned(),
                expires_at,
            },
        );
        tracing::warn!(target: "warden::inspection", agent = %self.agent, task = %self.task,
            source = %self.resource, rules, "task tainted: its high-risk calls now need approval");
        i.audit.event(
            warden_audit::EventRecord::new(crate::audit::now_ms(), "agent_tainted", "warden")
                .agent(&self.agent)
                .reason(&format!(
                    "injection finding ({rules}) in content from {}",
                    self.resource
                ))
                .detail("task", self.task.as_str())
                .detail("source", self.resource.as_str())
                .detail("decision_seq", self.decision_seq)
                .detail("expires_at", expires_at),
        );
        let record = warden_store::TaintRecord {
            agent: self.agent.clone(),
            task: self.task.clone(),
            source: self.resource.clone(),
            finding: rules.to_owned(),
            decision_seq: self.decision_seq,
            tainted_at: now,
            expires_at,
        };
        let store = i.store.clone();
        let write = async move {
            if let Err(e) = warden_store::ContentStore::taint(&store, record).await {
                tracing::error!(target: "warden::inspection",
                    "the taint could not be stored (it holds until restart): {e}");
            }
        };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(write);
        }
    }
}

/// Total bytes of the strings an answer carries.
fn text_bytes(result: &Map<String, Value>) -> usize {
    let mut n = 0usize;
    walk::strings(result, Scope::Content, "", &mut |_, s| {
        n = n.saturating_add(s.len())
    });
    n
}

/// Cuts strings, in document order, so that their total fits `max` bytes.
pub(super) fn truncate(result: &mut Map<String, Value>, max: usize) {
    let mut left = max;
    walk::strings_mut(result, Scope::Content, "", &mut |_, s| {
        if s.len() <= left {
            left -= s.len();
            return;
        }
        let cut = s.floor_char_boundary(left);
        let dropped = s.len() - cut;
        s.truncate(cut);
        s.push_str(&format!(" … [truncated by Warden: {dropped} more bytes]"));
        left = 0;
    });
}

/// `text` with injection passages removed (when `redact`) and DLP values masked where the
/// action says so; `None` when nothing changes.
pub(super) fn rewrite(
    text: &str,
    r: &Report,
    redact: bool,
    actions: ContentActions,
) -> Option<String> {
    let mut cuts: Vec<(usize, usize, &str)> = Vec::new();
    if redact {
        cuts.extend(r.findings.iter().map(|f| (f.start, f.end, REDACTED)));
    }
    cuts.extend(
        r.dlp
            .iter()
            .filter(|m| dlp_action(actions, m.class) == DlpAction::Mask)
            .map(|m| (m.start, m.end, m.masked.as_str())),
    );
    if cuts.is_empty() {
        return None;
    }
    // Earlier first; of two starting together, the longer (it covers the other).
    cuts.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (start, end, with) in cuts {
        let (start, end) = (
            text.floor_char_boundary(start),
            text.ceil_char_boundary(end),
        );
        if start < at {
            // Overlaps the previous replacement, which grows to cover it.
            at = at.max(end);
            continue;
        }
        out.push_str(text.get(at..start).unwrap_or_default());
        out.push_str(with);
        at = end;
    }
    out.push_str(text.get(at..).unwrap_or_default());
    Some(out)
}

/// Adds `_meta["warden/findings"]` (category, rule, score: no content) to a result.
fn annotate(result: &mut Map<String, Value>, findings: &[Value]) {
    let summary: Vec<Value> = findings
        .iter()
        .filter(|f| f.get("category").is_some())
        .map(|f| {
            let field = |k: &str| f.get(k).cloned().unwrap_or(Value::Null);
            json!({
                "category": field("category"),
                "rule": field("rule"),
                "score": field("score"),
                "path": field("path"),
            })
        })
        .collect();
    let meta = result
        .entry("_meta")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(m) = meta {
        m.insert(FINDINGS_META_KEY.into(), Value::Array(summary));
    }
}
