//! The environment most gateway tests share: the demo tool servers (in-process, requiring
//! their own credential) behind the real `warden` binary with a small policy set, and three
//! registered agents (`assistant` and `other` with DPoP, `plain` with a bearer token).
#![allow(dead_code, clippy::indexing_slicing, clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Arc;

use warden_client::mcp::McpSession;
use warden_client::{AgentClient, TaskRequest};
use warden_identity::KeyPair;
use warden_testkit::{DemoOptions, DemoServer, Stats};

use super::{Warden, warden};

pub const UPSTREAM_SECRET: &str = "upstream-secret-123";

pub const POLICIES: &str = r#"
@id("assistant-crm")
@reason("the assistant reads contacts and logs call notes")
permit (principal == Warden::Agent::"assistant", action == Warden::Action::"call_tool", resource)
when { [Warden::Tool::"crm/read_contact", Warden::Tool::"crm/log_call_note",
        Warden::Tool::"crm/export_contacts"].contains(resource) };

@id("others-read-contacts")
permit (principal, action == Warden::Action::"call_tool", resource == Warden::Tool::"crm/read_contact")
when { [Warden::Agent::"other", Warden::Agent::"plain"].contains(principal) };

@id("assistant-small-transfers")
@reason("transfers up to 1000 are allowed")
permit (principal == Warden::Agent::"assistant", action == Warden::Action::"call_tool",
        resource == Warden::Tool::"finance/transfer_funds")
when { context.arguments has amount && context.arguments.amount <= 1000 };

@id("assistant-large-transfers")
@approval("transfers above 1000 need a finance approver")
permit (principal == Warden::Agent::"assistant", action == Warden::Action::"call_tool",
        resource == Warden::Tool::"finance/transfer_funds")
when { context.arguments has amount && context.arguments.amount > 1000 &&
       context.arguments.amount <= 10000 };

@id("assistant-handbook")
permit (principal == Warden::Agent::"assistant", action == Warden::Action::"read_resource",
        resource == Warden::McpResource::"docs/docs://handbook.md");

@id("transfer-cap")
@reason("no agent transfers more than 10000")
forbid (principal, action == Warden::Action::"call_tool", resource == Warden::Tool::"finance/transfer_funds")
when { context.arguments has amount && context.arguments.amount > 10000 };
"#;

pub const ARGUMENTS_SCHEMA: &str = r#"
namespace Warden {
  type Arguments = { "amount"?: Long, "to"?: String, "id"?: String, "seconds"?: Long };
}
"#;

pub struct Env {
    pub warden: Warden,
    pub demo: DemoServer,
    pub _rt: tokio::runtime::Runtime,
    pub _dir: tempfile::TempDir,
    pub keys: HashMap<String, KeyPair>,
}

impl Env {
    pub fn start() -> Self {
        Self::start_with("", "")
    }

    /// With more config (TOML appended to the shared file) and more policies.
    pub fn start_with(extra_config: &str, extra_policies: &str) -> Self {
        Self::start_with_env(extra_config, extra_policies, &[])
    }

    /// With more config, more policies and environment variables for the server.
    pub fn start_with_env(extra_config: &str, extra_policies: &str, vars: &[(&str, &str)]) -> Self {
        Self::start_full(extra_config, extra_policies, vars, None)
    }

    /// With `warden serve` started by `sh -c PRELUDE; exec warden serve …`: the prelude sets
    /// up the process (resource limits, ignored signals) before Warden runs.
    pub fn start_after(extra_config: &str, prelude: &str) -> Self {
        Self::start_full(extra_config, "", &[], Some(prelude))
    }

