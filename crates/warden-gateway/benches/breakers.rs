//! Overhead of the circuit breakers on the decision path (HC-3): one call admitted and its
//! decision and outcome counted (`admit` + `record(Allowed)` + `record(Succeeded)`), with no
//! breaker counting anything, and with 10,000 agents each holding a closed breaker with a
//! denial in its window (the calling agent among them).
#![allow(clippy::unwrap_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use warden_config::BreakersConfig;
use warden_gateway::breakers::{Breakers, Event};

const TOOL: &str = "crm/read_contact";

fn call(b: &Breakers, agent: &str) {
    b.admit(agent, TOOL).unwrap();
    assert!(b.record(agent, TOOL, Event::Allowed).is_empty());
    assert!(b.record(agent, TOOL, Event::Succeeded).is_empty());
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let agents: Vec<String> = (0..10_000).map(|i| format!("agent-{i}")).collect();

    let idle = Breakers::new(BreakersConfig::default());
    let mut i = 0usize;
    c.bench_function("breakers/call, nothing counting", |bench| {
        bench.iter(|| {
            i = (i + 1) % agents.len();
            call(&idle, agents.get(i).unwrap());
        });
    });

    let busy = Breakers::new(BreakersConfig {
        window_secs: 86_400,
        ..BreakersConfig::default()
    });
    for a in &agents {
        assert!(busy.record(a, TOOL, Event::Denied).is_empty());
    }
    c.bench_function("breakers/call, 10k agents counting", |bench| {
        bench.iter(|| {
            i = (i + 1) % agents.len();
            call(&busy, agents.get(i).unwrap());
        });
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
