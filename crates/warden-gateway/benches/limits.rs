//! Overhead of the limit checks on the decision path (HC-2): one call counted against
//! three matching limits (a token bucket per tool, a call cap per agent, a summed cap per
//! delegation tree), keys spread over 1,000 agents; and the read pass that gives the policy
//! `context.limit_used`.
#![allow(clippy::unwrap_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Map, Value};
use warden_config::{LimitConfig, LimitKind, LimitScope};
use warden_gateway::limits::{Limits, Subject};

fn limit(name: &str, kind: LimitKind, per: LimitScope, sum: Option<&str>) -> LimitConfig {
    LimitConfig {
        name: name.into(),
        kind,
        matches: "finance/*".into(),
        per,
        max: 1e12,
        window_secs: 3600,
        sum: sum.map(str::to_owned),
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let limits = Limits::new(vec![
        limit("rate", LimitKind::Rate, LimitScope::Tool, None),
        limit("calls", LimitKind::Cap, LimitScope::Agent, None),
        limit("amount", LimitKind::Cap, LimitScope::Tree, Some("amount")),
    ]);
    let agents: Vec<String> = (0..1000).map(|i| format!("agent-{i}")).collect();
    let mut args = Map::new();
    args.insert("amount".into(), Value::from(250));
    let mut i = 0usize;
    c.bench_function("limits/take 3 matching limits", |b| {
        b.iter(|| {
            i = (i + 1) % agents.len();
            let a = agents.get(i).unwrap();
            limits
                .take(&Subject {
                    agent: a,
                    task: "t",
                    tree: a,
                    resource: "finance/transfer_funds",
                    arguments: Some(&args),
                })
                .unwrap();
        });
    });
    // What the policy sees (`context.limit_used`): a read pass, taking nothing.
    c.bench_function("limits/used_percent 3 matching limits", |b| {
        b.iter(|| {
            i = (i + 1) % agents.len();
            let a = agents.get(i).unwrap();
            limits.used_percent(&Subject {
                agent: a,
                task: "t",
                tree: a,
                resource: "finance/transfer_funds",
                arguments: Some(&args),
            })
        });
    });
    let none = Limits::new(Vec::new());
    c.bench_function("limits/take no limits configured", |b| {
        b.iter(|| {
            none.take(&Subject {
                agent: "a",
                task: "t",
                tree: "a",
                resource: "finance/transfer_funds",
                arguments: None,
            })
            .unwrap();
        });
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