    fn start_full(
        extra_config: &str,
        extra_policies: &str,
        vars: &[(&str, &str)],
        prelude: Option<&str>,
    ) -> Self {
        let (rt, demo) = super::demo_server(
            "127.0.0.1:0",
            DemoOptions {
                require_authorization: Some(format!("Bearer {UPSTREAM_SECRET}")),
                json_response: false,
            },
        );
        let dir = tempfile::tempdir().unwrap();
        let policies = dir.path().join("policies");
        std::fs::create_dir(&policies).unwrap();
        std::fs::write(
            policies.join("p.cedar"),
            format!("{POLICIES}\n{extra_policies}"),
        )
        .unwrap();
        std::fs::write(policies.join("arguments.cedarschema"), ARGUMENTS_SCHEMA).unwrap();
        let mut config = String::from(
            "[inspection.pinning]\nmode = \"off\"\n[server]\nlisten = \"127.0.0.1:0\"\nmax_body_bytes = 65536\n[policy]\ndir = \"policies\"\nwatch = false\n\
             [audit]\nredact_keys = [\"account_number\"]\n[approvals]\ntimeout_secs = 2\n\
             [[limits]]\nname = \"call-notes\"\nkind = \"cap\"\nmatch = \"crm/log_call_note\"\nmax = 3\nwindow_secs = 3600\n",
        );
        for s in warden_testkit::SERVICES {
            config.push_str(&format!(
                "[upstreams.{s}]\nurl = \"{}\"\n[upstreams.{s}.credential]\nheader = \"Authorization\"\n\
                 prefix = \"Bearer \"\nsecret = {{ env = \"DEMO_UPSTREAM_TOKEN\" }}\n",
                demo.url(s)
            ));
        }
        config.push_str(extra_config);
        std::fs::write(dir.path().join("warden.toml"), config).unwrap();
        let mut cmd = match prelude {
            None => warden(),
            Some(p) => {
                let mut sh = std::process::Command::new("sh");
                sh.args(["-c", &format!("{p}; exec \"$0\" \"$@\""), super::WARDEN]);
                sh
            }
        };
        let warden = Warden::start_with(
            cmd.args(["serve", "--config"])
                .arg(dir.path().join("warden.toml"))
                .env("WARDEN_DATA_DIR", dir.path().join("data"))
                .env("DEMO_UPSTREAM_TOKEN", UPSTREAM_SECRET)
                .envs(vars.iter().copied()),
        );
        let keys = [("assistant", true), ("other", true), ("plain", false)]
            .into_iter()
            .map(|(id, dpop)| (id.to_owned(), warden.register_agent(id, dpop)))
            .collect();
        Self {
            warden,
            demo,
            _rt: rt,
            _dir: dir,
            keys,
        }
    }

    /// The server's data directory (`audit.db`, `warden.db`).
    pub fn data_dir(&self) -> std::path::PathBuf {
        self._dir.path().join("data")
    }

    /// Runs `warden ARGS --server URL` with the admin credential.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        warden()
            .args(args)
            .args(["--server", &self.warden.url])
            .env("WARDEN_ADMIN_TOKEN", self.warden.admin_secret())
            .output()
            .unwrap()
    }

    /// The audit trail's lifecycle events named `name` (as `warden audit query --json`
    /// lists them: `{"seq", "record": {...}}`), oldest first.
    pub fn audit_events(&self, name: &str) -> Vec<serde_json::Value> {
        self.audit_records("event")
            .into_iter()
            .filter(|r| r["record"]["event"] == name)
            .collect()
    }

    /// The audit trail's records of `kind` (`decision`, `outcome`, `event`), oldest first.
    pub fn audit_records(&self, kind: &str) -> Vec<serde_json::Value> {
        super::audit_query(&self.data_dir(), &["--kind", kind])
    }

    pub fn stats(&self) -> Arc<Stats> {
        Arc::clone(&self.demo.stats)
    }

    pub fn agent(&self, id: &str) -> AgentClient {
        AgentClient::new(&self.warden.url, id, self.keys[id].clone())
    }

    pub fn url(&self, upstream: &str) -> String {
        format!("{}/mcp/{upstream}", self.warden.url)
    }

    /// A session of `agent` on `upstream` with a token granting `tools` (names on it).
    pub fn session(
        &self,
        agent: &str,
        upstream: &str,
        tools: &[&str],
        protocol: &str,
    ) -> McpSession {
        let client = self.agent(agent);
        let task = tools
            .iter()
            .fold(TaskRequest::new("t-1", "mcp tests"), |t, tool| {
                t.call_tool(&format!("{upstream}/{tool}"))
            });
        let token = client.token(&self.url(upstream), &task).unwrap();
        McpSession::new(client, &self.url(upstream), &token.access_token, protocol)
    }
}
