//! The behavioural monitor on the gateway (MO-1, KS-1): every decided call, every answer
//! and every content finding is observed by [`warden_monitor::Monitor`]; its risk score is
//! `context.risk` for the next decision. What it concludes is acted on here: signals are
//! logged and counted; an alert is audited, stored, logged and sent to the webhook; a
//! quarantine stops the agent at once (as `warden kill` does: its tokens and those
//! delegated through it revoked, calls in flight cut), then is stored and audited. Only a
//! person releases it (`warden resume`).
//!
//! On the call path: one risk read and one observation, each a lookup under one of 16
//! shard locks; all I/O (store, audit, webhook) runs in spawned tasks. Baselines are
//! written to the store every `persist_secs` and at shutdown, and read back at start.

pub mod webhook;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde_json::{Value, json};
use warden_config::MonitorConfig;
use warden_identity::revocation::{Kill, Revocations};
use warden_monitor::{Call, Finding, Monitor, Reply, Settings, SignalKind, Verdict};
use warden_store::{AlertRecord, ControlStore, MonitorStore, SqliteStore};

use crate::audit::Audit;

/// Who the monitor's actions are recorded as.
pub const ACTOR: &str = "warden-monitor";

/// The monitor, and what acts on its verdicts.
#[derive(Debug)]
pub struct Monitoring {
    /// `None` when `[monitor] enabled = false`.
    monitor: Option<Monitor>,
    config: MonitorConfig,
    store: SqliteStore,
    audit: Arc<Audit>,
    revocations: Arc<Revocations>,
    webhook: Option<Arc<webhook::Webhook>>,
    metrics: Metrics,
}

#[derive(Debug, Default)]
struct Metrics {
    signals: [AtomicU64; SignalKind::ALL.len()],
    alerts: AtomicU64,
    quarantines: AtomicU64,
    webhook_delivered: AtomicU64,
    webhook_failed: AtomicU64,
    persist_failures: AtomicU64,
}

pub fn settings(c: &MonitorConfig) -> Settings {
    Settings {
        min_operations: c.min_operations,
        min_age_ms: i64::from(c.min_days) * 86_400_000,
        half_life_ms: c.half_life_secs as f64 * 1000.0,
        alert_at: c.alert_at,
        quarantine_at: (c.quarantine_at > 0).then_some(c.quarantine_at),
        runaway_per_10s: c.runaway_per_10s,
        denial_storm: c.denial_storm,
        fan_out: c.fan_out,
        ..Settings::default()
    }
}

impl Monitoring {
    /// Reads the stored baselines and resolves the webhook's secret: a stored state that
    /// does not parse, or a webhook that cannot sign, stops Warden here.
    pub async fn open(
        config: &MonitorConfig,
        store: SqliteStore,
        audit: Arc<Audit>,
        revocations: Arc<Revocations>,
    ) -> anyhow::Result<Self> {
        let monitor = if config.enabled {
            let m = Monitor::new(settings(config));
            let stored = store
                .baselines(None)
                .await
                .map_err(|e| anyhow::anyhow!("cannot read baselines from the store: {e}"))?;
            for (agent, json) in stored {
                let p = warden_monitor::parse_persisted(&json).map_err(|e| {
                    anyhow::anyhow!("the stored baseline of agent {agent} does not read: {e}")
                })?;
                let quarantined = p.quarantined;
                m.restore(&agent, p);
                // Resumed while Warden was stopped (`warden resume` on the data directory).
                if quarantined && resumed(&store, &agent).await {
                    m.release(&agent, crate::audit::now_ms());
                }
            }
            Some(m)
        } else {
            None
        };
        let webhook = config
            .webhook
            .as_ref()
            .map(webhook::Webhook::new)
            .transpose()?
            .map(Arc::new);
        Ok(Self {
            monitor,
            config: config.clone(),
            store,
            audit,
            revocations,
            webhook,
            metrics: Metrics::default(),
        })
    }

    pub fn monitor(&self) -> Option<&Monitor> {
        self.monitor.as_ref()
    }

    /// `context.risk` of the agent now.
    pub fn risk(&self, agent: &str, now_ms: i64) -> u8 {
        self.monitor.as_ref().map_or(0, |m| m.risk(agent, now_ms))
    }

