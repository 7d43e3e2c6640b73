//! The group-committing writer: one thread owns the audit log; callers on the async workers
//! hand it canonicalised records through a bounded queue and, for a call about to be
//! forwarded, wait for the commit that makes its record durable (AU-3).
//!
//! Every record waiting when the writer comes round is committed in one transaction, so
//! under load one `write(2)` (or one `fdatasync` in disk mode) covers many calls. A failed
//! commit fails every waiting call (the gateway denies them), is counted, logged and shown
//! in the metrics; the next commit that succeeds first records an `audit_gap` event saying
//! how many records were lost and that their calls were refused — nothing forwarded ever
//! lacks its record.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::log::{AuditError, AuditLog, Durability, Prepared};
use crate::record::{EventRecord, Record};

/// When checkpoints are signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointPolicy {
    /// After this many new records...
    pub every_records: u64,
    /// ...or this long after the last one, whichever comes first (only if there are new
    /// records).
    pub every: Duration,
}

impl Default for CheckpointPolicy {
    fn default() -> Self {
        Self {
            every_records: 1000,
            every: Duration::from_secs(10),
        }
    }
}

/// Most records committed in one transaction.
const MAX_BATCH: usize = 4096;
/// Records that may wait for the writer before new ones are refused (and their calls
/// denied): a bound on memory when the disk stalls.
pub const QUEUE_CAPACITY: usize = 65_536;

struct Job {
    record: Prepared,
    durability: Durability,
    ack: Option<oneshot::Sender<Result<u64, String>>>,
}

enum Msg {
    Record(Job),
    /// Commit what is queued, sign a checkpoint, then answer.
    Flush(oneshot::Sender<()>),
}

/// Counters for the metrics endpoint and `warden audit status`.
#[derive(Debug, Default)]
pub struct AuditHealth {
    /// Records committed since start.
    pub written: AtomicU64,
    /// Group commits since start.
    pub commits: AtomicU64,
    /// Records that could not be written (their calls were denied).
    pub failed: AtomicU64,
    /// True while the last commit failed: calls are being denied.
    pub failing: AtomicBool,
    /// Checkpoints signed since start.
    pub checkpoints: AtomicU64,
    /// Records in the log (after the last commit).
    pub size: AtomicU64,
    last_error: std::sync::Mutex<String>,
}

impl AuditHealth {
    /// The last write error, empty when none.
    pub fn last_error(&self) -> String {
        self.last_error
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default()
    }
}

/// The handle the decision path holds. Cloning shares the writer.
#[derive(Clone)]
pub struct Auditor {
    tx: SyncSender<Msg>,
    health: Arc<AuditHealth>,
    origin: Arc<str>,
    verifier_key: Arc<str>,
}

impl std::fmt::Debug for Auditor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auditor")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

/// Owns the writer thread; dropping it (or calling `close`) lets the writer drain the
/// queue, sign a final checkpoint and stop.
#[derive(Debug)]
pub struct WriterThread {
    handle: Option<std::thread::JoinHandle<()>>,
}

