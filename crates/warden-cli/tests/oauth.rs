//! Issue 3 end to end: the real `warden serve`, real HTTP on loopback, real signatures.
//! Agents are registered through the admin API with the bootstrap credential; tokens are
//! obtained with warden-client exactly as an agent would; every rejection case of the issue
//! is provoked and must fail with the right OAuth error.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use common::Warden;
use serde_json::{Map, Value, json};
use warden_client::{AdminClient, AgentClient, ClientError, TaskRequest, TestIdp};
use warden_core::AutonomyLevel;
use warden_identity::token::{AccessClaims, GrantedAction, sign_access_token};
use warden_identity::{KeyPair, jws};

const POLICIES: &str = r#"
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

struct Env {
    warden: Warden,
    admin: AdminClient,
    idp: TestIdp,
    dir: tempfile::TempDir,
    keys: std::collections::HashMap<String, KeyPair>,
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

impl Env {
    fn start() -> Self {
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
[upstreams.mail]
"#,
        );
        let warden = Warden::start(
            &["--config", dir.path().join("warden.toml").to_str().unwrap()],
            &dir.path().join("data"),
        );
        let secret = warden
            .stdout
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("wdn_admin_"))
            .expect("the bootstrap secret is shown at first start")
            .to_owned();
        let admin = AdminClient::new(&warden.url, &secret);
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

    fn register(&mut self, id: &str, dpop: bool) {
        let k = KeyPair::generate();
        self.admin
            .create_agent(
                id,
                id,
                &["alice@example.com".to_owned()],
                "test",
                AutonomyLevel::Junior,
                dpop,
                &k.public_jwk(),
            )
            .unwrap();
        self.keys.insert(id.to_owned(), k);
    }

    fn client(&self, id: &str) -> AgentClient {
        AgentClient::new(&self.warden.url, id, self.keys[id].clone())
    }

    fn crm(&self) -> String {
        format!("{}/mcp/crm", self.warden.url)
    }

    fn task(tools: &[&str]) -> TaskRequest {
        tools
            .iter()
            .fold(TaskRequest::new("t-1", "tests"), |t, tool| {
                t.call_tool(tool)
            })
    }

    /// Warden's current signing key, read from the data dir (tests only: to forge tokens
    /// that differ from a real one in exactly one claim).
    fn server_key(&self) -> KeyPair {
        let keys = self.dir.path().join("data/keys");
        let mut files: Vec<_> = std::fs::read_dir(keys)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        KeyPair::read_private(files.last().unwrap()).unwrap()
    }

