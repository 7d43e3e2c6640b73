//! `warden approvals list|show|approve|deny` (HC-1), through the running server's admin API
//! (a held call waits in that server). The credential's name must be an approver of the
//! request (by default the agent's sponsors).

use std::process::ExitCode;

use clap::Subcommand;
use comfy_table::Table;
use comfy_table::presets::UTF8_FULL_CONDENSED;
use serde_json::Value;

use crate::view::{joined, s};

use crate::admin_cmd::ServerArgs;

#[derive(Debug, Subcommand)]
pub enum ApprovalsCommand {
    /// Approval requests, newest first (default: pending ones).
    List {
        /// pending, approved, denied, expired, used, or all.
        #[arg(long, default_value = "pending")]
        state: String,
        /// Only this agent's.
        #[arg(long)]
        agent: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// One request in full: the exact call, its arguments (secrets redacted), why the policy
    /// asks, the agent's stated reason, who may decide.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Let exactly this call through (once, before it expires).
    Approve {
        id: String,
        /// Why (kept in the audit trail).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Refuse the call.
    Deny {
        id: String,
        /// Why (kept in the audit trail and told to the agent).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

fn age(created: i64) -> String {
    let now = warden_gateway::unix_now();
    let d = (now - created).max(0);
    if d < 120 {
        format!("{d}s ago")
    } else {
        format!("{}m ago", d / 60)
    }
}

pub fn run(cmd: ApprovalsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ApprovalsCommand::List {
            state,
            agent,
            json,
            server,
        } => {
            let state = (state != "all").then_some(state.as_str());
            let v = server.client()?.approvals(state, agent.as_deref())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(ExitCode::SUCCESS);
            }
            let items = v.as_array().cloned().unwrap_or_default();
            if items.is_empty() {
                println!(
                    "No approval requests{}.",
                    state.map_or(String::new(), |s| format!(" ({s})"))
                );
                return Ok(ExitCode::SUCCESS);
            }
            let mut t = Table::new();
            t.load_preset(UTF8_FULL_CONDENSED);
            t.set_header(["id", "agent", "call", "state", "asked", "approvers"]);
            for a in &items {
                t.add_row([
                    s(a, "id").to_owned(),
                    s(a, "agent").to_owned(),
                    format!("{} {}", s(a, "action"), s(a, "resource")),
                    s(a, "state").to_owned(),
                    age(a.get("created_at").and_then(Value::as_i64).unwrap_or(0)),
                    joined(a, "approvers", ", "),
                ]);
            }
            println!("{t}");
            println!("Decide with `warden approvals approve|deny ID --reason ...`.");
            Ok(ExitCode::SUCCESS)
        }
        ApprovalsCommand::Show { id, json, server } => {
            let a = server.client()?.approval(&id)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&a)?);
                return Ok(ExitCode::SUCCESS);
            }
            let mut t = Table::new();
            t.load_preset(UTF8_FULL_CONDENSED);
            let list = |k: &str| joined(&a, k, "; ");
            let rows = [
                ("id", s(&a, "id").to_owned()),
                ("state", s(&a, "state").to_owned()),
                ("agent", s(&a, "agent").to_owned()),
                ("task", s(&a, "task").to_owned()),
                ("call", format!("{} {}", s(&a, "action"), s(&a, "resource"))),
                (
                    "arguments",
                    serde_json::to_string_pretty(a.get("arguments").unwrap_or(&Value::Null))?,
                ),
                ("why approval", list("reasons")),
                ("agent's reason", s(&a, "stated_reason").to_owned()),
                ("approvers", list("approvers")),
                (
                    "asked",
                    age(a.get("created_at").and_then(Value::as_i64).unwrap_or(0)),
                ),
                ("decided by", s(&a, "decided_by").to_owned()),
                ("decision reason", s(&a, "decision_reason").to_owned()),
                ("binding", s(&a, "binding").to_owned()),
            ];
            for (k, v) in rows {
                t.add_row([k.to_owned(), v]);
            }
            println!("{t}");
            Ok(ExitCode::SUCCESS)
        }
        ApprovalsCommand::Approve { id, reason, server } => {
            let a = server.client()?.decide_approval(&id, true, &reason)?;
            println!(
                "Approved {id}: {} {} by `{}` may proceed once.",
                s(&a, "action"),
                s(&a, "resource"),
                s(&a, "agent")
            );
            Ok(ExitCode::SUCCESS)
        }
        ApprovalsCommand::Deny { id, reason, server } => {
            let a = server.client()?.decide_approval(&id, false, &reason)?;
            println!(
                "Denied {id}: {} {} by `{}`.",
                s(&a, "action"),
                s(&a, "resource"),
                s(&a, "agent")
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
