//! The world of the OAuth end-to-end tests: a running Warden with a small policy set, five
//! agents registered through the admin API, a test IdP, and helpers.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;

use serde_json::Value;
use warden_client::{AdminClient, AgentClient, ClientError, TaskRequest, TestIdp};
use warden_identity::token::AccessClaims;
use warden_identity::{KeyPair, jws};

use crate::common::Warden;

/// A client-credentials form with `private_key_jwt`, up to the assertion itself.
pub const CC_FORM: &str = "grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer";

pub const POLICIES: &str = r#"
@id("lead-tools")
permit (principal == Warden::Agent::"lead", action == Warden::Action::"call_tool", resource)
when { [Warden::Tool::"crm/search", Warden::Tool::"crm/update", Warden::Tool::"crm/export",
        Warden::Tool::"mail/send"].contains(resource) };

@id("helper-tools")
permit (principal == Warden::Agent::"helper", action == Warden::Action::"call_tool", resource)
when { [Warden::Tool::"crm/search", Warden::Tool::"crm/update", Warden::Tool::"crm/export"].contains(resource) };

@id("sub-tools")
permit (principal == Warden::Agent::"sub", action == Warden::Action::"call_tool", resource)
when { [Warden::Tool::"crm/search", Warden::Tool::"crm/update"].contains(resource) };

@id("deep-tools")
permit (principal == Warden::Agent::"deep", action == Warden::Action::"call_tool", resource)
when { [Warden::Tool::"crm/search"].contains(resource) };

@id("helpers-only-when-delegated")
@reason("helpers export only on a delegated task")
forbid (principal == Warden::Agent::"helper", action == Warden::Action::"call_tool",
        resource == Warden::Tool::"crm/export")
unless { context.delegation.depth > 0 };

@id("for-alice")
permit (principal == Warden::Agent::"lead", action == Warden::Action::"call_tool",
        resource == Warden::Tool::"crm/mine")
when { context has on_behalf_of && context.on_behalf_of == Warden::User::"alice" };
"#;

pub struct Env {
    pub warden: Warden,
    pub admin: AdminClient,
    pub idp: TestIdp,
    pub dir: tempfile::TempDir,
    pub keys: std::collections::HashMap<String, KeyPair>,
}

pub fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

impl Env {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("policies")).unwrap();
        write(&dir.path().join("policies"), "p.cedar", POLICIES);
        let idp = TestIdp::new("https://idp.test");
        write(dir.path(), "idp.jwks.json", &idp.jwks().to_string());
        write(
            dir.path(),
            "warden.toml",
            r#"
[server]
listen = "127.0.0.1:0"
[policy]
dir = "policies"
watch = false
[inspection.pinning]
mode = "off"
[oauth]
max_delegation_depth = 2
[oauth.token_lifetime_secs]
junior = 120
[[oauth.identity_providers]]
issuer = "https://idp.test"
audience = "warden"
jwks_file = "idp.jwks.json"
[upstreams.crm]
name = "CRM"
url = "http://127.0.0.1:9/crm/mcp"
[upstreams.mail]
url = "http://127.0.0.1:9/mail/mcp"
"#,
        );
        let warden = Warden::start(
            &["--config", dir.path().join("warden.toml").to_str().unwrap()],
            &dir.path().join("data"),
        );
        let admin = warden.admin();
        let mut env = Self {
            warden,
            admin,
            idp,
            dir,
            keys: Default::default(),
        };
        for (id, dpop) in [
            ("lead", true),
            ("helper", true),
            ("sub", true),
            ("deep", true),
            ("plain", false),
        ] {
            env.register(id, dpop);
        }
        env
    }

    pub fn register(&mut self, id: &str, dpop: bool) {
        let k = self.warden.register_agent(id, dpop);
        self.keys.insert(id.to_owned(), k);
    }

    pub fn client(&self, id: &str) -> AgentClient {
        AgentClient::new(&self.warden.url, id, self.keys[id].clone())
    }

    pub fn crm(&self) -> String {
        format!("{}/mcp/crm", self.warden.url)
    }

    pub fn task(tools: &[&str]) -> TaskRequest {
        tools
            .iter()
            .fold(TaskRequest::new("t-1", "tests"), |t, tool| {
                t.call_tool(tool)
            })
    }

    /// Warden's current signing key, read from the data dir (tests only: to forge tokens
    /// that differ from a real one in exactly one claim).
    pub fn server_key(&self) -> KeyPair {
        let keys = self.dir.path().join("data/keys");
        let mut files: Vec<_> = std::fs::read_dir(keys)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        KeyPair::read_private(files.last().unwrap()).unwrap()
    }

    pub fn user_token(&self, sub: &str, aud: &str, exp_in: i64) -> String {
        self.idp.user_token(sub, aud, exp_in)
    }
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub fn code(r: Result<impl std::fmt::Debug, ClientError>) -> String {
    match r {
        Err(e) => e.code().unwrap_or("(no code)").to_owned(),
        Ok(v) => panic!("expected a refusal, got {v:?}"),
    }
}

pub fn claims_of(token: &str) -> AccessClaims {
    let v = jws::peek(token).unwrap();
    serde_json::from_value(Value::Object(v.claims)).unwrap()
}

pub fn tools(t: &warden_client::TokenResponse) -> Vec<String> {
    t.granted().into_iter().map(|a| a.resource).collect()
}

pub fn urlenc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Env {
    pub fn admin_secret(&self) -> String {
        self.warden.admin_secret()
    }
}

impl Env {
    /// POSTs a raw token-endpoint form as `client` (with its DPoP proof).
    pub fn post_token_form(
        &self,
        client: &AgentClient,
        body: &str,
    ) -> (u16, Vec<(String, String)>, String) {
        let endpoint = format!("{}/oauth/token", self.warden.url);
        let proof = client.proof("POST", &endpoint, None).unwrap();
        self.warden.post(
            "/oauth/token",
            body,
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("DPoP", &proof),
            ],
        )
    }
}
