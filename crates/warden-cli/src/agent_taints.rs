//! `warden agent taints` and `warden agent untaint` (IO-1): the tasks whose high-risk calls
//! need a human's approval because content they received carried a prompt injection, and
//! ending a taint once a person has looked.

use std::process::ExitCode;

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde_json::{Value, json};
use warden_core::AgentId;
use warden_store::ContentStore;

use crate::agent_cmd::{Registry, rfc3339};

/// The live taints, as the admin API lists them.
async fn live(registry: &Registry, agent: Option<&AgentId>) -> anyhow::Result<Vec<Value>> {
    Ok(match registry {
        Registry::Api(c) => match c.taints(agent.map(AgentId::as_str))? {
            Value::Array(v) => v,
            other => anyhow::bail!("unexpected answer from the server: {other}"),
        },
        Registry::Store(s, _) => s
            .taints(warden_gateway::unix_now())
            .await?
            .into_iter()
            .filter(|t| agent.is_none_or(|a| a.as_str() == t.agent))
            .map(|t| {
                json!({"agent": t.agent, "task": t.task, "source": t.source,
                       "finding": t.finding, "expires_at": t.expires_at})
            })
            .collect(),
    })
}

pub(crate) async fn list(
    registry: &Registry,
    agent: Option<&AgentId>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let taints = live(registry, agent).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&taints)?);
    } else if taints.is_empty() {
        println!("No tainted tasks.");
    } else {
        print_table(&taints);
    }
    Ok(ExitCode::SUCCESS)
}

/// The taints under an agent's details in `warden agent show`.
pub(crate) async fn show(registry: &Registry, agent: &AgentId) {
    match live(registry, Some(agent)).await {
        Ok(t) if t.is_empty() => {}
        Ok(t) => {
            println!("Tainted tasks (their high-risk calls need a human's approval):");
            print_table(&t);
            println!(
                "End a taint once you have looked: warden agent untaint {agent} --task TASK --reason ..."
            );
        }
        Err(e) => eprintln!("warning: the agent's taints could not be read: {e:#}"),
    }
}

fn print_table(taints: &[Value]) {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(["agent", "task", "source", "finding", "until"]);
    for r in taints {
        let s = |k: &str| {
            r.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        t.add_row([
            s("agent"),
            s("task"),
            s("source"),
            s("finding"),
            r.get("expires_at")
                .and_then(Value::as_i64)
                .map(rfc3339)
                .unwrap_or_default(),
        ]);
    }
    println!("{t}");
}

pub(crate) async fn untaint(
    registry: &Registry,
    agent: &AgentId,
    task: Option<&str>,
    reason: &str,
    json: bool,
) -> anyhow::Result<ExitCode> {
    if reason.trim().is_empty() {
        anyhow::bail!("ending a taint needs --reason (what the person checked); it is audited");
    }
    let cleared = match registry {
        Registry::Api(c) => c
            .untaint(agent.as_str(), task, reason)?
            .get("cleared")
            .and_then(Value::as_u64)
            .unwrap_or(0),
        Registry::Store(s, _) => {
            let n = s.clear_taints(agent.as_str(), task).await?;
            if n == 0 {
                anyhow::bail!(
                    "agent `{agent}`{} is not tainted (`warden agent taints`)",
                    task.map_or_else(String::new, |t| format!(" task `{t}`"))
                );
            }
            registry.audit("agent_untainted", agent, |e| {
                e.reason(reason)
                    .detail("task", task.unwrap_or("*"))
                    .detail("cleared", n)
            })?;
            eprintln!(
                "note: changed in the data directory only; a running Warden holds its taints \
                 until it restarts (use --server to end them there at once)"
            );
            u64::try_from(n).unwrap_or(u64::MAX)
        }
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"agent": agent.as_str(), "task": task, "cleared": cleared})
            )?
        );
    } else {
        println!(
            "Ended {cleared} taint(s) of {agent}{}.",
            task.map_or_else(String::new, |t| format!(" (task {t})"))
        );
    }
    Ok(ExitCode::SUCCESS)
}
