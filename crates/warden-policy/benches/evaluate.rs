//! `cargo bench -p warden-policy --bench evaluate`
//!
//! Decision latency at 10, 100 and 1,000 policies over 1,000 agents and 100 tools, with the
//! scope index (what Warden runs) and without it (plain Cedar over the whole set). Criterion
//! reports the mean and median; a second pass times 20,000 single decisions per case and
//! prints p50/p99, which is what `docs/BENCHMARKS.md` records.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::hint::black_box;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use warden_core::{ActionKind, AgentId, AutonomyLevel, Effect, RiskScore};
use warden_policy::{ActionRequest, PolicySnapshot, PolicySources, SourceFile, TaskInfo};

/// The allocator `warden` ships with, so the figures match the binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const AGENTS: usize = 1000;
const TOOLS: usize = 100;
const SERVERS: usize = 10;
const GROUPS: usize = 20;

/// A tiny deterministic generator, so every run benchmarks the same sets.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

fn tool(t: usize) -> String {
    format!("srv{}/tool-{t}", t % SERVERS)
}

fn entities() -> String {
    let mut v = Vec::new();
    for g in 0..GROUPS {
        v.push(serde_json::json!({"uid": {"type": "Warden::AgentGroup", "id": format!("team-{g}")}, "attrs": {}, "parents": []}));
    }
    for a in 0..AGENTS {
        v.push(serde_json::json!({
            "uid": {"type": "Warden::Agent", "id": format!("agent-{a}")},
            "attrs": {"name": format!("Agent {a}"), "sponsor": {"type": "Warden::User", "id": format!("user-{}", a % 50)}},
            "parents": [{"type": "Warden::AgentGroup", "id": format!("team-{}", a % GROUPS)}],
        }));
    }
    for t in 0..TOOLS {
        let mut parents = vec![];
        if t % 3 == 0 {
            parents.push(serde_json::json!({"type": "Warden::ToolGroup", "id": "writes"}));
        }
        v.push(serde_json::json!({"uid": {"type": "Warden::Tool", "id": tool(t)}, "attrs": {}, "parents": parents}));
    }
    serde_json::to_string(&v).unwrap()
}

/// `n` policies: 90% pin one agent–tool pair with an argument condition (half permits,
/// half forbids), 10% are team- or server-wide.
fn policies(n: usize, rng: &mut Lcg) -> String {
    let mut out = String::new();
    for i in 0..n {
        let a = rng.next(AGENTS);
        let t = rng.next(TOOLS);
        let limit = 100 + rng.next(5000);
        let text = if i % 10 == 9 {
            format!(
                "@id(\"p{i}\")\npermit(principal in Warden::AgentGroup::\"team-{}\", action == Warden::Action::\"call_tool\", resource in Warden::ToolServer::\"srv{}\")\n  when {{ context.risk < 70 && context.autonomy_rank >= 1 }};\n",
                rng.next(GROUPS),
                rng.next(SERVERS)
            )
        } else if i % 2 == 0 {
            format!(
                "@id(\"p{i}\")\npermit(principal == Warden::Agent::\"agent-{a}\", action == Warden::Action::\"call_tool\", resource == Warden::Tool::\"{}\")\n  when {{ context.arguments has amount && context.arguments.amount <= {limit} }};\n",
                tool(t)
            )
        } else {
            format!(
                "@id(\"p{i}\")\nforbid(principal == Warden::Agent::\"agent-{a}\", action == Warden::Action::\"call_tool\", resource == Warden::Tool::\"{}\")\n  when {{ context.arguments has amount && context.arguments.amount > {limit} }};\n",
                tool(t)
            )
        };
        out.push_str(&text);
    }
    out
}

fn snapshot(n: usize) -> PolicySnapshot {
    let mut rng = Lcg(n as u64);
    let sources = PolicySources {
        policies: vec![SourceFile::new("bench.cedar", policies(n, &mut rng))],
        schemas: vec![SourceFile::new(
            "args.cedarschema",
            "namespace Warden { type Arguments = { amount?: Long, memo?: String }; }",
        )],
        entities: vec![SourceFile::new("entities.json", entities())],
    };
    PolicySnapshot::load(&sources).unwrap()
}

fn requests(count: usize) -> Vec<ActionRequest> {
    let mut rng = Lcg(42);
    (0..count)
        .map(|_| {
            let mut arguments = serde_json::Map::new();
            arguments.insert("amount".into(), (rng.next(6000) as i64).into());
            arguments.insert("memo".into(), "quarterly invoice".into());
            ActionRequest {
                agent: AgentId::new(format!("agent-{}", rng.next(AGENTS))).unwrap(),
                action: ActionKind::CallTool,
                resource: tool(rng.next(TOOLS)),
                arguments,
                task: TaskInfo {
                    id: "task-1".into(),
                    purpose: "bench".into(),
                },
                on_behalf_of: None,
                delegated_by: vec![],
                autonomy: AutonomyLevel::Senior,
                risk: RiskScore::new(10).unwrap(),
                limit_used: 0,
                time: 1_790_000_000,
                reason: None,
                inspection: Default::default(),
            }
        })
        .collect()
}

fn percentiles(snap: &PolicySnapshot, reqs: &[ActionRequest], sliced: bool) -> (f64, f64) {
    let mut samples = Vec::with_capacity(reqs.len());
    for r in reqs {
        let start = Instant::now();
        let d = if sliced {
            snap.evaluate(r)
        } else {
            snap.evaluate_unsliced(r)
        };
        samples.push(start.elapsed().as_nanos() as f64 / 1000.0);
        black_box(d);
    }
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize];
    (at(0.50), at(0.99))
}

fn bench(c: &mut Criterion) {
    let reqs = requests(20_000);
    let mut group = c.benchmark_group("evaluate");
    let mut table = Vec::new();
    for n in [10, 100, 1000] {
        let snap = snapshot(n);
        let allowed = reqs
            .iter()
            .filter(|r| snap.evaluate(r).effect == Effect::Allow)
            .count();
        for sliced in [true, false] {
            let name = if sliced { "sliced" } else { "unsliced" };
            let mut i = 0;
            group.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.iter(|| {
                    i = (i + 1) % reqs.len();
                    let r = &reqs[i];
                    black_box(if sliced {
                        snap.evaluate(r)
                    } else {
                        snap.evaluate_unsliced(r)
                    })
                })
            });
            // Warm, then measure single decisions.
            percentiles(&snap, &reqs[..2000], sliced);
            let (p50, p99) = percentiles(&snap, &reqs, sliced);
            table.push((n, name, p50, p99, allowed));
        }
    }
    group.finish();
    println!("\npolicies  mode       p50 (µs)   p99 (µs)   allowed/20000");
    for (n, name, p50, p99, allowed) in table {
        println!("{n:>8}  {name:<9} {p50:>9.2}  {p99:>9.2}   {allowed}");
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).warm_up_time(std::time::Duration::from_secs(1)).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