impl WriterThread {
    /// Waits for the writer to commit what is queued and stop. Every `Auditor` clone must
    /// be dropped first, or this waits for them.
    pub fn close(mut self) {
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Auditor {
    /// Starts the writer thread over `log`.
    pub fn start(mut log: AuditLog, policy: CheckpointPolicy) -> (Self, WriterThread) {
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE_CAPACITY);
        let health = Arc::new(AuditHealth::default());
        health.size.store(log.size(), Ordering::Relaxed);
        let auditor = Self {
            tx,
            health: Arc::clone(&health),
            origin: log.origin().into(),
            verifier_key: log.verifier_key().into(),
        };
        let handle = std::thread::Builder::new()
            .name("warden-audit".into())
            .spawn(move || {
                // Dropped when the writer stops: a last WAL checkpoint, then the thread ends.
                let _wal = match log.checkpoint_in_background() {
                    Ok(w) => Some(w),
                    Err(e) => {
                        tracing::warn!(target: "warden::audit", "WAL checkpoints stay inline: {e}");
                        None
                    }
                };
                run(log, &rx, policy, &health);
            })
            .ok();
        (auditor, WriterThread { handle })
    }

    pub fn health(&self) -> &AuditHealth {
        &self.health
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn verifier_key(&self) -> &str {
        &self.verifier_key
    }

    fn send(&self, job: Job) -> Result<(), AuditError> {
        self.tx.try_send(Msg::Record(job)).map_err(|e| match e {
            TrySendError::Full(_) => AuditError::Full(QUEUE_CAPACITY),
            TrySendError::Disconnected(_) => AuditError::Stopped,
        })
    }

    /// Appends `r` and waits until it is durable to `durability`; returns its sequence
    /// number. An error means the record is not in the log: the caller must not act.
    pub async fn commit(&self, r: &Record, durability: Durability) -> Result<u64, AuditError> {
        let record = Prepared::new(r)?;
        let (ack, done) = oneshot::channel();
        self.send(Job {
            record,
            durability,
            ack: Some(ack),
        })?;
        match done.await {
            Ok(Ok(seq)) => Ok(seq),
            Ok(Err(e)) => Err(AuditError::Corrupt(e)),
            Err(_) => Err(AuditError::Stopped),
        }
    }

    /// Waits until everything queued before this call is committed and covered by a signed
    /// checkpoint (graceful shutdown, tests).
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        // A full queue drains quickly; a stopped writer has nothing left to flush.
        let mut msg = Msg::Flush(tx);
        loop {
            match self.tx.try_send(msg) {
                Ok(()) => break,
                Err(TrySendError::Full(m)) => {
                    msg = m;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
        let _ = rx.await;
    }

    /// Queues `r` without waiting (refusals, outcomes, events that gate nothing). A
    /// failure is logged and counted; the caller has nothing left to stop.
    pub fn record(&self, r: &Record) {
        let out = Prepared::new(r).and_then(|record| {
            self.send(Job {
                record,
                durability: Durability::Process,
                ack: None,
            })
        });
        if let Err(e) = out {
            self.health.failed.fetch_add(1, Ordering::Relaxed);
            tracing::error!(target: "warden::audit", "audit record not queued: {e}");
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// What the writer gathered for one group commit.
#[derive(Default)]
struct Group {
    records: Vec<Prepared>,
    acks: Vec<Option<oneshot::Sender<Result<u64, String>>>>,
    durability: Durability,
}

impl Group {
    fn add(&mut self, job: Job) {
        self.records.push(job.record);
        self.acks.push(job.ack);
        self.durability = self.durability.max(job.durability);
    }
}

fn run(mut log: AuditLog, rx: &Receiver<Msg>, policy: CheckpointPolicy, health: &AuditHealth) {
    // Records left uncovered by a crash get their checkpoint now.
    checkpoint(&mut log, health);
    let mut last_checkpoint = Instant::now();
    let mut lost: u64 = 0;
    let mut group = Group::default();
    loop {
        let wait = policy.every.saturating_sub(last_checkpoint.elapsed());
        let mut flushes = Vec::new();
        match rx.recv_timeout(wait.max(Duration::from_millis(1))) {
            Ok(Msg::Record(job)) => group.add(job),
            Ok(Msg::Flush(done)) => flushes.push(done),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        while group.acks.len() < MAX_BATCH && flushes.is_empty() {
            match rx.try_recv() {
                Ok(Msg::Record(job)) => group.add(job),
                Ok(Msg::Flush(done)) => flushes.push(done),
                Err(_) => break,
            }
        }
        if !group.acks.is_empty() {
            lost = commit(&mut log, &mut group, lost, health);
        }
        if !flushes.is_empty() {
            checkpoint(&mut log, health);
            last_checkpoint = Instant::now();
            for done in flushes {
                let _ = done.send(());
            }
        }
        let due = log.size() - log.checkpointed().0 >= policy.every_records
            || last_checkpoint.elapsed() >= policy.every;
        if due {
            checkpoint(&mut log, health);
            last_checkpoint = Instant::now();
        }
    }
    checkpoint(&mut log, health);
}

/// Commits one group; returns how many records are lost so far (0 once a gap is noted).
fn commit(log: &mut AuditLog, group: &mut Group, lost: u64, health: &AuditHealth) -> u64 {
    let mut gap_records = 0;
    if lost > 0 {
        let gap = Record::Event(
            EventRecord::new(now_ms(), "audit_gap", "warden")
                .reason(
                    "the audit log could not be written; the calls of these records were refused",
                )
                .detail("lost_records", lost),
        );
        if let Ok(p) = Prepared::new(&gap) {
            group.records.insert(0, p);
            gap_records = 1;
        }
    }
    let n = group.acks.len() as u64;
    let out = log.append(&group.records, group.durability);
    group.records.clear();
    group.durability = Durability::Process;
    match out {
        Ok(first) => {
            for (i, ack) in group.acks.drain(..).enumerate() {
                if let Some(ack) = ack {
                    let _ = ack.send(Ok(first + (gap_records + i) as u64));
                }
            }
            health.written.fetch_add(n, Ordering::Relaxed);
            health.commits.fetch_add(1, Ordering::Relaxed);
            health.size.store(log.size(), Ordering::Relaxed);
            if health.failing.swap(false, Ordering::Relaxed) {
                tracing::warn!(target: "warden::audit", lost, "audit log writable again");
            }
            0
        }
        Err(e) => {
            let msg = e.to_string();
            for ack in group.acks.drain(..).flatten() {
                let _ = ack.send(Err(msg.clone()));
            }
            health.failed.fetch_add(n, Ordering::Relaxed);
            if !health.failing.swap(true, Ordering::Relaxed) {
                tracing::error!(
                    target: "warden::audit",
                    "audit log cannot be written ({msg}); every call that needs a record is refused until it can"
                );
            }
            if let Ok(mut last) = health.last_error.lock() {
                *last = msg;
            }
            lost + n
        }
    }
}

fn checkpoint(log: &mut AuditLog, health: &AuditHealth) {
    match log.checkpoint(now_ms()) {
        Ok(Some(_)) => {
            health.checkpoints.fetch_add(1, Ordering::Relaxed);
        }
        Ok(None) => {}
        Err(e) => tracing::error!(target: "warden::audit", "audit checkpoint not written: {e}"),
    }
}

impl Drop for WriterThread {
    fn drop(&mut self) {
        // Detached: the thread drains and exits when the last Auditor is dropped.
        let _ = self.handle.take();
    }
}
