//! `warden mcp-stdio --agent ID --agent-key FILE -- <server command>`: Warden as a stdio MCP
//! server for desktop clients. It launches the given MCP server as a supervised child (a
//! stdio upstream), and every JSON-RPC line the client writes goes through the same request
//! path as HTTP — Warden's own router, in-process, acting as the agent whose private key was
//! given — with the same engine, policies and store as `warden serve`. stdout carries only
//! JSON-RPC; logs go to stderr. Decisions are marked `via = "stdio:<agent>"`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::body::{Body, to_bytes};
use axum::http::{Request, header};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::sync::{Mutex, mpsc};
use tower::ServiceExt as _;
use warden_config::{LocalListenerConfig, UpstreamConfig};
use warden_identity::KeyPair;

use crate::{ConfigArg, config_cmd, serve};

#[derive(Debug, clap::Args)]
pub struct McpStdioArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The agent this client acts as (registered and active).
    #[arg(long, env = "WARDEN_AGENT", value_name = "ID")]
    agent: String,
    /// The agent's private key file: proves the caller holds a registered key of the agent.
    #[arg(long, env = "WARDEN_AGENT_KEY", value_name = "FILE")]
    agent_key: PathBuf,
    /// The upstream's name in policies (`<name>/<tool>`).
    #[arg(long, default_value = "local", value_name = "NAME")]
    name: String,
    /// Environment for the server (`KEY=VALUE`, repeat); its environment is otherwise
    /// cleared but for PATH and HOME.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// The task id recorded with each decision.
    #[arg(long, default_value = "stdio")]
    task: String,
    /// Tools the task may call (`<name>/<tool>`, repeat). Default: the policy alone decides.
    #[arg(long = "tool", value_name = "NAME/TOOL")]
    tools: Vec<String>,
    /// Data directory (overrides the config and $WARDEN_DATA_DIR).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Policy directory (overrides the config).
    #[arg(long, value_name = "DIR")]
    policies: Option<PathBuf>,
    /// The MCP server to launch, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<String>,
}

/// Largest answer relayed to the client.
const MAX_ANSWER: usize = 64 << 20;

pub fn run(args: McpStdioArgs) -> anyhow::Result<ExitCode> {
    let mut config = config_cmd::load_or_default(args.config.config.as_deref())?;
    if let Some(d) = &args.data_dir {
        config.server.data_dir = Some(d.clone());
    }
    if let Some(p) = &args.policies {
        config.policy.dir = Some(p.clone());
    }
    // No HTTP listener is served; bind nothing that could collide with a running Warden.
    config.server.listen = "127.0.0.1:0".parse()?;
    config.local_listeners.clear();
    // One person's desktop wrapper around a server they chose to run: its tools are
    // trusted on first use unless the config says otherwise (a changed tool is still
    // disabled until approved).
    if config.inspection.pinning.mode == warden_config::PinMode::Approve
        && args.config.config.is_none()
    {
        config.inspection.pinning.mode = warden_config::PinMode::Tofu;
    }
    let mut env = std::collections::BTreeMap::new();
    for kv in &args.env {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--env {kv}: expected KEY=VALUE"))?;
        env.insert(k.to_owned(), v.to_owned());
    }
    let (command, rest) = args.command.split_first().context("no server command")?;
    config.upstreams.insert(
        args.name.clone(),
        UpstreamConfig {
            command: Some(command.clone()),
            args: rest.to_vec(),
            env,
            timeout_secs: 300,
            ..UpstreamConfig::default()
        },
    );
    let _log = serve::init_logging(&config.log.level, config.log.format);
    let key = KeyPair::read_private(&args.agent_key).map_err(|e| anyhow::anyhow!("{e}"))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let server = warden_gateway::Server::bind(&config).await?;
        check_key(&server, &args.agent, &key).await?;
        let binding = LocalListenerConfig {
            agent: args.agent.clone(),
            task: args.task.clone(),
            tools: args.tools.clone(),
            purpose: "warden mcp-stdio".into(),
            ..LocalListenerConfig::default()
        };
        let headless = server
            .into_headless(&binding, &format!("stdio:{}", args.agent))
            .await?;
        if !headless.ready(&args.name, Duration::from_secs(60)).await {
            anyhow::bail!("the MCP server `{command}` did not start (see the log above)");
        }
        tracing::info!(agent = %args.agent, upstream = %args.name, "serving MCP on stdio");
        relay(headless.router.clone(), &args.name).await?;
        Ok(ExitCode::SUCCESS)
    })
}