    fn user_token(&self, sub: &str, aud: &str, exp_in: i64) -> String {
        self.idp.user_token(sub, aud, exp_in)
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn code(r: Result<impl std::fmt::Debug, ClientError>) -> String {
    match r {
        Err(e) => e.code().unwrap_or("(no code)").to_owned(),
        Ok(v) => panic!("expected a refusal, got {v:?}"),
    }
}

fn claims_of(token: &str) -> AccessClaims {
    let v = jws::peek(token).unwrap();
    serde_json::from_value(Value::Object(v.claims)).unwrap()
}

fn tools(t: &warden_client::TokenResponse) -> Vec<String> {
    t.granted().into_iter().map(|a| a.resource).collect()
}

#[test]
fn client_credentials_issue_a_task_scoped_dpop_bound_token() {
    let env = Env::start();
    let lead = env.client("lead");
    // crm/delete is not permitted, mail/send is not on this resource: both left out.
    let t = lead
        .token(
            &env.crm(),
            &Env::task(&["crm/search", "crm/update", "crm/delete", "mail/send"]),
        )
        .unwrap();
    assert_eq!(t.token_type, "DPoP");
    assert_eq!(tools(&t), ["crm/search", "crm/update"]);
    assert_eq!(t.refused.len(), 2, "{:?}", t.refused);
    assert!(t.expires_in <= 120, "junior lifetime from config");
    let c = claims_of(&t.access_token);
    assert_eq!(c.iss, env.warden.url);
    assert_eq!(c.sub, "lead");
    assert_eq!(c.client_id, "lead");
    assert_eq!(c.aud, env.crm());
    assert_eq!(c.sponsor, ["alice@example.com"]);
    assert_eq!(
        c.cnf.as_ref().unwrap().jkt,
        env.keys["lead"].public_jwk().kid
    );
    assert_eq!(c.task().unwrap().task_id, "t-1");
    // The header says at+jwt, EdDSA, and Warden's kid from the JWKS.
    let h = jws::peek(&t.access_token).unwrap().header;
    assert_eq!(h["typ"], "at+jwt");
    assert_eq!(h["alg"], "EdDSA");
    let (_, jwks) = env.warden.get("/.well-known/jwks.json");
    assert!(jwks.contains(h["kid"].as_str().unwrap()));

    // The resource check accepts it, with a fresh proof each time.
    let who = lead.whoami(&env.crm(), &t.access_token).unwrap();
    assert_eq!(who["agent"], "lead");
    assert_eq!(who["dpop_bound"], true);
    lead.whoami(&env.crm(), &t.access_token).unwrap();

    // Nothing grantable at all: an error, not an empty token.
    assert_eq!(
        code(lead.token(&env.crm(), &Env::task(&["crm/delete"]))),
        "invalid_authorization_details"
    );
    // Unconditional forbid: helpers may not export on their own task.
    assert_eq!(
        code(
            env.client("helper")
                .token(&env.crm(), &Env::task(&["crm/export"]))
        ),
        "invalid_authorization_details"
    );
}

#[test]
fn metadata_documents_describe_the_server_and_every_resource() {
    let env = Env::start();
    let (s, body) = env.warden.get("/.well-known/oauth-authorization-server");
    assert_eq!(s, 200);
    let m: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(m["issuer"], env.warden.url);
    assert_eq!(
        m["token_endpoint"],
        format!("{}/oauth/token", env.warden.url)
    );
    assert_eq!(m["dpop_signing_alg_values_supported"], json!(["EdDSA"]));
    for (path, name) in [("/mcp", "all tool servers"), ("/mcp/crm", "CRM")] {
        let (s, body) = env
            .warden
            .get(&format!("/.well-known/oauth-protected-resource{path}"));
        assert_eq!(s, 200, "{path}");
        let r: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(r["resource"], format!("{}{path}", env.warden.url));
        assert_eq!(r["authorization_servers"][0], env.warden.url);
        assert_eq!(r["resource_name"], name);
    }
    let (s, _) = env
        .warden
        .get("/.well-known/oauth-protected-resource/mcp/nope");
    assert_eq!(s, 404);
    // A request without a token is told where the metadata is (RFC 9728 §5.1).
    let url = format!(
        "{}/oauth/whoami?resource={}",
        env.warden.url,
        env.crm().replace(':', "%3A").replace('/', "%2F")
    );
    let resp = env.warden.agent.get(&url).call().unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let challenge = resp.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.contains("/.well-known/oauth-protected-resource/mcp/crm"),
        "{challenge}"
    );
}

fn forge(env: &Env, edit: impl FnOnce(&mut AccessClaims)) -> String {
    let t = env
        .client("lead")
        .token(&env.crm(), &Env::task(&["crm/search"]))
        .unwrap();
    let mut c = claims_of(&t.access_token);
    edit(&mut c);
    sign_access_token(&env.server_key(), &c).unwrap()
}

#[test]
fn the_resource_check_refuses_every_broken_token() {
    let env = Env::start();
    let lead = env.client("lead");
    let check = |token: &str| code(lead.whoami(&env.crm(), token));
    let n = now();
    assert_eq!(check(&forge(&env, |c| c.exp = n - 1)), "invalid_token");
    assert_eq!(check(&forge(&env, |c| c.iat = n + 600)), "invalid_token");
    assert_eq!(
        check(&forge(&env, |c| c.aud = format!("{}/mcp/mail", env.warden.url))),
        "invalid_token"
    );
    assert_eq!(
        check(&forge(&env, |c| c.iss = "https://evil.example".into())),
        "invalid_token"
    );

    let good = lead
        .token(&env.crm(), &Env::task(&["crm/search"]))
        .unwrap()
        .access_token;
    let parts: Vec<&str> = good.split('.').collect();
    // alg none, with and without a signature.
    let none_h = B64.encode(r#"{"alg":"none","typ":"at+jwt"}"#);
    assert_eq!(check(&format!("{none_h}.{}.", parts[1])), "invalid_token");
    assert_eq!(
        check(&format!("{none_h}.{}.AAAA", parts[1])),
        "invalid_token"
    );
    // HS256 "signed" with Warden's public key as the HMAC secret.
    let kid = jws::peek(&good).unwrap().header["kid"].clone();
    let hs_h = B64.encode(json!({"alg": "HS256", "typ": "at+jwt", "kid": kid}).to_string());
    let hs_input = format!("{hs_h}.{}", parts[1]);
    let mac = hmac_sha256(
        &B64.decode(env.server_key().public_jwk().x).unwrap(),
        hs_input.as_bytes(),
    );
    assert_eq!(
        check(&format!("{hs_input}.{}", B64.encode(mac))),
        "invalid_token"
    );
    // Tampered payload: another task.
    let mut c: Map<String, Value> = jws::peek(&good).unwrap().claims;
    c.insert("sub".into(), json!("root"));
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        B64.encode(Value::Object(c).to_string()),
        parts[2]
    );
    assert_eq!(check(&tampered), "invalid_token");
    // The untouched token still works (none of the above poisoned the cache).
    lead.whoami(&env.crm(), &good).unwrap();
}

/// HMAC-SHA256 (RFC 2104), enough to forge the classic HS256-with-public-key token.
fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut k = [0u8; 64];
    k[..key.len()].copy_from_slice(key);
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new()
        .chain_update(&ipad)
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(&opad)
        .chain_update(inner)
        .finalize()
        .to_vec()
}