    pub fn call(self: &Arc<Self>, c: &Call<'_>) {
        if let Some(m) = &self.monitor {
            for v in m.call(c) {
                self.act(v);
            }
        }
    }

    pub fn reply(self: &Arc<Self>, r: &Reply<'_>) {
        if let Some(v) = self.monitor.as_ref().and_then(|m| m.reply(r)) {
            self.act(v);
        }
    }

    pub fn finding(self: &Arc<Self>, agent: &str, f: Finding) {
        let now = crate::audit::now_ms();
        if let Some(v) = self.monitor.as_ref().and_then(|m| m.finding(agent, f, now)) {
            self.act(v);
        }
    }

    /// A person resumed the agent: its risk is 0 and it may be quarantined again.
    pub fn release(&self, agent: &str) -> bool {
        self.monitor
            .as_ref()
            .is_some_and(|m| m.release(agent, crate::audit::now_ms()))
    }

    fn act(self: &Arc<Self>, v: Verdict) {
        for s in &v.signals {
            if let Some(c) = self.metrics.signals.get(signal_index(s.kind)) {
                c.fetch_add(1, Relaxed);
            }
            tracing::info!(target: "warden::monitor", agent = %v.agent, signal = s.kind.as_str(),
                points = s.points, risk = v.risk, detail = %s.detail, "anomaly");
        }
        if v.quarantine {
            // In force now, before anything is written: the next call is refused.
            self.revocations.kill(
                [v.agent.as_str()],
                Kill {
                    at: crate::unix_now(),
                    forced: true,
                },
            );
            self.metrics.quarantines.fetch_add(1, Relaxed);
            tracing::error!(target: "warden::monitor", agent = %v.agent, risk = v.risk,
                "agent quarantined: suspended, its tokens revoked and its calls cut; `warden resume` releases it");
        } else if v.alert {
            tracing::warn!(target: "warden::monitor", agent = %v.agent, risk = v.risk,
                signals = %kinds(&v), "anomaly alert");
        }
        if v.alert || v.quarantine {
            self.metrics.alerts.fetch_add(1, Relaxed);
            let me = Arc::clone(self);
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move { me.record(v).await });
            }
        }
    }

    /// Stores, audits and sends an alert or quarantine.
    async fn record(&self, v: Verdict) {
        let action = if v.quarantine { "quarantine" } else { "alert" };
        let signals = serde_json::to_value(&v.signals).unwrap_or(Value::Null);
        if v.quarantine {
            self.store_quarantine(&v).await;
        }
        let event = if v.quarantine {
            "agent_quarantined"
        } else {
            "anomaly_alert"
        };
        let mut e = warden_audit::EventRecord::new(v.time_ms, event, ACTOR)
            .agent(&v.agent)
            .reason(&format!("risk {} ({})", v.risk, kinds(&v)))
            .detail("risk", v.risk)
            .detail("signals", signals.clone());
        if v.quarantine {
            e = e.detail(
                "scope",
                "suspended; every token issued to it or delegated through it revoked; calls in \
                 flight cut; `warden resume` releases it",
            );
        }
        if let Err(err) = self.audit.event_durable(e).await {
            tracing::error!(target: "warden::audit", agent = %v.agent, "{event} not audited: {err}");
        }
        let rec = AlertRecord {
            id: 0,
            time_ms: v.time_ms,
            agent: v.agent.clone(),
            risk: v.risk,
            action: action.into(),
            signals: signals.to_string(),
            webhook: if self.webhook.is_some() {
                "pending"
            } else {
                "none"
            }
            .into(),
        };
        let id = match self.store.add_alert(rec).await {
            Ok(id) => id,
            Err(err) => {
                tracing::error!(target: "warden::monitor", agent = %v.agent, "alert not stored: {err}");
                0
            }
        };
        let Some(hook) = &self.webhook else {
            return;
        };
        let body = json!({
            "id": id,
            "type": event,
            "agent": v.agent,
            "risk": v.risk,
            "time_ms": v.time_ms,
            "quarantined": v.quarantine,
            "signals": signals,
        });
        let delivered = hook.deliver(event, id, body.to_string().into_bytes()).await;
        let state = match delivered {
            Ok(_) => {
                self.metrics.webhook_delivered.fetch_add(1, Relaxed);
                "delivered"
            }
            Err(err) => {
                self.metrics.webhook_failed.fetch_add(1, Relaxed);
                tracing::error!(target: "warden::monitor", agent = %v.agent, "alert webhook gave up: {err}");
                "failed"
            }
        };
        if id > 0
            && let Err(err) = self.store.set_webhook(id, state).await
        {
            tracing::error!(target: "warden::monitor", "webhook state not stored: {err}");
        }
    }

    /// The quarantine in the store: a `kills` row and the agent suspended, as `warden kill`
    /// does. If that fails it holds in this process (pinned against the store's refresh).
    async fn store_quarantine(&self, v: &Verdict) {
        let id = match warden_core::AgentId::new(&v.agent) {
            Ok(id) => id,
            Err(e) => {
                // Unreachable for a verified token's agent; the kill still holds here.
                self.revocations.set_unstored([v.agent.as_str()], true);
                tracing::error!(target: "warden::monitor", agent = %v.agent,
                    "quarantine in force but not stored: {e}");
                return;
            }
        };
        let reason = format!("quarantined by the behavioural monitor at risk {}", v.risk);
        let now = crate::unix_now();
        match self.store.kill(&[id], "forced", &reason, ACTOR, now).await {
            Ok(_) => self.revocations.set_unstored([v.agent.as_str()], false),
            Err(e) => {
                self.revocations.set_unstored([v.agent.as_str()], true);
                tracing::error!(target: "warden::monitor", agent = %v.agent,
                    "quarantine in force but not stored (it would not survive a restart): {e}");
            }
        }
    }

    /// Writes changed baselines every `persist_secs`, for as long as the task runs.
    pub fn spawn_persist(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick =
                tokio::time::interval(Duration::from_secs(me.config.persist_secs.max(1)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                me.persist().await;
            }
        })
    }

    /// Writes the baselines changed since the last write.
    pub async fn persist(&self) {
        let Some(m) = &self.monitor else {
            return;
        };
        let changed = m.changed();
        if changed.is_empty() {
            return;
        }
        let agents: Vec<String> = changed.iter().map(|(a, _)| a.clone()).collect();
        if let Err(e) = self.store.save_baselines(changed, crate::unix_now()).await {
            self.metrics.persist_failures.fetch_add(1, Relaxed);
            tracing::error!(target: "warden::monitor", "baselines not stored (retried later): {e}");
            for a in &agents {
                m.mark_dirty(a);
            }
        }
    }

    /// Prometheus text.
    pub fn metrics(&self) -> String {
        let m = &self.metrics;
        let mut out = String::from(
            "# HELP warden_monitor_signals_total Anomalies detected, by kind.\n\
             # TYPE warden_monitor_signals_total counter\n",
        );
        for k in SignalKind::ALL {
            let n = m
                .signals
                .get(signal_index(k))
                .map_or(0, |c| c.load(Relaxed));
            out.push_str(&format!(
                "warden_monitor_signals_total{{kind=\"{}\"}} {n}\n",
                k.as_str()
            ));
        }
        let agents = self.monitor.as_ref().map_or(0, Monitor::agents);
        out.push_str(&format!(
            "# HELP warden_monitor_alerts_total Alerts raised (a quarantine is one too).\n\
             # TYPE warden_monitor_alerts_total counter\n\
             warden_monitor_alerts_total {}\n\
             # HELP warden_monitor_quarantines_total Agents quarantined automatically.\n\
             # TYPE warden_monitor_quarantines_total counter\n\
             warden_monitor_quarantines_total {}\n\
             # HELP warden_monitor_webhook_total Alert webhook deliveries, by result.\n\
             # TYPE warden_monitor_webhook_total counter\n\
             warden_monitor_webhook_total{{result=\"delivered\"}} {}\n\
             warden_monitor_webhook_total{{result=\"failed\"}} {}\n\
             # HELP warden_monitor_persist_failures_total Baseline writes that failed.\n\
             # TYPE warden_monitor_persist_failures_total counter\n\
             warden_monitor_persist_failures_total {}\n\
             # HELP warden_monitor_agents Agents with a baseline in memory.\n\
             # TYPE warden_monitor_agents gauge\n\
             warden_monitor_agents {agents}\n",
            m.alerts.load(Relaxed),
            m.quarantines.load(Relaxed),
            m.webhook_delivered.load(Relaxed),
            m.webhook_failed.load(Relaxed),
            m.persist_failures.load(Relaxed),
        ));
        out
    }
}

