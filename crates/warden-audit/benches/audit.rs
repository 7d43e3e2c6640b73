//! Audit throughput (SPEC: ≥ 100,000 records/s appended durably with group commit,
//! verification ≥ 1,000,000 records/s). Records are realistic decision records (~600 bytes
//! canonical). `cargo bench -p warden-audit --bench audit`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use warden_audit::log::{AuditLog, Durability, Prepared};
use warden_audit::record::{DecisionRecord, Record, args_digest, redact};
use warden_audit::{Auditor, CheckpointPolicy};

/// Records are made in time order, as the gateway makes them: the clock moves on one
/// millisecond every 16 records (16,000 calls/s), so the time and agent indexes grow at
/// their right edges. (An earlier version of this bench appended the same 4,096 timestamps
/// again and again, which made every index insert land in the middle of the index and
/// measured a log that cannot happen: 25-35k records/s.)
static CLOCK: AtomicI64 = AtomicI64::new(0);

/// Record `i`: one of 64 agents, each on one of 4 tasks.
fn record(i: i64) -> Record {
    let time_ms = 1_790_000_000_000 + CLOCK.fetch_add(1, Ordering::Relaxed) / 16;
    let args = json!({"contact_id": format!("c-{i}"), "fields": ["name", "email"], "limit": 10});
    let args = args.as_object().unwrap();
    Record::Decision(Box::new(DecisionRecord {
        time_ms,
        endpoint: "mcp".into(),
        via: "token".into(),
        agent: Some(format!("research-agent-{}", i % 64)),
        sponsors: vec!["alice@example.com".into()],
        on_behalf_of: Some("bob@example.com".into()),
        task: Some(format!("t-{}-{}", i % 64, (i / 64) % 4)),
        token_id: Some("01J9ZKX3V8Q2R7M4N6P0S1T2U3".into()),
        action: "call_tool".into(),
        resource: "crm/read_contact".into(),
        args_digest: Some(args_digest(args)),
        args: Some(redact(args)),
        decision: "allow".into(),
        reason_id: "allowed".into(),
        policies: vec!["crm-read".into()],
        policy_version: "sha256:3f2a9c".into(),
        reasons: vec!["research agents may read contacts".into()],
        stated_reason: Some("look up the customer's email for the renewal reply".into()),
        latency_us: 41,
        ..DecisionRecord::default()
    }))
}

const GROUP: usize = 4096;

/// The writer as the gateway uses it: `clients` tasks each commit one record and wait for it
/// to be durable, again and again, for `secs`; prints records/s and the p50/p99 of one
/// commit (hand-off, group commit, acknowledgement).
fn group_commit(clients: usize, durability: Durability, secs: u64) {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), "bench.example/audit").unwrap();
    let (auditor, _writer) = Auditor::start(log, CheckpointPolicy::default());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let mut lat: Vec<u64> = rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for c in 0..clients {
            let a = auditor.clone();
            set.spawn(async move {
                let mut out = Vec::new();
                let mut i = 0i64;
                while started.elapsed() < Duration::from_secs(secs) {
                    let r = record(c as i64 * 1_000_000 + i);
                    let t = Instant::now();
                    a.commit(&r, durability).await.unwrap();
                    out.push(t.elapsed().as_micros() as u64);
                    i += 1;
                }
                out
            });
        }
        let mut all = Vec::new();
        while let Some(v) = set.join_next().await {
            all.extend(v.unwrap());
        }
        all
    });
    let elapsed = started.elapsed().as_secs_f64();
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "group commit, {clients} clients, {}: {:.0} records/s, commit p50 {} µs, p99 {} µs ({} records)",
        durability.as_str(),
        lat.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99),
        lat.len()
    );
}

fn bench(c: &mut Criterion) {
    // WARDEN_BENCH_NO_WRITER=1 skips the writer runs (when profiling one criterion group).
    let writer_runs = if std::env::var_os("WARDEN_BENCH_NO_WRITER").is_some() {
        &[][..]
    } else {
        &[Durability::Process, Durability::Disk][..]
    };
    for &durability in writer_runs {
        for clients in [1, 16, 256] {
            group_commit(clients, durability, 3);
        }
    }
    let mut g = c.benchmark_group("audit");
    g.sample_size(10);
    g.throughput(Throughput::Elements(1));
    g.bench_function("canonicalise one decision record", |b| {
        let r = record(7);
        b.iter(|| Prepared::new(&r).unwrap());
    });
    let group = || -> Vec<Prepared> {
        (0..GROUP as i64)
            .map(|i| Prepared::new(&record(i)).unwrap())
            .collect()
    };
    g.throughput(Throughput::Elements(GROUP as u64));
    for (name, durability) in [
        (
            "append group of 4096 (process-durable)",
            Durability::Process,
        ),
        ("append group of 4096 (fsync)", Durability::Disk),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut log = AuditLog::open(dir.path(), "bench.example/audit").unwrap();
        // As the writer thread runs it: WAL checkpoints on their own thread.
        let _wal = log.checkpoint_in_background().unwrap();
        g.bench_function(name, |b| {
            b.iter_batched(
                group,
                |records| log.append(&records, durability).unwrap(),
                BatchSize::PerIteration,
            );
        });
        let wal = std::fs::metadata(dir.path().join("audit.db-wal")).map_or(0, |m| m.len());
        println!(
            "{name}: {} records appended, WAL now {:.1} MiB",
            log.size(),
            wal as f64 / 1048576.0
        );
    }
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = AuditLog::open(dir.path(), "bench.example/audit").unwrap();
        for _ in 0..50 {
            log.append(&group(), Durability::Process).unwrap();
            log.checkpoint(0).unwrap();
        }
    }
    let vkey = warden_audit::log::verifier_key(dir.path()).unwrap();
    g.throughput(Throughput::Elements(50 * GROUP as u64));
    g.bench_function("verify 204,800 records", |b| {
        b.iter_batched(
            || (),
            |()| {
                let r = warden_audit::verify::verify(dir.path(), &vkey, &mut |_, _| {}).unwrap();
                assert!(r.ok());
            },
            BatchSize::PerIteration,
        );
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
