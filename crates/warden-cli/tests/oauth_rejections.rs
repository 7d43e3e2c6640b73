//! Issue 3 end to end, everything that must be refused: each rejection case of the issue is
//! provoked against the real `warden serve` and must fail with the right OAuth error, and bad
//! input to the token endpoint must get RFC 6749 error JSON, never a 500.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
mod oauth_env;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use oauth_env::*;
use serde_json::{Map, Value, json};
use warden_client::AgentClient;
use warden_identity::token::{AccessClaims, sign_access_token};
use warden_identity::{KeyPair, jws};

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
            "{CC_FORM}&client_assertion={a}&resource={}&authorization_details={}",
            urlenc(&env.crm()),
            urlenc(&Env::task(&["crm/search"]).authorization_details())
        )
    };
    let post = |body: String| env.post_token_form(&lead, &body);
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
fn bad_input_to_the_token_endpoint_gets_rfc6749_errors_never_500() {
    let env = Env::start();
    let ct = ("Content-Type", "application/x-www-form-urlencoded");
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "invalid_request"),
        (
            "grant_type=password&username=a&password=b".into(),
            "unsupported_grant_type",
        ),
        ("grant_type=client_credentials".into(), "invalid_client"),
        (
            "grant_type=client_credentials&client_secret=x".into(),
            "invalid_client",
        ),
        (
            "grant_type=client_credentials&grant_type=client_credentials".into(),
            "invalid_request",
        ),
        (
            format!("{CC_FORM}&client_assertion=not.a.jwt"),
            "invalid_client",
        ),
        (
            format!("{CC_FORM}&client_assertion=%00%FF"),
            "invalid_client",
        ),
        (
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange".into(),
            "invalid_request",
        ),
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
        let body = format!("{CC_FORM}&client_assertion={}{extra}", lead.assertion());
        let (s, _, text) = env.post_token_form(&lead, &body);
        assert_eq!(s, 400, "{extra}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["error"], want, "{extra}: {text}");
    }
    let (s, _) = env.warden.get("/oauth/token");
    assert_eq!(s, 405);
}
