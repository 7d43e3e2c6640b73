//! Issue 3 end to end, the flows that must work: the real `warden serve`, real HTTP on
//! loopback, real signatures. Agents are registered through the admin API with the bootstrap
//! credential; tokens are obtained with warden-client exactly as an agent would.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
mod oauth_env;

use oauth_env::*;
use serde_json::{Map, Value, json};
use warden_client::{AdminClient, TaskRequest};
use warden_identity::token::{AccessClaims, GrantedAction};
use warden_identity::{KeyPair, jws};

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
    let (s, _, text) = env.post_token_form(
        &lead,
        &format!(
            "{CC_FORM}&client_assertion={}&resource={}&authorization_details={}",
            lead.assertion(),
            urlenc(&env.crm()),
            urlenc(&body.to_string())
        ),
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