/// The key file must hold one of the agent's registered, currently valid keys.
async fn check_key(
    server: &warden_gateway::Server,
    agent: &str,
    key: &KeyPair,
) -> anyhow::Result<()> {
    let kid = key.public_jwk().kid;
    let record = server.agent(agent).await?;
    if record
        .valid_keys(warden_gateway::unix_now())
        .any(|k| k.jwk.kid == kid)
    {
        Ok(())
    } else {
        anyhow::bail!("the key in the --agent-key file is not a valid key of agent `{agent}`")
    }
}

/// Session state the client's lines share: the protocol version and Warden's session id.
#[derive(Debug, Default)]
struct Conversation {
    protocol: Option<String>,
    session: Option<String>,
}

/// Reads JSON-RPC lines from stdin, answers each on stdout (one line per message).
async fn relay(router: axum::Router, name: &str) -> anyhow::Result<()> {
    let path = format!("/mcp/{name}");
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(256);
    let writer = tokio::spawn(async move {
        let mut out = tokio::io::stdout();
        while let Some(mut line) = rx.recv().await {
            line.push(b'\n');
            if out.write_all(&line).await.is_err() || out.flush().await.is_err() {
                break;
            }
        }
    });
    let state = Arc::new(Mutex::new(Conversation::default()));
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut inflight = tokio::task::JoinSet::new();
    while let Some(line) = lines.next_line().await? {
        if line.trim().is_empty() {
            continue;
        }
        let initialize = is_initialize(&line);
        let job = exchange(
            router.clone(),
            path.clone(),
            Arc::clone(&state),
            line,
            tx.clone(),
        );
        if initialize {
            // Later lines need the session this one opens.
            job.await;
        } else {
            inflight.spawn(job);
        }
        while inflight.try_join_next().is_some() {}
    }
    while inflight.join_next().await.is_some() {}
    drop(tx);
    let _ = writer.await;
    Ok(())
}

fn is_initialize(line: &str) -> bool {
    serde_json::from_str::<Value>(line)
        .ok()
        .is_some_and(|v| v.get("method").and_then(Value::as_str) == Some("initialize"))
}

/// One line through Warden's router; every JSON-RPC message of the answer goes to stdout.
async fn exchange(
    router: axum::Router,
    path: String,
    state: Arc<Mutex<Conversation>>,
    line: String,
    out: mpsc::Sender<Vec<u8>>,
) {
    let asked_version = serde_json::from_str::<Value>(&line).ok().and_then(|v| {
        (v.get("method").and_then(Value::as_str) == Some("initialize"))
            .then(|| {
                v.pointer("/params/protocolVersion")?
                    .as_str()
                    .map(str::to_owned)
            })
            .flatten()
    });
    let mut req = Request::post(&path)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json, text/event-stream");
    {
        let c = state.lock().await;
        if let Some(p) = &c.protocol {
            req = req.header("mcp-protocol-version", p.as_str());
        }
        if let Some(s) = &c.session {
            req = req.header("mcp-session-id", s.as_str());
        }
    }
    let Ok(req) = req.body(Body::from(line)) else {
        return;
    };
    let Ok(resp) = router.oneshot(req).await;
    if let Some(sid) = resp
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
    {
        let mut c = state.lock().await;
        c.session = Some(sid.to_owned());
        c.protocol = asked_version.or_else(|| c.protocol.clone());
    }
    let sse = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let Ok(body) = to_bytes(resp.into_body(), MAX_ANSWER).await else {
        tracing::warn!("an answer was too large to relay");
        return;
    };
    if body.is_empty() {
        return;
    }
    if sse {
        let text = String::from_utf8_lossy(&body);
        for data in text.lines().filter_map(|l| l.strip_prefix("data:")) {
            let data = data.trim();
            if !data.is_empty() && serde_json::from_str::<Value>(data).is_ok() {
                let _ = out.send(data.as_bytes().to_vec()).await;
            }
        }
    } else {
        // One JSON message, re-serialised compactly so it fits on one line.
        match serde_json::from_slice::<Value>(&body) {
            Ok(v) => {
                let _ = out.send(v.to_string().into_bytes()).await;
            }
            Err(_) => tracing::warn!("a non-JSON answer was dropped"),
        }
    }
}
