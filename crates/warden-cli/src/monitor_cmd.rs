//! `warden agent baseline AGENT` and `warden alerts list` (MO-1): what the behavioural
//! monitor has learned about an agent, and the alerts and quarantines it raised.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use comfy_table::Table;
use comfy_table::presets::UTF8_FULL_CONDENSED;
use serde_json::{Value, json};
use warden_core::AgentId;
use warden_monitor::Profile;
use warden_store::MonitorStore;

use crate::admin_cmd::ServerArgs;
use crate::agent_cmd::{Registry, rfc3339};

/// The baseline view (the admin API's shape) of a running server or of the data directory.
async fn view(
    registry: &Registry,
    agent: &AgentId,
    monitor: &warden_config::MonitorConfig,
) -> anyhow::Result<Value> {
    match registry {
        Registry::Api(c) => Ok(c.baseline(agent.as_str())?),
        Registry::Store(s, _) => {
            let Some((_, json)) = s.baselines(Some(agent.as_str())).await?.into_iter().next()
            else {
                anyhow::bail!(
                    "no baseline is stored for agent `{agent}` (a running Warden writes \
                     baselines every [monitor] persist_secs; try --server)"
                );
            };
            let p = warden_monitor::parse_persisted(&json)
                .map_err(|e| anyhow::anyhow!("the stored baseline of `{agent}`: {e}"))?;
            let settings = warden_gateway::monitoring::settings(monitor);
            let now = warden_gateway::audit::now_ms();
            Ok(json!({
                "agent": agent.as_str(),
                "risk": p.risk_at(&settings, now),
                "quarantined": p.quarantined,
                "profile": p.baseline.profile(&settings, now),
            }))
        }
    }
}

pub(crate) async fn baseline(
    registry: &Registry,
    agent: &AgentId,
    monitor: &warden_config::MonitorConfig,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let v = view(registry, agent, monitor).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let profile: Profile = serde_json::from_value(v.get("profile").cloned().unwrap_or_default())
        .map_err(|e| anyhow::anyhow!("unexpected baseline from the server: {e}"))?;
    let risk = v.get("risk").and_then(Value::as_u64).unwrap_or(0);
    let quarantined = v.get("quarantined").and_then(Value::as_bool) == Some(true);
    print_profile(agent, &profile, risk, quarantined);
    Ok(ExitCode::SUCCESS)
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(header);
    t
}

fn secs(ms: i64) -> i64 {
    ms.div_euclid(1000)
}

fn print_profile(agent: &AgentId, p: &Profile, risk: u64, quarantined: bool) {
    let mut t = table(&["agent", agent.as_str()]);
    let rows: [(&str, String); 10] = [
        (
            "risk now",
            format!(
                "{risk}/100{}",
                if quarantined {
                    "  QUARANTINED (warden resume releases it)"
                } else {
                    ""
                }
            ),
        ),
        (
            "baseline",
            if p.trusted {
                "trusted: statistical detectors on".into()
            } else {
                "learning: rule-based detection only".into()
            },
        ),
        (
            "observed",
            format!(
                "{} calls, {} → {}",
                p.operations,
                rfc3339(secs(p.since_ms)),
                rfc3339(secs(p.last_ms))
            ),
        ),
        (
            "denied",
            format!("{} (recent rate {:.1}%)", p.denials, p.denial_rate * 100.0),
        ),
        (
            "upstream errors",
            format!("{} (recent rate {:.1}%)", p.failures, p.error_rate * 100.0),
        ),
        (
            "calls per 10 s",
            format!(
                "{:.1} ± {:.1} when active, peak {}",
                p.per_10s, p.per_10s_sd, p.peak_10s
            ),
        ),
        (
            "calls per 5 min",
            format!("{:.1} when active, peak {}", p.per_5min, p.peak_5min),
        ),
        ("servers", p.servers.join(", ")),
        ("destinations", p.destinations.join(", ")),
        (
            "delegates",
            format!(
                "{} (peak {} within 10 min)",
                if p.delegates.is_empty() {
                    "none".into()
                } else {
                    p.delegates.join(", ")
                },
                p.fan_out_peak
            ),
        ),
    ];
    for (k, v) in rows {
        t.add_row([k.to_owned(), v]);
    }
    println!("{t}");
    if !p.tools.is_empty() {
        let mut t = table(&[
            "tool",
            "calls",
            "share",
            "denied",
            "errors",
            "per 10 s",
            "peak",
            "args ~B",
            "result ~B",
            "last",
        ]);
        for x in &p.tools {
            t.add_row([
                x.name.clone(),
                x.calls.to_string(),
                format!("{:.1}%", x.share * 100.0),
                x.denied.to_string(),
                x.failed.to_string(),
                format!("{:.1}", x.per_10s),
                x.peak_10s.to_string(),
                x.typical_bytes_out.to_string(),
                x.typical_bytes_in.to_string(),
                rfc3339(secs(x.last_ms)),
            ]);
        }
        println!("{t}");
    }
    let total: u64 = p.hours.iter().sum();
    if total > 0 {
        println!("Activity by hour (UTC):");
        let bars = " ▁▂▃▄▅▆▇█";
        let max = p.hours.iter().copied().max().unwrap_or(1).max(1);
        let line: String = p
            .hours
            .iter()
            .map(|h| {
                let i = (h * 8).div_ceil(max) as usize;
                bars.chars().nth(i).unwrap_or(' ')
            })
            .collect();
        println!("  {line}\n  0     6     12    18   23");
    }
    if !p.transitions.is_empty() {
        let mut t = table(&["after", "then", "times", "probability"]);
        for x in &p.transitions {
            t.add_row([
                x.from.clone(),
                x.to.clone(),
                x.count.to_string(),
                format!("{:.2}", x.probability),
            ]);
        }
        println!("Most frequent sequences:\n{t}");
    }
}

