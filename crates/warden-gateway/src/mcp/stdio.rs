//! stdio upstreams: an MCP server Warden launches as a child process and talks to over
//! newline-delimited JSON-RPC on its stdin/stdout.
//!
//! One child per upstream, supervised: Warden initializes it itself (it is the MCP client),
//! multiplexes the agents' permitted requests onto it with ids of its own, and restarts it
//! with exponential back-off (0.25 s doubling to 30 s) when it exits. Its stderr goes to
//! Warden's log. The child's environment is cleared except `PATH`, `HOME`, the configured
//! `env` and the upstream credential (`credential.env`): the agent's token never reaches it.
//! Warden declares no client capabilities, so the child has no reason to send requests of
//! its own; any it sends are answered "method not found" (`ping` with `{}`).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::sync::{mpsc, oneshot};

use super::http::UpstreamError;

/// How to launch the child.
#[derive(Debug, Clone)]
pub struct Launch {
    pub name: String,
    pub command: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub cwd: Option<PathBuf>,
    pub timeout: Duration,
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

/// A running child: where to write, who waits for what, what it said at `initialize`.
#[derive(Debug)]
struct Link {
    tx: mpsc::Sender<Vec<u8>>,
    pending: Pending,
}

/// A supervised stdio upstream.
#[derive(Debug)]
pub struct StdioUpstream {
    launch: Launch,
    link: ArcSwapOption<Link>,
    /// The child's `initialize` result (capabilities, serverInfo, instructions).
    pub init: ArcSwapOption<Value>,
    next_id: AtomicU64,
}

impl StdioUpstream {
    /// Starts supervising (the first launch happens in the background).
    pub fn start(launch: Launch) -> Arc<Self> {
        let up = Arc::new(Self {
            launch,
            link: ArcSwapOption::empty(),
            init: ArcSwapOption::empty(),
            next_id: AtomicU64::new(1),
        });
        tokio::spawn(supervise(Arc::clone(&up)));
        up
    }

    /// Sends one request (`params` as given) and waits for the child's answer: the whole
    /// JSON-RPC response message, with Warden's id in it.
    pub async fn request(&self, method: &str, params: &Value) -> Result<Value, UpstreamError> {
        let link = self.link.load_full().ok_or_else(|| {
            UpstreamError::Unreachable(format!(
                "`{}` is not running (restarting)",
                self.launch.name
            ))
        })?;
        self.send(&link, method, params).await
    }

    async fn send(
        &self,
        link: &Link,
        method: &str,
        params: &Value,
    ) -> Result<Value, UpstreamError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = link.pending.lock() {
            p.insert(id, tx);
        }
        let mut line = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
            .to_string()
            .into_bytes();
        line.push(b'\n');
        let forget = || {
            if let Ok(mut p) = link.pending.lock() {
                p.remove(&id);
            }
        };
        if link.tx.send(line).await.is_err() {
            forget();
            return Err(UpstreamError::Unreachable(
                "the child's stdin is closed".into(),
            ));
        }
        match tokio::time::timeout(self.launch.timeout, rx).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(_)) => Err(UpstreamError::Unreachable("the child exited".into())),
            Err(_) => {
                forget();
                Err(UpstreamError::Timeout(self.launch.timeout))
            }
        }
    }
}

async fn supervise(up: Arc<StdioUpstream>) {
    let mut backoff = Duration::from_millis(250);
    loop {
        let started = std::time::Instant::now();
        match run_once(&up).await {
            Ok(status) => {
                tracing::warn!(upstream = %up.launch.name, "stdio upstream exited ({status}); restarting")
            }
            Err(e) => tracing::error!(upstream = %up.launch.name, "stdio upstream failed: {e}"),
        }
        up.link.store(None);
        if started.elapsed() > Duration::from_secs(60) {
            backoff = Duration::from_millis(250);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// Launches the child, initializes it, serves until it exits.
async fn run_once(up: &StdioUpstream) -> anyhow::Result<std::process::ExitStatus> {
    let l = &up.launch;
    let mut cmd = Command::new(&l.command);
    cmd.args(&l.args)
        .env_clear()
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    for k in ["PATH", "HOME"] {
        if let Some(v) = std::env::var_os(k) {
            cmd.env(k, v);
        }
    }
    cmd.envs(&l.env);
    if let Some(d) = &l.cwd {
        cmd.current_dir(d);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start `{}`: {e}", l.command))?;
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        anyhow::bail!("the child's pipes are missing");
    };
    let name = l.name.clone();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::info!(upstream = %name, "stderr: {line}");
        }
    });
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(1024);
    tokio::spawn(async move {
        while let Some(line) = rx.recv().await {
            if stdin.write_all(&line).await.is_err() || stdin.flush().await.is_err() {
                break;
            }
        }
    });
    let pending: Pending = Arc::default();
    let reader_pending = Arc::clone(&pending);
    let reply = tx.clone();
    let name = l.name.clone();
    let reader = tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            route(&name, &line, &reader_pending, &reply).await;
        }
        // Exited: everyone waiting gets "the child exited".
        if let Ok(mut p) = reader_pending.lock() {
            p.clear();
        }
    });
    let link = Link { tx, pending };
    let init = up
        .send(
            &link,
            "initialize",
            &json!({"protocolVersion": "2025-11-25", "capabilities": {},
                    "clientInfo": {"name": "warden", "version": env!("CARGO_PKG_VERSION")}}),
        )
        .await;
    match init {
        Ok(v) if v.get("result").is_some() => {
            up.init.store(v.get("result").cloned().map(Arc::new));
            let note = b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n".to_vec();
            let _ = link.tx.send(note).await;
            tracing::info!(upstream = %l.name, "stdio upstream initialized");
            up.link.store(Some(Arc::new(link)));
        }
        Ok(v) => tracing::error!(upstream = %l.name, "initialize refused: {v}"),
        Err(e) => tracing::error!(upstream = %l.name, "initialize failed: {e}"),
    }
    let status = child.wait().await?;
    reader.abort();
    Ok(status)
}

/// One line from the child: an answer to someone, a request of its own, or a notification.
async fn route(name: &str, line: &str, pending: &Pending, reply: &mpsc::Sender<Vec<u8>>) {
    let Ok(v) = serde_json::from_str::<Value>(line) else {
        tracing::warn!(upstream = %name, "not JSON on stdout, ignored: {line:.200}");
        return;
    };
    let id = v.get("id").cloned();
    match (v.get("method").and_then(Value::as_str), id) {
        (None, Some(id)) => {
            let waiter = id
                .as_u64()
                .and_then(|id| pending.lock().ok().and_then(|mut p| p.remove(&id)));
            match waiter {
                Some(w) => {
                    let _ = w.send(v);
                }
                None => tracing::warn!(upstream = %name, "an answer nobody waits for: {id}"),
            }
        }
        (Some(method), Some(id)) => {
            let answer = if method == "ping" {
                json!({"jsonrpc": "2.0", "id": id, "result": {}})
            } else {
                json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601,
                    "message": format!("`{method}` is not available through Warden")}})
            };
            let mut bytes = answer.to_string().into_bytes();
            bytes.push(b'\n');
            let _ = reply.send(bytes).await;
        }
        (Some(method), None) => tracing::debug!(upstream = %name, "notification {method}"),
        (None, None) => tracing::warn!(upstream = %name, "a message without id or method"),
    }
}