#[test]
fn replays_and_foreign_dpop_keys_are_refused() {
    let env = Env::start();
    let lead = env.client("lead");
    // A replayed client assertion.
    let assertion = lead.assertion();
    let form = |a: &str| {
        format!(
            "grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={a}&resource={}&authorization_details={}",
            urlenc(&env.crm()),
            urlenc(&Env::task(&["crm/search"]).authorization_details())
        )
    };
    let endpoint = format!("{}/oauth/token", env.warden.url);
    let post = |body: String| {
        let p = lead.proof("POST", &endpoint, None).unwrap();
        env.warden.post(
            "/oauth/token",
            &body,
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("DPoP", &p),
            ],
        )
    };
    assert_eq!(post(form(&assertion)).0, 200);
    let (s, _, body) = post(form(&assertion));
    assert_eq!(s, 401, "{body}");
    assert!(
        body.contains("invalid_client") && body.contains("already used"),
        "{body}"
    );

    // A replayed DPoP proof on a resource request.
    let token = lead
        .token(&env.crm(), &Env::task(&["crm/search"]))
        .unwrap()
        .access_token;
    let url = format!(
        "{}/oauth/whoami?resource={}",
        env.warden.url,
        urlenc(&env.crm())
    );
    let proof = lead.proof("GET", &url, Some(&token)).unwrap();
    let call = |proof: &str| {
        env.warden
            .agent
            .get(&url)
            .header("Authorization", format!("DPoP {token}"))
            .header("DPoP", proof)
            .call()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(call(&proof), 200);
    assert_eq!(call(&proof), 401, "the same proof twice");
    // A proof by another key (token theft): cnf.jkt does not match.
    let thief = AgentClient::new(&env.warden.url, "lead", KeyPair::generate());
    assert_eq!(call(&thief.proof("GET", &url, Some(&token)).unwrap()), 401);
    // No proof at all for a bound token.
    let bare = env
        .warden
        .agent
        .get(&url)
        .header("Authorization", format!("Bearer {token}"))
        .call()
        .unwrap();
    assert_eq!(bare.status().as_u16(), 401);
    // A proof for another URL or method.
    assert_eq!(call(&lead.proof("POST", &url, Some(&token)).unwrap()), 401);
    assert_eq!(
        call(
            &lead
                .proof("GET", "http://127.0.0.1:1/other", Some(&token))
                .unwrap()
        ),
        401
    );
    // The token endpoint demands a proof from DPoP agents, and binds none for opt-outs.
    let no_proof = lead.clone().with_dpop_key(None);
    assert_eq!(
        code(no_proof.token(&env.crm(), &Env::task(&["crm/search"]))),
        "invalid_dpop_proof"
    );
}

