//! Audit throughput (SPEC: ≥ 100,000 records/s appended durably with group commit,
//! verification ≥ 1,000,000 records/s). Records are realistic decision records (~600 bytes
//! canonical). `cargo bench -p warden-audit --bench audit`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use warden_audit::log::{AuditLog, Durability, Prepared};
use warden_audit::record::{DecisionRecord, Record, args_digest, redact};

fn record(i: i64) -> Record {
    let args = json!({"contact_id": format!("c-{i}"), "fields": ["name", "email"], "limit": 10});
    let args = args.as_object().unwrap();
    Record::Decision(Box::new(DecisionRecord {
        time_ms: 1_790_000_000_000 + i,
        endpoint: "mcp".into(),
        via: "token".into(),
        agent: Some("research-agent".into()),
        sponsors: vec!["alice@example.com".into()],
        on_behalf_of: Some("bob@example.com".into()),
        task: Some("t-42".into()),
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

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("audit");
    g.sample_size(10);
    let prepared: Vec<Prepared> = (0..GROUP as i64)
        .map(|i| Prepared::new(&record(i)).unwrap())
        .collect();
    g.throughput(Throughput::Elements(1));
    g.bench_function("canonicalise one decision record", |b| {
        let r = record(7);
        b.iter(|| Prepared::new(&r).unwrap());
    });
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
        g.bench_function(name, |b| {
            b.iter(|| log.append(&prepared, durability).unwrap());
        });
    }
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = AuditLog::open(dir.path(), "bench.example/audit").unwrap();
        for _ in 0..50 {
            log.append(&prepared, Durability::Process).unwrap();
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
