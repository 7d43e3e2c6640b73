//! Fuzz targets for the credentials an agent presents: task tokens (JWS) with their DPoP
//! proofs. Besides "never a panic", the oracle is unforgeability: a token or proof that is
//! not byte-for-byte the one Warden's (or the agent's) key signed never verifies, however
//! it was mutated (signature malleability, non-canonical base64, header tricks).
//! `cargo test` replays `src/__fuzz__/` and runs random inputs for a second each;
//! `scripts/fuzz.sh` runs them coverage-guided. docs/SECURITY-TESTS.md.

use std::sync::Arc;

use crate::dpop::{DpopPolicy, proof};
use crate::revocation::Revocations;
use crate::token::{AccessClaims, Confirmation, TaskDetail, sign_access_token};
use crate::verifier::{Presentation, TokenVerifier};
use crate::{KeyPair, ServerKeys};

const ISSUER: &str = "http://127.0.0.1:8080";
const URL: &str = "http://127.0.0.1:8080/mcp/crm";
const NOW: i64 = 1_800_000_000;

/// Overwrites bytes of `valid` as `edits` say (pairs of position and byte), or, for an odd
/// first byte, takes `edits` as the whole text.
fn mutate(valid: &str, edits: &[u8]) -> String {
    let Some((&mode, edits)) = edits.split_first() else {
        return valid.to_owned();
    };
    if mode % 2 == 1 {
        return String::from_utf8_lossy(edits).into_owned();
    }
    let mut bytes = valid.as_bytes().to_vec();
    for pair in edits.chunks_exact(2) {
        let (Some(&at), Some(&b)) = (pair.first(), pair.get(1)) else {
            continue;
        };
        let i = usize::from(at) * bytes.len() / 256;
        match (mode / 2) % 3 {
            0 => {
                if let Some(slot) = bytes.get_mut(i) {
                    *slot = b;
                }
            }
            1 => bytes.insert(i, b),
            _ => {
                if i < bytes.len() {
                    bytes.remove(i);
                }
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

struct Setup {
    _dir: tempfile::TempDir,
    verifier: TokenVerifier,
    agent: KeyPair,
    token: String,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let keys = ServerKeys::load_or_create(dir.path(), NOW - 10).unwrap();
    let agent = KeyPair::generate();
    let claims = AccessClaims {
        iss: ISSUER.into(),
        sub: "agent-1".into(),
        aud: URL.into(),
        exp: NOW + 300,
        iat: NOW - 1,
        jti: "tok-1".into(),
        client_id: "agent-1".into(),
        authorization_details: vec![TaskDetail {
            kind: "warden_task".into(),
            task_id: "t-1".into(),
            purpose: String::new(),
            actions: Vec::new(),
            on_behalf_of: None,
        }],
        act: None,
        cnf: Some(Confirmation {
            jkt: agent.public_jwk().kid,
        }),
        autonomy: warden_core::AutonomyLevel::Junior,
        sponsor: vec!["alice@example.com".into()],
        depth: 0,
        parents: Vec::new(),
    };
    let token = sign_access_token(keys.current(), &claims).unwrap();
    let verifier = TokenVerifier::new(
        Arc::new(keys),
        ISSUER.into(),
        Arc::new(Revocations::new()),
        DpopPolicy::default(),
    );
    Setup {
        _dir: dir,
        verifier,
        agent,
        token,
    }
}

/// A task token and its DPoP proof, one of them mutated: it verifies only unchanged.
#[test]
fn task_token() {
    let s = setup();
    bolero::check!().for_each(|input: &[u8]| {
        let (proof_side, edits) = match input.split_first() {
            Some((&which, rest)) => (which % 2 == 1, rest),
            None => (false, input),
        };
        let (token, proof_text) = if proof_side {
            let good = proof(&s.agent, "POST", URL, Some(&s.token), NOW);
            let bad = mutate(&good, edits);
            let same = bad == good;
            (s.token.clone(), (bad, same))
        } else {
            let token = mutate(&s.token, edits);
            let p = proof(&s.agent, "POST", URL, Some(&token), NOW);
            (token, (p, true))
        };
        let decoded = s.verifier.decode(&token, NOW);
        assert!(
            decoded.is_err() || token == s.token,
            "a mutated token decoded: {token}"
        );
        let p = Presentation {
            token: &token,
            proof: Some(&proof_text.0),
            method: "POST",
            url: URL,
        };
        let verified = s.verifier.verify(p, URL, NOW);
        assert!(
            verified.is_err() || (token == s.token && proof_text.1),
            "a mutated token or proof verified: {token} / {}",
            proof_text.0
        );
    });
}

/// Any text as a DPoP proof for a bound token: refused unless the agent's key signed it.
#[test]
fn dpop_proof() {
    let s = setup();
    let jkt = s.agent.public_jwk().kid;
    bolero::check!().for_each(|input: &[u8]| {
        let text = String::from_utf8_lossy(input);
        let r = crate::dpop::verify_proof(
            &text,
            "POST",
            URL,
            Some(&s.token),
            Some(&jkt),
            DpopPolicy::default(),
            s.verifier.replay_cache(),
            NOW,
        );
        assert!(r.is_err(), "an unsigned proof verified: {text}");
    });
}