fn urlenc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn suspended_revoked_and_unknown_agents_get_nothing_and_lose_their_tokens() {
    let env = Env::start();
    let lead = env.client("lead");
    let task = Env::task(&["crm/search"]);
    let token = lead.token(&env.crm(), &task).unwrap().access_token;
    lead.whoami(&env.crm(), &token).unwrap();

    env.admin.set_state("lead", "suspend", "test").unwrap();
    assert_eq!(code(lead.whoami(&env.crm(), &token)), "invalid_token");
    assert_eq!(code(lead.token(&env.crm(), &task)), "invalid_client");
    env.admin.set_state("lead", "resume", "test").unwrap();
    lead.whoami(&env.crm(), &token).unwrap();

    env.admin.set_state("lead", "revoke", "test").unwrap();
    assert_eq!(code(lead.whoami(&env.crm(), &token)), "invalid_token");
    assert_eq!(code(lead.token(&env.crm(), &task)), "invalid_client");

    let ghost = AgentClient::new(&env.warden.url, "ghost", KeyPair::generate());
    assert_eq!(code(ghost.token(&env.crm(), &task)), "invalid_client");
    // A registered id signed with a key that is not its own.
    let impostor = AgentClient::new(&env.warden.url, "helper", KeyPair::generate());
    assert_eq!(code(impostor.token(&env.crm(), &task)), "invalid_client");
}

