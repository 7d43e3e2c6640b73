//! Starts the real `warden` binary and talks to it over loopback HTTP.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod env;
pub mod rugpull;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The demo tool servers on `addr`, served by a runtime of their own (keep both alive).
pub fn demo_server(
    addr: &str,
    options: warden_testkit::DemoOptions,
) -> (tokio::runtime::Runtime, warden_testkit::DemoServer) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let demo = rt
        .block_on(warden_testkit::serve(addr.parse().unwrap(), options))
        .unwrap();
    (rt, demo)
}

/// The binary under test.
pub const WARDEN: &str = env!("CARGO_BIN_EXE_warden");

pub fn warden() -> Command {
    Command::new(WARDEN)
}

/// `warden audit query --json ARGS --data-dir DATA`, offline: the records (`{"seq",
/// "record": {...}}`), oldest first.
pub fn audit_query(data: &Path, args: &[&str]) -> Vec<serde_json::Value> {
    let out = warden()
        .args(["audit", "query", "--json"])
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Calls `read_contact` through `s` until `stop` is set or a call fails (Warden killed):
/// the ids of the calls the client saw succeed (`{prefix}-{n}`), in a thread.
#[allow(dead_code)]
pub fn read_contacts_until(
    mut s: warden_client::mcp::McpSession,
    prefix: String,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let mut acknowledged = Vec::new();
        let mut n = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let id = format!("{prefix}-{n}");
            n += 1;
            match s.call_tool("read_contact", serde_json::json!({"id": id})) {
                Ok(r) if r.get("result").is_some() => acknowledged.push(id),
                _ => break,
            }
        }
        acknowledged
    })
}

/// `warden audit verify --data-dir DATA`, offline.
pub fn audit_verify(data: &Path) -> std::process::Output {
    warden()
        .args(["audit", "verify", "--data-dir"])
        .arg(data)
        .output()
        .unwrap()
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn vectors() -> PathBuf {
    repo_root().join("../shared/vectors")
}

/// A running `warden serve`; killed when dropped.
pub struct Warden {
    child: Child,
    pub url: String,
    pub stdout: String,
    pub stderr: Arc<Mutex<String>>,
    pub agent: ureq::Agent,
}

impl Warden {
    /// Starts `warden serve` with `args` and waits for its banner.
    pub fn start(args: &[&str], data_dir: &Path) -> Self {
        Self::start_with(
            warden()
                .arg("serve")
                .args(args)
                .env("WARDEN_DATA_DIR", data_dir),
        )
    }

    pub fn start_with(cmd: &mut Command) -> Self {
        let mut child = cmd
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start warden");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().unwrap();
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut banner = String::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut url = None;
        loop {
            let mut line = String::new();
            if out.read_line(&mut line).unwrap_or(0) == 0 {
                let _ = child.wait();
                panic!(
                    "warden exited before listening:\n{banner}\n{}",
                    stderr.lock().unwrap()
                );
            }
            banner.push_str(&line);
            if let Some(rest) = line.trim().strip_prefix("listening") {
                url = Some(rest.trim().to_owned());
            }
            if line.starts_with("Press Ctrl-C") {
                break;
            }
            assert!(Instant::now() < deadline, "no banner");
        }
        let url = url.expect("banner names the listening address");
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = String::new();
            let _ = out.read_to_string(&mut sink);
        });
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        Self {
            child,
            url,
            stdout: banner,
            stderr,
            agent,
        }
    }

    /// The server's process id (to sample its memory and descriptors in /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The bootstrap admin secret `warden serve` prints once at first start.
    pub fn admin_secret(&self) -> String {
        self.stdout
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("wdn_admin_"))
            .expect("the bootstrap secret is shown at first start")
            .to_owned()
    }

    /// An admin API client with the bootstrap secret.
    pub fn admin(&self) -> warden_client::AdminClient {
        warden_client::AdminClient::new(&self.url, &self.admin_secret())
    }

    /// Registers agent `id` (junior, sponsored by alice) with a fresh key; returns the key.
    pub fn register_agent(&self, id: &str, dpop: bool) -> warden_identity::KeyPair {
        let k = warden_identity::KeyPair::generate();
        self.admin()
            .create_agent(
                id,
                id,
                &["alice@example.com".to_owned()],
                "test",
                warden_core::AutonomyLevel::Junior,
                dpop,
                &k.public_jwk(),
            )
            .unwrap();
        k
    }

    /// POSTs JSON text; returns status, headers and body.
    pub fn post(
        &self,
        path: &str,
        body: &str,
        headers: &[(&str, &str)],
    ) -> (u16, Vec<(String, String)>, String) {
        let mut req = self.agent.post(format!("{}{path}", self.url));
        let mut has_ct = false;
        for (k, v) in headers {
            has_ct |= k.eq_ignore_ascii_case("content-type");
            req = req.header(*k, *v);
        }
        if !has_ct {
            req = req.header("Content-Type", "application/json");
        }
        let mut resp = req.send(body).expect("request");
        let status = resp.status().as_u16();
        let hs = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        (status, hs, text)
    }

    pub fn post_json(&self, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        let (s, _, t) = self.post(path, &body.to_string(), &[]);
        (
            s,
            serde_json::from_str(&t).unwrap_or(serde_json::Value::Null),
        )
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        let mut resp = self
            .agent
            .get(format!("{}{path}", self.url))
            .call()
            .expect("request");
        (
            resp.status().as_u16(),
            resp.body_mut().read_to_string().unwrap_or_default(),
        )
    }
}

