//! `warden breakers list|reset` (HC-3), through the running server's admin API (breakers
//! live in that server's memory). An agent demoted by its breakers is raised again with
//! `warden agent autonomy AGENT LEVEL`.

use std::process::ExitCode;

use clap::Subcommand;
use comfy_table::Table;
use comfy_table::presets::UTF8_FULL_CONDENSED;
use serde_json::Value;

use crate::view::s;

use crate::admin_cmd::ServerArgs;

#[derive(Debug, Subcommand)]
pub enum BreakersCommand {
    /// Breakers that are open, half-open, or counting failures or denials; and each agent's
    /// incidents towards demotion.
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Close an agent's breakers and forget its incidents (a person decided it may go on).
    Reset {
        agent: String,
        /// Only this breaker: `upstream/tool`, or `*` for the one over all tools.
        #[arg(long)]
        scope: Option<String>,
        /// Why (kept in the audit trail).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

fn n(v: &Value, k: &str) -> String {
    v.get(k)
        .and_then(Value::as_u64)
        .map_or(String::new(), |x| x.to_string())
}

pub fn run(cmd: BreakersCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        BreakersCommand::List { json, server } => {
            let v = server.client()?.breakers()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(ExitCode::SUCCESS);
            }
            let empty = Vec::new();
            let list = |k: &str| v.get(k).and_then(Value::as_array).unwrap_or(&empty).clone();
            let (breakers, incidents) = (list("breakers"), list("incidents"));
            if breakers.is_empty() {
                println!("No breaker is open or counting.");
            } else {
                let mut t = Table::new();
                t.load_preset(UTF8_FULL_CONDENSED);
                t.set_header([
                    "agent",
                    "on",
                    "state",
                    "opened by",
                    "retry in",
                    "failures",
                    "denials",
                ]);
                for b in &breakers {
                    let on = match s(b, "scope") {
                        "*" => "all tools",
                        other => other,
                    };
                    let cause = match s(b, "cause") {
                        "" => String::new(),
                        c => format!("{} {c}", n(b, "count")),
                    };
                    let retry = n(b, "retry_in_secs");
                    t.add_row([
                        s(b, "agent").to_owned(),
                        on.to_owned(),
                        s(b, "state").replace('_', "-"),
                        cause,
                        if retry.is_empty() {
                            retry
                        } else {
                            format!("{retry} s")
                        },
                        n(b, "failures"),
                        n(b, "denials"),
                    ]);
                }
                println!("{t}");
            }
            if !incidents.is_empty() {
                let mut t = Table::new();
                t.load_preset(UTF8_FULL_CONDENSED);
                t.set_header(["agent", "incidents (demotion window)"]);
                for i in &incidents {
                    t.add_row([s(i, "agent").to_owned(), n(i, "incidents")]);
                }
                println!("{t}");
            }
            if !breakers.is_empty() || !incidents.is_empty() {
                println!("Close with `warden breakers reset AGENT --reason ...`.");
            }
            Ok(ExitCode::SUCCESS)
        }
        BreakersCommand::Reset {
            agent,
            scope,
            reason,
            server,
        } => {
            let v = server
                .client()?
                .reset_breakers(&agent, scope.as_deref(), &reason)?;
            println!(
                "Closed {} breaker(s) of `{agent}`{}. A demoted agent keeps its lower autonomy \
                 until you raise it: `warden agent autonomy {agent} LEVEL`.",
                n(&v, "closed"),
                if scope.is_none() {
                    " and forgot its incidents"
                } else {
                    ""
                }
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