#[test]
fn delegation_narrows_nests_act_and_dies_with_its_parent() {
    let env = Env::start();
    let (lead, helper, sub) = (env.client("lead"), env.client("helper"), env.client("sub"));
    let parent = lead
        .token(
            &env.crm(),
            &Env::task(&["crm/search", "crm/update", "crm/export"]),
        )
        .unwrap();
    // Everything the parent may pass on and the child may do; export is allowed to the
    // helper only because it is delegated (context.delegation.depth > 0).
    let child = helper.exchange(&parent.access_token, None).unwrap();
    assert_eq!(
        child.issued_token_type.as_deref(),
        Some("urn:ietf:params:oauth:token-type:access_token")
    );
    assert_eq!(tools(&child), ["crm/export", "crm/search", "crm/update"]);
    let c = claims_of(&child.access_token);
    let p = claims_of(&parent.access_token);
    assert_eq!(c.sub, "lead");
    assert_eq!(c.client_id, "helper");
    assert_eq!(c.act.as_ref().unwrap().sub, "helper");
    assert_eq!(c.depth, 1);
    assert!(c.exp <= p.exp);
    assert_eq!(c.parents, std::slice::from_ref(&p.jti));
    let who = helper.whoami(&env.crm(), &child.access_token).unwrap();
    assert_eq!(who["delegated_by"], json!(["lead"]));

    // Narrowed again, nested act.
    let grand = sub
        .exchange(
            &child.access_token,
            Some(&TaskRequest::new("t-1", "").call_tool("crm/search")),
        )
        .unwrap();
    assert_eq!(tools(&grand), ["crm/search"]);
    let g = claims_of(&grand.access_token);
    assert_eq!(g.act.as_ref().unwrap().chain(), ["sub", "helper"]);
    assert_eq!(g.depth, 2);

    // Widening is refused, even for an action the child's own policy allows.
    assert_eq!(
        code(sub.exchange(
            &child.access_token,
            Some(&TaskRequest::new("t-1", "").call_tool("mail/send"))
        )),
        "invalid_authorization_details"
    );
    // Depth over the limit (2 in this config).
    assert_eq!(
        code(env.client("deep").exchange(&grand.access_token, None)),
        "invalid_request"
    );
    // Not to itself, not back up the chain.
    assert_eq!(
        code(helper.exchange(&child.access_token, None)),
        "invalid_request"
    );
    assert_eq!(
        code(lead.exchange(&child.access_token, None)),
        "invalid_request"
    );

    // Revoking the root token kills the whole subtree at once.
    sub.whoami(&env.crm(), &grand.access_token).unwrap();
    env.admin.revoke("token", &p.jti, "test").unwrap();
    assert_eq!(
        code(helper.whoami(&env.crm(), &child.access_token)),
        "invalid_token"
    );
    assert_eq!(
        code(sub.whoami(&env.crm(), &grand.access_token)),
        "invalid_token"
    );
    assert_eq!(
        code(env.client("deep").exchange(&child.access_token, None)),
        "invalid_grant"
    );

    // Revoking a task kills every token of it; suspending the root agent kills the chain.
    let parent2 = lead
        .token(
            &env.crm(),
            &TaskRequest::new("t-2", "").call_tool("crm/search"),
        )
        .unwrap();
    let child2 = helper.exchange(&parent2.access_token, None).unwrap();
    env.admin.set_state("lead", "suspend", "test").unwrap();
    assert_eq!(
        code(helper.whoami(&env.crm(), &child2.access_token)),
        "invalid_token"
    );
    env.admin.set_state("lead", "resume", "test").unwrap();
    helper.whoami(&env.crm(), &child2.access_token).unwrap();
    env.admin.revoke("task", "t-2", "test").unwrap();
    assert_eq!(
        code(helper.whoami(&env.crm(), &child2.access_token)),
        "invalid_token"
    );
}

#[test]
fn on_behalf_of_takes_a_verified_user_token() {
    let env = Env::start();
    let lead = env.client("lead");
    let task = Env::task(&["crm/mine", "crm/search"]);
    let t = lead
        .on_behalf_of(&env.user_token("alice", "warden", 60), &env.crm(), &task)
        .unwrap();
    assert_eq!(tools(&t), ["crm/mine", "crm/search"]);
    let c = claims_of(&t.access_token);
    assert_eq!(c.sub, "alice");
    assert_eq!(c.act.as_ref().unwrap().sub, "lead");
    assert_eq!(c.on_behalf_of(), Some("alice"));
    let who = lead.whoami(&env.crm(), &t.access_token).unwrap();
    assert_eq!(who["on_behalf_of"], "alice");
    // For bob the alice-only permit does not apply.
    let t = lead
        .on_behalf_of(&env.user_token("bob", "warden", 60), &env.crm(), &task)
        .unwrap();
    assert_eq!(tools(&t), ["crm/search"]);
    // Claiming a user without their token is refused.
    let mut claimed = TaskRequest::new("t-1", "");
    claimed.actions.push(GrantedAction {
        action: warden_core::ActionKind::CallTool,
        resource: "crm/mine".into(),
    });
    let body = json!([{"type": "warden_task", "task_id": "t", "actions": claimed.actions, "on_behalf_of": "alice"}]);
    let endpoint = format!("{}/oauth/token", env.warden.url);
    let (s, _, text) = env.warden.post(
        "/oauth/token",
        &format!(
            "grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={}&resource={}&authorization_details={}",
            lead.assertion(),
            urlenc(&env.crm()),
            urlenc(&body.to_string())
        ),
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("DPoP", &lead.proof("POST", &endpoint, None).unwrap()),
        ],
    );
    assert_eq!(s, 400, "{text}");
    assert!(text.contains("invalid_authorization_details"), "{text}");
    // Wrong audience, expired, forged user tokens.
    for bad in [
        env.user_token("alice", "someone-else", 60),
        env.user_token("alice", "warden", -10),
        {
            let k = KeyPair::generate();
            let c = json!({"iss": "https://idp.test", "sub": "alice", "aud": "warden", "exp": now() + 60});
            jws::sign(k.signing_key(), &Map::new(), c.as_object().unwrap())
        },
    ] {
        assert_eq!(
            code(lead.on_behalf_of(&bad, &env.crm(), &task)),
            "invalid_grant"
        );
    }
}

