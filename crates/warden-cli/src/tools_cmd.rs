//! `warden tools list|diff|approve` (EP-4), through the running server's admin API: the
//! server lists every upstream's tools again, and each tool is shown with its pin status.

use std::process::ExitCode;

use clap::Subcommand;
use comfy_table::Table;
use comfy_table::presets::UTF8_FULL_CONDENSED;
use serde_json::Value;

use crate::view::{joined, s};

use crate::admin_cmd::ServerArgs;

#[derive(Debug, Subcommand)]
pub enum ToolsCommand {
    /// Every upstream tool: approved, new (never approved), changed (differs from the
    /// approved definition: disabled), gone; with poisoning findings.
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// What changed: the approved definition against the one the upstream lists now.
    Diff {
        /// `UPSTREAM/TOOL`, e.g. `crm/read_contact`.
        tool: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Approve the definition the upstream lists now (audited).
    Approve {
        /// `UPSTREAM/TOOL`.
        tool: String,
        /// The hash you reviewed (from `list` or `diff`): refused if the definition
        /// changed since.
        #[arg(long)]
        hash: Option<String>,
        /// Why (kept in the audit trail).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

fn short(h: &str) -> String {
    h.get(..12).unwrap_or(h).to_owned()
}

fn split(tool: &str) -> anyhow::Result<(&str, &str)> {
    tool.split_once('/')
        .filter(|(u, t)| !u.is_empty() && !t.is_empty())
        .ok_or_else(|| {
            anyhow::anyhow!("`{tool}`: name a tool as UPSTREAM/TOOL, e.g. crm/read_contact")
        })
}

pub fn run(cmd: ToolsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ToolsCommand::List { json, server } => {
            let v = server.client()?.tools()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(ExitCode::SUCCESS);
            }
            let items = v.as_array().cloned().unwrap_or_default();
            if items.is_empty() {
                println!("No upstream lists any tool (or pinning is off).");
                return Ok(ExitCode::SUCCESS);
            }
            let mut t = Table::new();
            t.load_preset(UTF8_FULL_CONDENSED);
            t.set_header(["tool", "status", "current", "approved", "by", "poisoning"]);
            let mut waiting = 0;
            for x in &items {
                if s(x, "status") != "approved" {
                    waiting += 1;
                }
                t.add_row([
                    format!("{}/{}", s(x, "upstream"), s(x, "tool")),
                    s(x, "status").to_owned(),
                    short(s(x, "current_hash")),
                    short(s(x, "approved_hash")),
                    s(x, "approved_by").to_owned(),
                    joined(x, "poisoning", ", "),
                ]);
            }
            println!("{t}");
            if waiting > 0 {
                println!(
                    "{waiting} tool(s) cannot be used until approved: review with `warden tools \
                     diff UPSTREAM/TOOL`, then `warden tools approve UPSTREAM/TOOL --hash H \
                     --reason ...`."
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ToolsCommand::Diff { tool, json, server } => {
            let (u, name) = split(&tool)?;
            let v = server.client()?.tool(u, name)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(ExitCode::SUCCESS);
            }
            let status = v.get("status").cloned().unwrap_or(Value::Null);
            println!(
                "{tool}: {} (current {}, approved {})",
                s(&status, "status"),
                s(&status, "current_hash"),
                if s(&status, "approved_hash").is_empty() {
                    "never"
                } else {
                    s(&status, "approved_hash")
                }
            );
            let text = |k: &str| {
                v.get(k)
                    .filter(|d| !d.is_null())
                    .map(|d| serde_json::to_string_pretty(d).unwrap_or_default())
                    .unwrap_or_default()
            };
            let (old, new) = (text("approved"), text("current"));
            print!("{}", line_diff(&old, &new));
            if s(&status, "status") != "approved" && !s(&status, "current_hash").is_empty() {
                println!(
                    "Approve with `warden tools approve {tool} --hash {} --reason ...`.",
                    s(&status, "current_hash")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ToolsCommand::Approve {
            tool,
            hash,
            reason,
            server,
        } => {
            let (u, name) = split(&tool)?;
            let p = server
                .client()?
                .approve_tool(u, name, hash.as_deref(), &reason)?;
            println!(
                "Approved {tool} (definition {}): agents may use it again.",
                s(&p, "hash")
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A line diff: `-` lines only in `old`, `+` only in `new`, two spaces for both (longest
/// common subsequence; definitions are small).
fn line_diff(old: &str, new: &str) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            let v = if a.get(i) == b.get(j) {
                lcs.get(i + 1)
                    .and_then(|r| r.get(j + 1))
                    .copied()
                    .unwrap_or(0)
                    + 1
            } else {
                let down = lcs.get(i + 1).and_then(|r| r.get(j)).copied().unwrap_or(0);
                let right = lcs.get(i).and_then(|r| r.get(j + 1)).copied().unwrap_or(0);
                down.max(right)
            };
            if let Some(cell) = lcs.get_mut(i).and_then(|r| r.get_mut(j)) {
                *cell = v;
            }
        }
    }
    let at = |i: usize, j: usize| lcs.get(i).and_then(|r| r.get(j)).copied().unwrap_or(0);
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < n || j < m {
        match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x == y => {
                out.push_str(&format!("  {x}\n"));
                i += 1;
                j += 1;
            }
            (Some(x), _) if j >= m || at(i + 1, j) >= at(i, j + 1) => {
                out.push_str(&format!("- {x}\n"));
                i += 1;
            }
            (_, Some(y)) => {
                out.push_str(&format!("+ {y}\n"));
                j += 1;
            }
            (Some(x), None) => {
                out.push_str(&format!("- {x}\n"));
                i += 1;
            }
            (None, None) => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn diff_marks_removed_and_added_lines() {
        let d = super::line_diff("a\nb\nc", "a\nx\nc\nd");
        assert_eq!(d, "  a\n- b\n+ x\n  c\n+ d\n");
        assert_eq!(super::line_diff("", "n"), "+ n\n");
    }
}
