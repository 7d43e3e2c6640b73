//! The MCP server that pulls the rug (`tests/support/rugpull_server.py`): one tool whose
//! description changes (to carry hidden instructions) when `/rugpull` is posted.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::Value;
use warden_client::mcp::McpSession;
use warden_client::{AgentClient, TaskRequest};

use super::{Warden, warden};

pub struct RugPull {
    child: Child,
    pub port: u16,
}

impl RugPull {
    /// Warden in front of `server` (as upstream `notes`, every tool permitted by policy; `extra`
    /// appended to the config), and an initialised session whose task may call `tools`.
    pub fn behind_warden(
        &self,
        extra: &str,
        tools: &[&str],
    ) -> (tempfile::TempDir, Warden, McpSession) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("policies")).unwrap();
        std::fs::write(
            dir.path().join("policies/p.cedar"),
            r#"permit (principal, action == Warden::Action::"call_tool", resource in Warden::ToolServer::"notes");"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("warden.toml"),
            format!(
                "[server]\nlisten = \"127.0.0.1:0\"\n[policy]\ndir = \"policies\"\nwatch = false\n\
                 [upstreams.notes]\nurl = \"http://127.0.0.1:{}/mcp\"\n{extra}",
                self.port
            ),
        )
        .unwrap();
        let w = Warden::start_with(
            warden()
                .args(["serve", "--config"])
                .arg(dir.path().join("warden.toml"))
                .env("WARDEN_DATA_DIR", dir.path().join("data")),
        );
        let key = w.register_agent("assistant", true);
        let client = AgentClient::new(&w.url, "assistant", key);
        let url = format!("{}/mcp/notes", w.url);
        let token = client
            .token(
                &url,
                &tools
                    .iter()
                    .fold(TaskRequest::new("t-1", "notes"), |t, tool| {
                        t.call_tool(&format!("notes/{tool}"))
                    }),
            )
            .unwrap();
        let mut s = McpSession::new(client, &url, &token.access_token, "2025-11-25");
        s.initialize().unwrap();
        (dir, w, s)
    }

    pub fn start() -> Self {
        let script = super::repo_root().join("crates/warden-cli/tests/support/rugpull_server.py");
        let mut child = Command::new("python3")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().strip_prefix("PORT ").unwrap().parse().unwrap();
        Self { child, port }
    }

    pub fn post(&self, path: &str) -> Value {
        let mut r = ureq::post(&format!("http://127.0.0.1:{}{path}", self.port))
            .send("")
            .unwrap();
        serde_json::from_reader(r.body_mut().as_reader()).unwrap()
    }

    pub fn calls(&self) -> u64 {
        self.post("/stats")["calls"].as_u64().unwrap()
    }
}

impl Drop for RugPull {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