#[test]
fn bearer_agents_get_bearer_tokens_and_are_shown_as_weaker() {
    let env = Env::start();
    let plain = env.client("plain").with_dpop_key(None);
    // plain has no permit of its own: nothing is grantable.
    assert_eq!(
        code(plain.token(&env.crm(), &Env::task(&["crm/search"]))),
        "invalid_authorization_details"
    );
    let shown = common::warden()
        .args(["agent", "show", "plain", "--server", &env.warden.url])
        .env("WARDEN_ADMIN_TOKEN", env.admin_secret())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&shown.stdout);
    assert!(out.contains("bearer (weaker: no DPoP)"), "{out}");
}

impl Env {
    fn admin_secret(&self) -> String {
        self.warden
            .stdout
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("wdn_admin_"))
            .unwrap()
            .to_owned()
    }
}

#[test]
fn bad_input_to_the_token_endpoint_gets_rfc6749_errors_never_500() {
    let env = Env::start();
    let ct = ("Content-Type", "application/x-www-form-urlencoded");
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "invalid_request"),
        ("grant_type=password&username=a&password=b".into(), "unsupported_grant_type"),
        ("grant_type=client_credentials".into(), "invalid_client"),
        ("grant_type=client_credentials&client_secret=x".into(), "invalid_client"),
        ("grant_type=client_credentials&grant_type=client_credentials".into(), "invalid_request"),
        (
            "grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=not.a.jwt".into(),
            "invalid_client",
        ),
        (
            "grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=%00%FF".into(),
            "invalid_client",
        ),
        ("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange".into(), "invalid_request"),
        ("%%%%&&&==".into(), "invalid_request"),
    ];
    for (body, want) in &cases {
        let (s, headers, text) = env.warden.post("/oauth/token", body, &[ct]);
        assert!(s == 400 || s == 401, "{body}: {s} {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["error"], *want, "{body}: {text}");
        assert!(v["error_description"].is_string());
        assert!(
            headers
                .iter()
                .any(|(k, v)| k == "cache-control" && v == "no-store")
        );
    }
    // Wrong content type, JSON body, huge body.
    let (s, _, text) = env.warden.post("/oauth/token", "{}", &[]);
    assert_eq!(s, 400, "{text}");
    // Too large: refused with 400 before it is all read (the client may see the
    // connection close instead while still sending).
    let big = format!("grant_type={}", "a".repeat(2 << 20));
    if let Ok(r) = env
        .warden
        .agent
        .post(format!("{}/oauth/token", env.warden.url))
        .header(ct.0, ct.1)
        .send(&big)
    {
        assert_eq!(r.status().as_u16(), 400);
    }
    // Well-authenticated requests with broken parameters.
    let lead = env.client("lead");
    let endpoint = format!("{}/oauth/token", env.warden.url);
    for (extra, want) in [
        ("", "invalid_target"),
        (
            "&resource=http%3A%2F%2Fevil.example%2Fmcp",
            "invalid_target",
        ),
        ("&resource=RES", "invalid_authorization_details"),
        (
            "&resource=RES&authorization_details=%5B",
            "invalid_authorization_details",
        ),
        (
            "&resource=RES&authorization_details=%5B%5D",
            "invalid_authorization_details",
        ),
        (
            "&resource=RES&authorization_details=%5B%7B%22type%22%3A%22other%22%7D%5D",
            "invalid_authorization_details",
        ),
        (
            "&resource=RES&authorization_details=%5B%7B%22type%22%3A%22warden_task%22%2C%22task_id%22%3A%22%20bad%20id%22%7D%5D",
            "invalid_authorization_details",
        ),
    ] {
        let extra = extra.replace("RES", &urlenc(&env.crm()));
        let body = format!(
            "grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={}{extra}",
            lead.assertion()
        );
        let (s, _, text) = env.warden.post(
            "/oauth/token",
            &body,
            &[ct, ("DPoP", &lead.proof("POST", &endpoint, None).unwrap())],
        );
        assert_eq!(s, 400, "{extra}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["error"], want, "{extra}: {text}");
    }
    let (s, _) = env.warden.get("/oauth/token");
    assert_eq!(s, 405);
}

#[test]
fn admin_api_is_never_open_and_cli_changes_reach_the_server() {
    let env = Env::start();
    // No credential, a wrong one, a malformed one.
    for auth in [None, Some("Bearer wdn_admin_wrong"), Some("Basic YWRtaW4=")] {
        let mut req = env
            .warden
            .agent
            .get(format!("{}/admin/v1/agents", env.warden.url));
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        assert_eq!(req.call().unwrap().status().as_u16(), 401, "{auth:?}");
    }
    assert_eq!(env.admin.whoami().unwrap()["name"], "admin");
    // A second credential works and is attributed by name.
    let ops = AdminClient::new(&env.warden.url, &env.admin.create_admin("ops").unwrap());
    assert_eq!(ops.whoami().unwrap()["name"], "ops");
    assert_eq!(ops.agents().unwrap().len(), 5);

    // The CLI through the API: suspending takes effect on the very next request.
    let lead = env.client("lead");
    let token = lead
        .token(&env.crm(), &Env::task(&["crm/search"]))
        .unwrap()
        .access_token;
    let out = common::warden()
        .args([
            "agent",
            "suspend",
            "lead",
            "--reason",
            "incident 7",
            "--server",
            &env.warden.url,
        ])
        .env("WARDEN_ADMIN_TOKEN", env.admin_secret())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(code(lead.whoami(&env.crm(), &token)), "invalid_token");
    let log = env.warden.stderr.lock().unwrap().clone();
    assert!(
        log.contains("admin=admin") && log.contains("incident 7"),
        "{log}"
    );

    // The CLI on the store directly (no --server): the server picks it up within a second.
    let out = common::warden()
        .args(["agent", "resume", "lead", "--data-dir"])
        .arg(env.dir.path().join("data"))
        .env_remove("WARDEN_SERVER")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while lead.whoami(&env.crm(), &token).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "resume never reached the server"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    // `warden revoke` and `warden agent token`.
    let key_file = env.dir.path().join("lead.jwk");
    env.keys["lead"].write_private(&key_file).unwrap();
    let out = common::warden()
        .args(["agent", "token", "lead", "--key"])
        .arg(&key_file)
        .args([
            "--resource",
            &env.crm(),
            "--task",
            "cli-task",
            "--call",
            "crm/search",
            "--server",
            &env.warden.url,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli_token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    lead.whoami(&env.crm(), &cli_token).unwrap();
    let out = common::warden()
        .args([
            "revoke",
            "--task",
            "cli-task",
            "--reason",
            "done",
            "--server",
            &env.warden.url,
        ])
        .env("WARDEN_ADMIN_TOKEN", env.admin_secret())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(code(lead.whoami(&env.crm(), &cli_token)), "invalid_token");
    // The revocation is stored and listed.
    assert_eq!(
        env.admin.revocations().unwrap().as_array().unwrap().len(),
        1
    );
}

/// Over random delegation chains (random agents, random requested subsets, some of them
/// widening): every issued token's actions are a subset of every ancestor's, no `exp`
/// outlives an ancestor's, depth never passes the limit, and a widening request is refused.
#[test]
fn property_delegation_never_widens_or_outlives() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    let env = Env::start();
    const TOOLS: [&str; 4] = ["crm/search", "crm/update", "crm/export", "crm/delete"];
    let hop = (
        0usize..4,
        proptest::collection::vec(any::<bool>(), 4),
        any::<bool>(),
    );
    let strategy = (
        proptest::collection::vec(any::<bool>(), 4),
        proptest::collection::vec(hop, 1..5),
    );
    let mut runner = TestRunner::new(Config {
        cases: 24,
        failure_persistence: None,
        ..Config::default()
    });
    let agents = ["lead", "helper", "sub", "deep"];
    let pick = |mask: &[bool]| -> Vec<&'static str> {
        TOOLS
            .iter()
            .zip(mask)
            .filter(|(_, m)| **m)
            .map(|(t, _)| *t)
            .collect()
    };
    runner
        .run(&strategy, |(root_mask, hops)| {
            let mut wanted = pick(&root_mask);
            wanted.push("crm/search"); // lead can always get at least this
            let root = env
                .client("lead")
                .token(&env.crm(), &Env::task(&wanted))
                .unwrap();
            let mut chain: Vec<AccessClaims> = vec![claims_of(&root.access_token)];
            let mut token = root.access_token;
            for (who, mask, explicit) in hops {
                let child = agents[who];
                let parent = chain.last().unwrap().clone();
                let parent_actions = parent.task().unwrap().actions.clone();
                let request = explicit.then(|| {
                    pick(&mask)
                        .iter()
                        .fold(TaskRequest::new("t-1", ""), |t, tool| t.call_tool(tool))
                });
                let widening = request
                    .as_ref()
                    .is_some_and(|r| r.actions.iter().any(|a| !parent_actions.contains(a)));
                let in_chain = parent.agents().contains(&child);
                let r = env.client(child).exchange(&token, request.as_ref());
                match r {
                    Ok(t) => {
                        prop_assert!(!widening, "a widening request was granted");
                        prop_assert!(!in_chain, "{child} delegated to itself");
                        let c = claims_of(&t.access_token);
                        prop_assert!(c.depth <= 2);
                        let mine = &c.task().unwrap().actions;
                        for ancestor in &chain {
                            let theirs = &ancestor.task().unwrap().actions;
                            prop_assert!(
                                mine.iter().all(|a| theirs.contains(a)),
                                "{mine:?} not within {theirs:?}"
                            );
                            prop_assert!(c.exp <= ancestor.exp);
                        }
                        // The resource check agrees with the token.
                        let who = env
                            .client(child)
                            .whoami(&env.crm(), &t.access_token)
                            .unwrap();
                        prop_assert_eq!(who["agent"].as_str(), Some(child));
                        chain.push(c);
                        token = t.access_token;
                    }
                    Err(e) => {
                        let code = e.code().unwrap_or("").to_owned();
                        prop_assert!(
                            ["invalid_authorization_details", "invalid_request"]
                                .contains(&code.as_str()),
                            "unexpected refusal: {e}"
                        );
                        if parent.depth + 1 > 2 || in_chain {
                            prop_assert_eq!(code.as_str(), "invalid_request");
                        }
                        break;
                    }
                }
            }
            Ok(())
        })
        .unwrap();
}