/// Is the agent active in the registry?
async fn resumed(store: &SqliteStore, agent: &str) -> bool {
    use warden_store::AgentStore as _;
    let Ok(id) = warden_core::AgentId::new(agent) else {
        return false;
    };
    store
        .agent(&id)
        .await
        .is_ok_and(|a| a.state == warden_core::AgentState::Active)
}

fn signal_index(k: SignalKind) -> usize {
    SignalKind::ALL.iter().position(|x| *x == k).unwrap_or(0)
}

fn kinds(v: &Verdict) -> String {
    v.signals
        .iter()
        .map(|s| s.kind.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Hosts and mail domains the arguments name under the usual keys (`to`, `url`, ...), as
/// slices of the argument strings: at most 8, no allocation.
pub fn destinations<'a>(
    arguments: Option<&'a serde_json::Map<String, Value>>,
    out: &mut [&'a str; 8],
) -> usize {
    const KEYS: [&str; 14] = [
        "to",
        "cc",
        "bcc",
        "recipient",
        "recipients",
        "email",
        "url",
        "uri",
        "host",
        "endpoint",
        "webhook",
        "destination",
        "address",
        "callback",
    ];
    let Some(args) = arguments else {
        return 0;
    };
    let mut n = 0;
    let mut push = |s: &'a str| {
        if let Some(h) = host(s)
            && let Some(slot) = out.get_mut(n)
        {
            *slot = h;
            n += 1;
        }
    };
    for key in KEYS {
        match args.get(key) {
            Some(Value::String(s)) => s.split([',', ';']).for_each(|p| push(p.trim())),
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).for_each(&mut push),
            _ => {}
        }
    }
    n
}

