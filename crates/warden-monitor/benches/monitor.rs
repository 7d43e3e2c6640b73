//! Overhead of the monitor on the decision path (MO-1): reading an agent's risk for the
//! policy context, then observing its call and the call's reply — for a trained agent
//! whose call is usual (the common case), among 10,000 tracked agents.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use criterion::{Criterion, criterion_group, criterion_main};
use warden_monitor::{Call, Monitor, Outcome, Reply, ReplyKind, Settings};

const TOOLS: [&str; 4] = [
    "crm/read_contact",
    "crm/log_call_note",
    "crm/update_deal",
    "email/send",
];

fn call<'a>(agent: &'a str, tool: &'static str, t: i64) -> Call<'a> {
    Call {
        time_ms: t,
        agent,
        delegator: None,
        server: "crm",
        tool,
        outcome: Outcome::Allowed,
        bytes_out: 300,
        destinations: &[],
        record: None,
    }
}

fn bench(c: &mut Criterion) {
    let m = Monitor::new(Settings::default());
    let agents: Vec<String> = (0..10_000).map(|i| format!("agent-{i}")).collect();
    // Every agent trained over 8 days: 1,200 calls, every 10 minutes.
    for a in &agents {
        for i in 0..1_200_i64 {
            m.call(&call(a, TOOLS[(i % 4) as usize], i * 600_000));
        }
    }
    let mut t = 1_200 * 600_000_i64;
    let mut i = 0usize;
    c.bench_function("monitor/risk + call + reply, trained agent", |b| {
        b.iter(|| {
            i = (i + 1) % agents.len();
            t += 600;
            let a = &agents[i];
            let tool = TOOLS[i % 4];
            let risk = m.risk(a, t);
            let v = m.call(&call(a, tool, t));
            let r = m.reply(&Reply {
                time_ms: t,
                agent: a,
                tool,
                kind: ReplyKind::Content(800),
            });
            (risk, v, r)
        });
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