impl Warden {
    /// Stops the server as an operator does (SIGTERM) and waits until it has exited.
    pub fn terminate(mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(
                    status.success(),
                    "warden exited with {status} after SIGTERM"
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("warden did not stop within 20 s of SIGTERM");
    }

    /// kill -9: no chance to finish anything.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Warden {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `install` unless `done` exists, holding an exclusive lock on `target/.install.lock`
/// meanwhile: tests run in parallel (threads here, processes under nextest) and two npm
/// installs into one prefix race each other (`ENOTEMPTY`). `done` is checked again once the
/// lock is held, so the second caller finds the first one's work.
#[allow(dead_code)]
pub fn installed_once(done: &Path, install: impl FnOnce()) {
    if done.exists() {
        return;
    }
    let target = repo_root().join("target");
    std::fs::create_dir_all(&target).unwrap();
    let lock = std::fs::File::create(target.join(".install.lock")).unwrap();
    lock.lock().expect("lock target/.install.lock");
    if !done.exists() {
        install();
    }
}

/// `node_modules/.bin/<bin>` under `target/npm`, installing `packages` with npm first if it
/// is missing (reference peers: the official MCP servers and conformance suite).
#[allow(dead_code)]
pub fn npm_installed(bin: &str, packages: &[&str]) -> PathBuf {
    let prefix = repo_root().join("target/npm");
    let path = prefix.join("node_modules/.bin").join(bin);
    installed_once(&path, || {
        std::fs::create_dir_all(&prefix).unwrap();
        let ok = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&prefix)
            .args(packages)
            .status()
            .expect("npm is needed to install the reference MCP peers");
        assert!(ok.success(), "npm install {packages:?} failed");
    });
    path
}

/// Registers agent `id` straight in the store under `data` (no server running), writing its
/// private key to `key_out`: `warden agent create` as a user runs it.
pub fn create_agent_offline(data: &Path, id: &str, key_out: &Path) {
    let out = warden()
        .args([
            "agent",
            "create",
            id,
            "--sponsor",
            "alice@example.com",
            "--data-dir",
        ])
        .arg(data)
        .arg("--key-out")
        .arg(key_out)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "warden agent create {id}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The `reason` of a JSON-RPC answer's error (`ok` for a result), or the client error.
#[allow(dead_code)]
pub fn reason(r: &Result<serde_json::Value, warden_client::ClientError>) -> String {
    match r {
        Ok(v) => v["error"]["data"]["reason"]
            .as_str()
            .unwrap_or(if v.get("result").is_some() { "ok" } else { "" })
            .to_owned(),
        Err(e) => format!("client error: {e}"),
    }
}

/// Polls `f` every 50 ms until it gives a value; fails the test after 15 s.
#[allow(dead_code)]
pub fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
