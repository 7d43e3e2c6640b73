//! Token verification as every MCP request pays it: the access token (signature cached after
//! the first use, as Warden runs it), issuer, lifetime, audience, revocation, and a fresh DPoP
//! proof verified in full (never cached), `ath` and replay check included.
//!
//! Proofs are signed outside the timed region (that is the client's cost). Besides criterion's
//! mean, the bench times 20,000 single verifications and prints p50/p99, which is what
//! `docs/BENCHMARKS.md` records.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use warden_core::{ActionKind, AutonomyLevel};
use warden_identity::dpop::{self, DpopPolicy};
use warden_identity::replay::ReplayCache;
use warden_identity::revocation::{Revocation, Revocations};
use warden_identity::token::{
    AccessClaims, Confirmation, GrantedAction, TaskDetail, sign_access_token,
};
use warden_identity::verifier::{Presentation, TokenVerifier};
use warden_identity::{KeyPair, ServerKeys};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ISSUER: &str = "https://warden.example";
const AUD: &str = "https://warden.example/mcp/crm";
const URL: &str = "https://warden.example/mcp/crm";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

struct Setup {
    verifier: TokenVerifier,
    token: String,
    agent: KeyPair,
    keys: Arc<ServerKeys>,
    _dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let keys = Arc::new(ServerKeys::load_or_create(&dir.path().join("keys"), now()).unwrap());
    let agent = KeyPair::generate();
    let revocations = Arc::new(Revocations::new());
    // A realistic revocation state: a thousand revoked tokens, tasks and agents.
    let revoked: Vec<Revocation> = (0..1000)
        .flat_map(|i| {
            [
                Revocation::Token(format!("jti-{i}")),
                Revocation::Task(format!("task-{i}")),
                Revocation::Agent(format!("agent-{i}")),
            ]
        })
        .collect();
    revocations.extend(revoked.iter());
    let claims = AccessClaims {
        iss: ISSUER.into(),
        sub: "lead".into(),
        aud: AUD.into(),
        exp: now() + 3600,
        iat: now(),
        jti: "bench-token".into(),
        client_id: "helper".into(),
        authorization_details: vec![TaskDetail {
            kind: "warden_task".into(),
            task_id: "t-1".into(),
            purpose: "bench".into(),
            actions: (0..10)
                .map(|i| GrantedAction {
                    action: ActionKind::CallTool,
                    resource: format!("crm/tool_{i}"),
                })
                .collect(),
            on_behalf_of: None,
        }],
        act: Some(warden_identity::token::Actor {
            sub: "helper".into(),
            act: None,
        }),
        cnf: Some(Confirmation {
            jkt: agent.public_jwk().kid,
        }),
        autonomy: AutonomyLevel::Junior,
        sponsor: vec!["alice@example.com".into()],
        depth: 1,
        parents: vec!["root-jti".into()],
    };
    let token = sign_access_token(keys.current(), &claims).unwrap();
    let verifier = TokenVerifier::new(
        Arc::clone(&keys),
        ISSUER.into(),
        revocations,
        DpopPolicy::default(),
    );
    Setup {
        verifier,
        token,
        agent,
        keys,
        _dir: dir,
    }
}

fn verify(s: &Setup, proof: &str) {
    let p = Presentation {
        token: &s.token,
        proof: Some(proof),
        method: "POST",
        url: URL,
    };
    black_box(s.verifier.verify(p, AUD, now()).unwrap());
}

fn percentiles(samples: &mut [f64]) -> (f64, f64) {
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize];
    (at(0.50), at(0.99))
}

fn bench(c: &mut Criterion) {
    let s = setup();
    let mut g = c.benchmark_group("verify");
    g.bench_function("token+dpop (signature cached)", |b| {
        b.iter_batched(
            || dpop::proof(&s.agent, "POST", URL, Some(&s.token), now()),
            |p| verify(&s, &p),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("dpop proof alone", |b| {
        let cache = ReplayCache::new(10_000_000);
        let jkt = s.agent.public_jwk().kid;
        b.iter_batched(
            || dpop::proof(&s.agent, "POST", URL, Some(&s.token), now()),
            |p| {
                black_box(
                    dpop::verify_proof(
                        &p,
                        "POST",
                        URL,
                        Some(&s.token),
                        Some(&jkt),
                        DpopPolicy::default(),
                        &cache,
                        now(),
                    )
                    .unwrap(),
                )
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("token signature (uncached)", |b| {
        b.iter(|| {
            black_box(warden_identity::token::decode_access_token(&s.token, &s.keys).unwrap())
        })
    });
    g.finish();

    // Single verifications, each with its own fresh proof, for p50/p99.
    let n = 20_000;
    let fresh = setup(); // a verifier whose replay cache is empty
    let proofs: Vec<String> = (0..n + 2000)
        .map(|_| dpop::proof(&fresh.agent, "POST", URL, Some(&fresh.token), now()))
        .collect();
    let mut samples = Vec::with_capacity(n);
    for (i, p) in proofs.iter().enumerate() {
        let start = Instant::now();
        verify(&fresh, p);
        if i >= 2000 {
            samples.push(start.elapsed().as_nanos() as f64 / 1000.0);
        }
    }
    let (p50, p99) = percentiles(&mut samples);
    println!("\ntoken + DPoP verification, signature cached, {n} requests:");
    println!("  p50 {p50:.1} µs   p99 {p99:.1} µs");
    let mut cold = Vec::with_capacity(2000);
    for _ in 0..2000 {
        let start = Instant::now();
        black_box(warden_identity::token::decode_access_token(&s.token, &s.keys).unwrap());
        cold.push(start.elapsed().as_nanos() as f64 / 1000.0);
    }
    let (c50, c99) = percentiles(&mut cold);
    println!(
        "token signature check alone (what the cache saves): p50 {c50:.1} µs   p99 {c99:.1} µs"
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
