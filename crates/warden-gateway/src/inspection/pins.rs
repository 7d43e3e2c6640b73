//! Tool pinning (EP-4) and tool-poisoning checks (IO-4).
//!
//! Every tool definition an upstream lists (name, description, input and output schemas,
//! annotations: the whole object) is hashed: SHA-256 of its canonical JSON (RFC 8785). A
//! tool is usable only while the definition the upstream lists now is the approved one;
//! otherwise it is hidden from `tools/list` and its calls are refused — a "rug pull" (the
//! description changing after approval) disables the tool until a person re-approves it
//! (`warden tools diff|approve`), and is alerted and audited once per new definition.
//!
//! Warden's view of an upstream's tools is refreshed whenever an agent lists them through
//! Warden, and before a call when it is older than `refresh_secs` (or was never taken).
//! Descriptions are inspected as they are seen (hidden instructions, invisible Unicode,
//! references to other tools or to secrets, instructions to skip confirmation); a tool
//! with findings is never approved on first use.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use warden_config::PinMode;
use warden_inspect::{Inspector, Kind};
use warden_store::{ContentStore, SqliteStore, ToolDefinition, ToolPin};

use super::outputs::Output;
use crate::audit::Audit;

/// SHA-256 (hex) of a tool definition's canonical JSON, and that JSON.
pub fn hash(def: &Value) -> (String, String) {
    let bytes = warden_audit::jcs::to_vec(def);
    let h = hex::encode(Sha256::digest(&bytes));
    (h, String::from_utf8_lossy(&bytes).into_owned())
}

#[derive(Debug, Clone, Default)]
struct ToolState {
    approved: Option<String>,
    /// The hash of the definition the upstream listed last.
    current: Option<String>,
    /// Poisoning rules the current definition trips.
    poisoning: Vec<&'static str>,
    /// The output schema of the definition last listed (when results are validated).
    output: Option<Arc<Output>>,
}

#[derive(Debug, Default)]
struct UpstreamTools {
    /// When the upstream's whole list was last read (0: never).
    listed_at: i64,
    tools: HashMap<String, ToolState>,
}

/// Why a tool may not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinRefusal {
    pub reason_id: &'static str,
    pub message: String,
}

/// One row of `warden tools list`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ToolStatus {
    pub upstream: String,
    pub tool: String,
    /// `approved`, `changed` (differs from the approved definition), `new` (never
    /// approved), `gone` (approved, no longer listed).
    pub status: &'static str,
    pub approved_hash: Option<String>,
    pub current_hash: Option<String>,
    pub approved_by: Option<String>,
    pub approved_at: Option<i64>,
    pub poisoning: Vec<&'static str>,
}

/// The pins, in memory for the decision path, written through to the store; and Warden's
/// view of each upstream's tools, which the output gate also reads ([`Pins::output`]).
#[derive(Debug)]
pub struct Pins {
    pub mode: PinMode,
    pub refresh_secs: i64,
    /// Results are checked against declared output schemas (IO-3).
    outputs: bool,
    state: RwLock<HashMap<String, UpstreamTools>>,
    store: SqliteStore,
    audit: Arc<Audit>,
    inspector: Arc<Inspector>,
}

impl Pins {
    pub fn new(
        config: &warden_config::PinningConfig,
        outputs: bool,
        pins: Vec<ToolPin>,
        store: SqliteStore,
        audit: Arc<Audit>,
        inspector: Arc<Inspector>,
    ) -> Self {
        let mut state: HashMap<String, UpstreamTools> = HashMap::new();
        for p in pins {
            state
                .entry(p.upstream)
                .or_default()
                .tools
                .entry(p.tool)
                .or_default()
                .approved = Some(p.hash);
        }
        Self {
            mode: config.mode,
            outputs,
            refresh_secs: i64::try_from(config.refresh_secs).unwrap_or(i64::MAX),
            state: RwLock::new(state),
            store,
            audit,
            inspector,
        }
    }

    pub fn enabled(&self) -> bool {
        self.mode != PinMode::Off
    }

    /// Does Warden keep a view of the upstreams' tools (for pins or output schemas)?
    pub fn tracking(&self) -> bool {
        self.enabled() || self.outputs
    }

