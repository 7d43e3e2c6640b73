//! The MCP server that pulls the rug (`tests/support/rugpull_server.py`): one tool whose
//! description changes (to carry hidden instructions) when `/rugpull` is posted.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

pub struct RugPull {
    child: Child,
    pub port: u16,
}

impl RugPull {
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
