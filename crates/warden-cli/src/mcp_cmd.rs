//! `warden mcp`: an MCP client that acts as one agent through a running Warden — gets a
//! task token with the agent's key, then lists or calls tools. For trying policies and for
//! the `serve --demo` quickstart; real agents use their own MCP client the same way.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde_json::{Value, json};
use warden_client::mcp::McpSession;
use warden_client::{AgentClient, TaskRequest};
use warden_core::ActionKind;
use warden_identity::KeyPair;

#[derive(Debug, Subcommand)]
pub enum McpCommand {
    /// List the tools this agent may use for the task (what Warden shows it).
    Tools {
        #[command(flatten)]
        agent: AgentArgs,
    },
    /// Call one tool and print its result, or why Warden refused it.
    Call {
        /// The tool: `upstream.tool` on the aggregate endpoint (`crm.read_contact`), the
        /// bare name with --upstream.
        tool: String,
        /// The arguments, a JSON object.
        #[arg(default_value = "{}")]
        arguments: String,
        /// The reason the agent states for this call (kept with the decision).
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        agent: AgentArgs,
    },
}

#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// The agent acting.
    #[arg(long, env = "WARDEN_AGENT", value_name = "ID")]
    agent: String,
    /// The agent's private key file.
    #[arg(long, env = "WARDEN_AGENT_KEY", value_name = "FILE")]
    key: PathBuf,
    /// The running Warden.
    #[arg(long, env = "WARDEN_SERVER", value_name = "URL")]
    server: Option<String>,
    /// Talk to `/mcp/<upstream>` instead of the aggregate `/mcp`.
    #[arg(long, value_name = "NAME")]
    upstream: Option<String>,
    /// The task id the token is issued for.
    #[arg(long, default_value = "cli")]
    task: String,
    /// A tool the task may call, `upstream/tool` (repeat). Default for `call`: the called
    /// tool; `tools` needs at least one.
    #[arg(long = "grant", value_name = "UPSTREAM/TOOL")]
    grants: Vec<String>,
    /// MCP protocol version to speak.
    #[arg(long, default_value = "2025-11-25")]
    protocol: String,
    /// Print the JSON-RPC answer instead of text.
    #[arg(long)]
    json: bool,
}

impl AgentArgs {
    fn endpoint(&self) -> String {
        let base = self.server.as_deref().map_or_else(
            || format!("http://{}", warden_config::DEFAULT_LISTEN),
            |s| s.trim_end_matches('/').to_owned(),
        );
        match &self.upstream {
            Some(u) => format!("{base}/mcp/{u}"),
            None => format!("{base}/mcp"),
        }
    }

    /// The `upstream/tool` resource for a tool name as the endpoint shows it.
    fn resource_of(&self, tool: &str) -> anyhow::Result<String> {
        match &self.upstream {
            Some(u) => Ok(format!("{u}/{tool}")),
            None => tool
                .split_once('.')
                .map(|(u, t)| format!("{u}/{t}"))
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "`{tool}`: on the aggregate endpoint tools are named `upstream.tool` \
                     (e.g. crm.read_contact); or pass --upstream NAME"
                    )
                }),
        }
    }

    /// A session holding a fresh task token for `grants`.
    fn session(&self, grants: &[String]) -> anyhow::Result<McpSession> {
        if grants.is_empty() {
            anyhow::bail!("name what the task may call: --grant UPSTREAM/TOOL (repeat)");
        }
        let key = KeyPair::read_private(&self.key).map_err(|e| anyhow::anyhow!("{e}"))?;
        let endpoint = self.endpoint();
        let issuer = endpoint
            .rsplit_once("/mcp")
            .map_or(endpoint.as_str(), |(b, _)| b);
        let client = AgentClient::new(issuer, &self.agent, key);
        let task = grants
            .iter()
            .fold(TaskRequest::new(&self.task, "warden mcp (CLI)"), |t, g| {
                t.action(ActionKind::CallTool, g)
            });
        let token = client
            .token(&endpoint, &task)
            .map_err(|e| anyhow::anyhow!("no task token from {issuer}: {e}"))?;
        for r in &token.refused {
            eprintln!("not granted for this task: {r}");
        }
        let mut s = McpSession::new(client, &endpoint, &token.access_token, &self.protocol);
        let init = s.initialize().map_err(|e| anyhow::anyhow!("{e}"))?;
        if let Some(e) = init.get("error") {
            anyhow::bail!("{endpoint} refused to start a session: {e}");
        }
        Ok(s)
    }
}

pub fn run(cmd: McpCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        McpCommand::Tools { agent } => {
            let mut s = agent.session(&agent.grants)?;
            let answer = s
                .request("tools/list", json!({}))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            if agent.json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
                return Ok(ExitCode::SUCCESS);
            }
            if let Some(code) = refusal(&answer) {
                return Ok(code);
            }
            let tools = answer
                .pointer("/result/tools")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let mut t = Table::new();
            t.load_preset(UTF8_FULL_CONDENSED);
            t.set_header(["tool", "description"]);
            for tool in &tools {
                t.add_row([
                    tool["name"].as_str().unwrap_or("?").to_owned(),
                    tool["description"].as_str().unwrap_or("").to_owned(),
                ]);
            }
            println!("{t}");
            println!(
                "{} tool{} visible to {} for task {}",
                tools.len(),
                if tools.len() == 1 { "" } else { "s" },
                agent.agent,
                agent.task
            );
            Ok(ExitCode::SUCCESS)
        }
        McpCommand::Call {
            tool,
            arguments,
            reason,
            agent,
        } => {
            let args: Value = serde_json::from_str(&arguments)
                .map_err(|e| anyhow::anyhow!("the arguments are not JSON: {e}"))?;
            if !args.is_object() {
                anyhow::bail!("the arguments must be a JSON object, e.g. '{{\"id\": \"c-1\"}}'");
            }
            let grants = if agent.grants.is_empty() {
                vec![agent.resource_of(&tool)?]
            } else {
                agent.grants.clone()
            };
            let mut s = agent.session(&grants)?;
            if let Some(r) = &reason {
                s = s.with_reason(r);
            }
            let answer = s
                .call_tool(&tool, args)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            if agent.json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
                return Ok(if answer.get("error").is_some() {
                    ExitCode::from(3)
                } else {
                    ExitCode::SUCCESS
                });
            }
            if let Some(code) = refusal(&answer) {
                return Ok(code);
            }
            let content = answer
                .pointer("/result/content")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for c in &content {
                match c.get("text").and_then(Value::as_str) {
                    Some(text) => println!("{text}"),
                    None => println!("{c}"),
                }
            }
            if answer.pointer("/result/isError") == Some(&Value::Bool(true)) {
                eprintln!("(the tool reported an error)");
                return Ok(ExitCode::FAILURE);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Prints a JSON-RPC error the way a person reads it; exit code 3 for a refusal.
fn refusal(answer: &Value) -> Option<ExitCode> {
    let e = answer.get("error")?;
    let code = e["code"].as_i64().unwrap_or(0);
    let reason = e
        .pointer("/data/reason")
        .and_then(Value::as_str)
        .unwrap_or("");
    eprintln!(
        "refused ({code} {reason}): {}",
        e["message"].as_str().unwrap_or("")
    );
    if let Some(p) = e.pointer("/data/policies").and_then(Value::as_array)
        && !p.is_empty()
    {
        let ids: Vec<&str> = p.iter().filter_map(Value::as_str).collect();
        eprintln!("  determining policies: {}", ids.join(", "));
    }
    Some(ExitCode::from(3))
}