    /// Must the upstream's tools be listed again before a call is decided?
    pub fn stale(&self, upstream: &str, now: i64) -> bool {
        if !self.tracking() {
            return false;
        }
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        state.get(upstream).is_none_or(|u| {
            u.listed_at == 0 || now.saturating_sub(u.listed_at) >= self.refresh_secs
        })
    }

    /// May `upstream/tool` be called now?
    pub fn check(&self, upstream: &str, tool: &str) -> Result<(), PinRefusal> {
        if !self.enabled() {
            return Ok(());
        }
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        let t = state.get(upstream).and_then(|u| u.tools.get(tool));
        match t.map(|t| (t.approved.as_deref(), t.current.as_deref())) {
            Some((Some(a), Some(c))) if a == c => Ok(()),
            Some((Some(_), Some(_))) => Err(PinRefusal {
                reason_id: "tool_changed",
                message: format!(
                    "the definition of {upstream}/{tool} changed since it was approved; the tool \
                     is disabled until a person re-approves it (`warden tools diff \
                     {upstream}/{tool}`, then `warden tools approve`)"
                ),
            }),
            Some((Some(_), None)) => Err(PinRefusal {
                reason_id: "tool_not_listed",
                message: format!(
                    "{upstream}/{tool} is approved but the upstream does not list it now"
                ),
            }),
            _ => Err(PinRefusal {
                reason_id: "tool_not_approved",
                message: format!(
                    "{upstream}/{tool} has not been approved for use (`warden tools list`, then \
                     `warden tools approve {upstream}/{tool}`)"
                ),
            }),
        }
    }

    /// The compiled output schema of `upstream/tool` as last listed (`None`: never listed,
    /// or results are not validated).
    pub fn output(&self, upstream: &str, tool: &str) -> Option<Arc<Output>> {
        if !self.outputs {
            return None;
        }
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        state.get(upstream)?.tools.get(tool)?.output.clone()
    }

    /// The hash of the definition `upstream` lists now for `tool`, if it lists it.
    pub fn current(&self, upstream: &str, tool: &str) -> Option<String> {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        state.get(upstream)?.tools.get(tool)?.current.clone()
    }

    /// Is this listed definition the approved one?
    pub fn visible(&self, upstream: &str, def: &Value) -> bool {
        if !self.enabled() {
            return true;
        }
        let Some(name) = def.get("name").and_then(Value::as_str) else {
            return false;
        };
        let (h, _) = hash(def);
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        state
            .get(upstream)
            .and_then(|u| u.tools.get(name))
            .and_then(|t| t.approved.as_deref())
            == Some(h.as_str())
    }