/// The record a call touches: its `id`, `path`, `uri`, `record_id`, `key` or `file`
/// argument (a string), if any.
pub fn record(arguments: Option<&serde_json::Map<String, Value>>) -> Option<&str> {
    let args = arguments?;
    ["id", "path", "uri", "record_id", "key", "file"]
        .iter()
        .find_map(|k| args.get(*k).and_then(Value::as_str))
}

/// About how many bytes of JSON the arguments take (strings and keys by length, other
/// values by a fixed guess): a volume, not a serialisation.
pub fn size(arguments: &serde_json::Map<String, Value>) -> u64 {
    fn value(v: &Value) -> u64 {
        match v {
            Value::String(s) => s.len() as u64 + 2,
            Value::Array(a) => a.iter().map(value).sum::<u64>() + 2,
            Value::Object(o) => size(o),
            _ => 8,
        }
    }
    arguments
        .iter()
        .map(|(k, v)| k.len() as u64 + 4 + value(v))
        .sum::<u64>()
        + 2
}

/// The host of a URL or the domain of a mail address.
fn host(s: &str) -> Option<&str> {
    let s = s.trim().trim_end_matches('>');
    let h = if let Some((_, rest)) = s.split_once("://") {
        let authority = rest.split(['/', '?', '#']).next()?;
        let authority = authority.rsplit('@').next()?;
        authority.split(':').next()?
    } else {
        s.rsplit_once('@')?.1
    };
    (!h.is_empty() && h.len() <= 253 && !h.contains(char::is_whitespace)).then_some(h)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn destinations_are_hosts_and_mail_domains() {
        let args = json!({
            "to": "Bob <bob@example.com>, eve@evil.test",
            "url": "https://user@files.example.org:8443/x?y",
            "cc": ["carol@corp.example"],
            "body": "mail me at x@not-a-destination.test",
        });
        let mut out = [""; 8];
        let n = destinations(args.as_object(), &mut out);
        assert_eq!(
            &out[..n],
            [
                "example.com",
                "evil.test",
                "corp.example",
                "files.example.org"
            ]
        );
    }
}