#[derive(Debug, Subcommand)]
pub enum AlertsCommand {
    /// Alerts and quarantines raised by the behavioural monitor, oldest first.
    List {
        /// Only this agent's.
        #[arg(long)]
        agent: Option<String>,
        /// Only those of the last N minutes.
        #[arg(long, value_name = "MINUTES")]
        since: Option<i64>,
        /// At most this many (the newest).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long)]
        json: bool,
        /// Read the data directory instead of asking a running Warden.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        #[command(flatten)]
        server: ServerArgs,
    },
}

pub fn alerts(cmd: AlertsCommand) -> anyhow::Result<ExitCode> {
    let AlertsCommand::List {
        agent,
        since,
        limit,
        json,
        data_dir,
        server,
    } = cmd;
    let since_ms = since.map_or(0, |m| {
        warden_gateway::audit::now_ms().saturating_sub(m.saturating_mul(60_000))
    });
    let list = match data_dir {
        Some(dir) => {
            let store = warden_store::SqliteStore::open_in(&dir, warden_gateway::unix_now())?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let rows = rt.block_on(store.alerts(agent.as_deref(), since_ms, limit))?;
            rows.into_iter()
                .map(|a| {
                    json!({"id": a.id, "time_ms": a.time_ms, "agent": a.agent, "risk": a.risk,
                       "action": a.action, "webhook": a.webhook,
                       "signals": serde_json::from_str::<Value>(&a.signals).unwrap_or_default()})
                })
                .collect()
        }
        None => match server.client()?.alerts(agent.as_deref(), since_ms, limit)? {
            Value::Array(v) => v,
            other => anyhow::bail!("unexpected answer from the server: {other}"),
        },
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else if list.is_empty() {
        println!("No alerts.");
    } else {
        let mut t = table(&[
            "id", "time", "agent", "risk", "action", "signals", "webhook",
        ]);
        for a in &list {
            let signals: Vec<String> = a
                .get("signals")
                .and_then(Value::as_array)
                .map(|v| {
                    v.iter()
                        .map(|s| {
                            format!(
                                "{} +{}: {}",
                                s.get("kind").and_then(Value::as_str).unwrap_or("?"),
                                s.get("points").and_then(Value::as_u64).unwrap_or(0),
                                s.get("detail").and_then(Value::as_str).unwrap_or("")
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let str_of = |k: &str| a.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
            t.add_row([
                a.get("id").map(Value::to_string).unwrap_or_default(),
                rfc3339(secs(a.get("time_ms").and_then(Value::as_i64).unwrap_or(0))),
                str_of("agent"),
                a.get("risk").map(Value::to_string).unwrap_or_default(),
                str_of("action"),
                signals.join("\n"),
                str_of("webhook"),
            ]);
        }
        println!("{t}");
        println!(
            "A quarantined agent stays stopped until a person runs: warden resume AGENT --reason ..."
        );
    }
    Ok(ExitCode::SUCCESS)
}