    /// Takes in what an upstream lists now (`complete`: the whole list, not one page).
    /// New definitions are stored, checked for poisoning, approved on first use in `tofu`
    /// mode, and a change from the approved definition is alerted.
    pub fn observe(&self, upstream: &str, tools: &[Value], complete: bool, now: i64) {
        if let Some(write) = self.observe_job(upstream, tools, complete, now)
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(write);
        }
    }

    /// [`Pins::observe`], returning once the store has the definitions.
    pub async fn observe_now(&self, upstream: &str, tools: &[Value], now: i64) {
        if let Some(write) = self.observe_job(upstream, tools, true, now) {
            write.await;
        }
    }

    fn observe_job(
        &self,
        upstream: &str,
        tools: &[Value],
        complete: bool,
        now: i64,
    ) -> Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>> {
        if !self.tracking() {
            return None;
        }
        let pinning = self.enabled();
        let mut fresh: Vec<ToolDefinition> = Vec::new();
        let mut approve: Vec<(String, String)> = Vec::new();
        let mut events = Vec::new();
        {
            let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
            let up = state.entry(upstream.to_owned()).or_default();
            if complete {
                up.listed_at = now;
                for t in up.tools.values_mut() {
                    t.current = None;
                }
            }
            for def in tools {
                let Some(name) = def.get("name").and_then(Value::as_str) else {
                    continue;
                };
                let (h, canonical) = hash(def);
                let t = up.tools.entry(name.to_owned()).or_default();
                // Compiled once per definition, here and not on the call path.
                if self.outputs && t.output.as_ref().is_none_or(|o| o.hash != h) {
                    t.output = Some(Arc::new(Output::compile(def, &h)));
                }
                let known = t.current.as_deref() == Some(h.as_str())
                    || (t.current.is_none() && t.approved.as_deref() == Some(h.as_str()));
                t.current = Some(h.clone());
                if known || !pinning {
                    continue;
                }
                t.poisoning = self.poisoning(def);
                fresh.push(ToolDefinition {
                    upstream: upstream.to_owned(),
                    tool: name.to_owned(),
                    hash: h.clone(),
                    definition: canonical,
                    seen_at: now,
                });
                if !t.poisoning.is_empty() {
                    events.push(
                        self.event("tool_poisoning", upstream, name)
                            .detail("hash", h.as_str())
                            .detail("rules", json!(t.poisoning)),
                    );
                }
                match &t.approved {
                    None if self.mode == PinMode::Tofu && t.poisoning.is_empty() => {
                        t.approved = Some(h.clone());
                        approve.push((name.to_owned(), h.clone()));
                        events.push(
                            self.event("tool_approved", upstream, name)
                                .detail("hash", h.as_str())
                                .detail("by", "trust on first use"),
                        );
                    }
                    Some(a) if *a != h => {
                        tracing::warn!(target: "warden::inspection", %upstream, tool = name,
                            approved = %a, now = %h,
                            "a tool's definition changed since it was approved: the tool is disabled");
                        events.push(
                            self.event("tool_changed", upstream, name)
                                .detail("approved_hash", a.as_str())
                                .detail("hash", h.as_str()),
                        );
                    }
                    _ => {}
                }
            }
        }
        for e in events {
            self.audit.event(e);
        }
        if fresh.is_empty() {
            return None;
        }
        let store = self.store.clone();
        let upstream = upstream.to_owned();
        let write = async move {
            if let Err(e) = store.saw_tools(&upstream, fresh, now).await {
                tracing::error!("tool definitions of {upstream} not stored: {e}");
                return;
            }
            for (tool, h) in approve {
                if let Err(e) = store
                    .approve_tool(&upstream, &tool, &h, "trust on first use", now)
                    .await
                {
                    tracing::error!("pin of {upstream}/{tool} not stored: {e}");
                }
            }
        };
        Some(Box::pin(write))
    }

    fn event(&self, name: &str, upstream: &str, tool: &str) -> warden_audit::EventRecord {
        warden_audit::EventRecord::new(crate::audit::now_ms(), name, "warden")
            .detail("upstream", upstream)
            .detail("tool", tool)
    }

    /// The poisoning rules a definition's text trips (description and every string in its
    /// schemas and annotations).
    fn poisoning(&self, def: &Value) -> Vec<&'static str> {
        let mut rules = Vec::new();
        let Some(m) = def.as_object() else {
            return rules;
        };
        super::walk::strings(m, super::walk::Scope::All, "", &mut |path, text| {
            if path == "/name" {
                return;
            }
            let r = self.inspector.inspect(text, Kind::ToolDescription);
            for f in &r.findings {
                if !rules.contains(&f.rule) {
                    rules.push(f.rule);
                }
            }
        });
        rules
    }

    /// Records an approval made by a person (the store holds it already).
    pub fn approved(&self, pin: &ToolPin) {
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        state
            .entry(pin.upstream.clone())
            .or_default()
            .tools
            .entry(pin.tool.clone())
            .or_default()
            .approved = Some(pin.hash.clone());
    }

    /// Every tool Warden knows, with its status.
    pub fn status(&self, pins: &[ToolPin]) -> Vec<ToolStatus> {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        for (upstream, u) in state.iter() {
            for (tool, t) in &u.tools {
                let pin = pins
                    .iter()
                    .find(|p| &p.upstream == upstream && &p.tool == tool);
                let status = match (&t.approved, &t.current) {
                    (Some(a), Some(c)) if a == c => "approved",
                    (Some(_), Some(_)) => "changed",
                    (Some(_), None) => "gone",
                    (None, _) => "new",
                };
                out.push(ToolStatus {
                    upstream: upstream.clone(),
                    tool: tool.clone(),
                    status,
                    approved_hash: t.approved.clone(),
                    current_hash: t.current.clone(),
                    approved_by: pin.map(|p| p.approved_by.clone()),
                    approved_at: pin.map(|p| p.approved_at),
                    poisoning: t.poisoning.clone(),
                });
            }
        }
        out.sort_by(|a, b| (&a.upstream, &a.tool).cmp(&(&b.upstream, &b.tool)));
        out
    }
}
