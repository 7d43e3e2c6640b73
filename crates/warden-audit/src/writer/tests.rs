use super::*;
use crate::log::AuditLog;

fn ev(i: i64) -> Record {
    Record::Event(EventRecord::new(i, "test", "cli").detail("i", i))
}

fn start(dir: &std::path::Path) -> (Auditor, WriterThread) {
    let log = AuditLog::open(dir, "test.example/audit").unwrap();
    Auditor::start(log, CheckpointPolicy::default())
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Waits (up to 5 s) until `n` records are committed.
fn written(a: &Auditor, n: u64) {
    let t = Instant::now();
    while a.health().written.load(Ordering::Relaxed) < n {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "records never committed"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_call_commits_its_own_record_and_what_was_queued_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let (a, w) = start(dir.path());
    a.record(&ev(0));
    a.record(&ev(1));
    let seq = rt()
        .block_on(a.commit(&ev(2), Durability::Process))
        .unwrap();
    // Queued first, so sequenced first, whoever committed them.
    assert_eq!(seq, 2);
    written(&a, 3);
    assert!(a.health().leader_commits.load(Ordering::Relaxed) >= 1);
    drop(a);
    w.close();
    let log = AuditLog::open(dir.path(), "x").unwrap();
    assert_eq!(log.size(), 3);
    assert_eq!(log.checkpointed().0, 3, "closing signs a last checkpoint");
}

#[test]
fn records_that_gate_nothing_are_committed_without_a_leader() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _w) = start(dir.path());
    // Let the writer fall asleep with nothing queued: the record must wake it.
    std::thread::sleep(STAY_AWAKE + Duration::from_millis(50));
    a.record(&ev(0));
    written(&a, 1);
    assert_eq!(a.health().leader_commits.load(Ordering::Relaxed), 0);
}

#[test]
fn a_record_that_must_be_fsynced_goes_through_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _w) = start(dir.path());
    let seq = rt().block_on(a.commit(&ev(0), Durability::Disk)).unwrap();
    assert_eq!(seq, 0);
    assert_eq!(a.health().leader_commits.load(Ordering::Relaxed), 0);
    assert_eq!(a.health().commits.load(Ordering::Relaxed), 1);
}

#[test]
fn a_leader_does_not_wait_for_another_process_lock() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _w) = start(dir.path());
    let blocker = rusqlite::Connection::open(dir.path().join(crate::log::AUDIT_DB)).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    // One async thread: a leader that waited for the lock would hold it.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    #[allow(clippy::async_yields_async)] // the task is awaited after the lock is released
    let pending = rt.block_on(async {
        let a = a.clone();
        let p = tokio::spawn(async move { a.commit(&ev(0), Durability::Process).await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        p
    });
    assert!(
        !pending.is_finished(),
        "committed through another process's lock?"
    );
    blocker.execute_batch("ROLLBACK").unwrap();
    assert_eq!(rt.block_on(pending).unwrap().unwrap(), 0);
    // The writer thread committed it, after the lock was released: the leader gave it
    // up at once instead of waiting (had it waited, it would have committed it itself).
    assert_eq!(a.health().leader_commits.load(Ordering::Relaxed), 0);
    assert_eq!(a.health().failed.load(Ordering::Relaxed), 0);
}

#[test]
fn concurrent_callers_get_every_record_once_in_one_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let (a, w) = start(dir.path());
    let seqs: Vec<u64> = rt().block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for t in 0..16i64 {
            let a = a.clone();
            set.spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..100 {
                    a.record(&ev(t * 1000 + i));
                    let d = if i % 10 == 0 {
                        Durability::Disk
                    } else {
                        Durability::Process
                    };
                    seqs.push(a.commit(&ev(t * 1000 + i), d).await.unwrap());
                }
                seqs
            });
        }
        let mut all = Vec::new();
        while let Some(s) = set.join_next().await {
            all.extend(s.unwrap());
        }
        all
    });
    let mut sorted = seqs.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        1600,
        "every commit got its own sequence number"
    );
    assert!(sorted.iter().all(|&s| s < 3200));
    drop(a);
    w.close();
    let log = AuditLog::open(dir.path(), "x").unwrap();
    assert_eq!(log.size(), 3200);
}
