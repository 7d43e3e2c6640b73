//! The group-committing writer (AU-3): every record is canonicalised on the caller's thread,
//! then committed to the audit log in groups, by whoever gets there first.
//!
//! **The leader path.** A call about to be forwarded needs its record durable first. When
//! the log is free and little is queued, the call's own thread commits: everything waiting
//! in the queue (outcomes, refusals) plus its own record, in one transaction, and goes on —
//! no hand-off to another thread and back, which on a lightly loaded machine costs more than
//! the commit itself (two cross-core wake-ups). **The writer thread** takes over whenever
//! the log is busy, the queue is long or the record must be `fsync`ed: callers queue their
//! record and wait for the writer's group commit, so under load one `write(2)` (or one
//! `fdatasync` in disk mode) covers many calls. Records that gate nothing are only queued:
//! the next leader takes them, or the writer within [`LAZY_COMMIT`].
//!
//! A failed commit fails every record in it (the gateway denies their calls), is counted,
//! logged and shown in the metrics; the next commit that succeeds first records an
//! `audit_gap` event saying how many records were lost and that their calls were refused —
//! nothing forwarded ever lacks its record.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, TryLockError};
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
/// Records that may wait before new ones are refused (and their calls denied): a bound on
/// memory when the disk stalls.
pub const QUEUE_CAPACITY: usize = 65_536;
/// A caller commits on its own thread only while at most this many records are queued;
/// beyond that the writer thread's larger groups are cheaper, and no async worker is held
/// for long.
const LEADER_MAX_QUEUED: usize = 64;
/// How long a record that gates nothing may wait for a leader before the writer commits it.
pub const LAZY_COMMIT: Duration = Duration::from_millis(2);
/// After records stop coming, the writer keeps looking every [`LAZY_COMMIT`] this long
/// before it sleeps until woken: under steady traffic no caller pays for waking it.
const STAY_AWAKE: Duration = Duration::from_millis(200);

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
    /// Group commits made by a caller's own thread (the rest by the writer thread).
    pub leader_commits: AtomicU64,
    /// Records that could not be written (their calls were denied).
    pub failed: AtomicU64,
    /// True while the last commit failed: calls are being denied.
    pub failing: AtomicBool,
    /// Checkpoints signed since start.
    pub checkpoints: AtomicU64,
    /// Records in the log (after the last commit).
    pub size: AtomicU64,
    last_error: Mutex<String>,
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

/// The log and what the committer remembers between groups. Whoever holds it commits.
struct Committer {
    log: AuditLog,
    /// Records lost to failed commits since the last successful one.
    lost: u64,
    last_checkpoint: Instant,
}

/// Records waiting for a committer.
#[derive(Default)]
struct Queue {
    msgs: Vec<Msg>,
    /// When the oldest waiting message was queued.
    since: Option<Instant>,
}

/// What the callers and the writer thread share.
struct Shared {
    committer: Mutex<Committer>,
    queue: Mutex<Queue>,
    /// The queue's length, read without its lock.
    queued: AtomicUsize,
    /// Callers waiting for the writer's commit right now.
    waiting: AtomicUsize,
    /// Set when a caller waits for the writer (not for a leader).
    urgent: AtomicBool,
    /// Set while the writer sleeps with nothing queued: the next record wakes it.
    idle: AtomicBool,
    /// Set when the last `Auditor` is gone: drain, checkpoint, stop.
    closed: AtomicBool,
    writer: OnceLock<std::thread::Thread>,
    policy: CheckpointPolicy,
    health: Arc<AuditHealth>,
}

impl Shared {
    fn wake_writer(&self) {
        if let Some(t) = self.writer.get() {
            t.unpark();
        }
    }

    /// Queues `msg`; refuses when the queue is full (the disk has stalled).
    fn push(&self, msg: Msg) -> Result<(), AuditError> {
        let mut q = self.queue.lock().map_err(|_| AuditError::Stopped)?;
        if q.msgs.len() >= QUEUE_CAPACITY {
            return Err(AuditError::Full(QUEUE_CAPACITY));
        }
        if q.msgs.is_empty() {
            q.since = Some(Instant::now());
        }
        q.msgs.push(msg);
        self.queued.store(q.msgs.len(), Ordering::Release);
        Ok(())
    }

    /// Takes up to `MAX_BATCH` queued messages. Called with the committer held, so what is
    /// taken is committed before anyone else can commit (a flush sees everything before it).
    fn take(&self) -> Vec<Msg> {
        let Ok(mut q) = self.queue.lock() else {
            return Vec::new();
        };
        let taken = if q.msgs.len() <= MAX_BATCH {
            q.since = None;
            std::mem::take(&mut q.msgs)
        } else {
            let rest = q.msgs.split_off(MAX_BATCH);
            std::mem::replace(&mut q.msgs, rest)
        };
        self.queued.store(q.msgs.len(), Ordering::Release);
        taken
    }

    /// When the oldest waiting message was queued; `None` when nothing waits.
    fn oldest(&self) -> Option<Instant> {
        self.queue.lock().ok().and_then(|q| q.since)
    }
}

/// Counts a caller waiting for the writer while it lives (dropped if the caller is).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, Ordering::AcqRel);
        Self(n)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Signals the writer to finish once the last `Auditor` clone is dropped.
struct Closer(Arc<Shared>);

impl Drop for Closer {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::Release);
        self.0.wake_writer();
    }
}

/// The handle the decision path holds. Cloning shares the writer.
#[derive(Clone)]
pub struct Auditor {
    shared: Arc<Shared>,
    _closer: Arc<Closer>,
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
        let health = Arc::new(AuditHealth::default());
        health.size.store(log.size(), Ordering::Relaxed);
        let origin: Arc<str> = log.origin().into();
        let verifier_key: Arc<str> = log.verifier_key().into();
        // Dropped when the writer stops: a last WAL checkpoint, then that thread ends.
        let wal = match log.checkpoint_in_background() {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(target: "warden::audit", "WAL checkpoints stay inline: {e}");
                None
            }
        };
        let shared = Arc::new(Shared {
            committer: Mutex::new(Committer {
                log,
                lost: 0,
                last_checkpoint: Instant::now(),
            }),
            queue: Mutex::new(Queue::default()),
            queued: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            urgent: AtomicBool::new(false),
            idle: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            writer: OnceLock::new(),
            policy,
            health,
        });
        let for_writer = Arc::clone(&shared);
        let handle = std::thread::Builder::new()
            .name("warden-audit".into())
            .spawn(move || {
                let _wal = wal;
                run(&for_writer);
            })
            .ok();
        if let Some(h) = &handle {
            let _ = shared.writer.set(h.thread().clone());
        } else {
            // No writer thread: every commit would wait forever. Fail closed instead.
            shared.closed.store(true, Ordering::Release);
        }
        let auditor = Self {
            _closer: Arc::new(Closer(Arc::clone(&shared))),
            shared,
            origin,
            verifier_key,
        };
        (auditor, WriterThread { handle })
    }

    pub fn health(&self) -> &AuditHealth {
        &self.shared.health
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn verifier_key(&self) -> &str {
        &self.verifier_key
    }

    /// Appends `r` and waits until it is durable to `durability`; returns its sequence
    /// number. An error means the record is not in the log: the caller must not act.
    pub async fn commit(&self, r: &Record, durability: Durability) -> Result<u64, AuditError> {
        let record = Prepared::new(r)?;
        let sh = &*self.shared;
        if sh.closed.load(Ordering::Acquire) {
            return Err(AuditError::Stopped);
        }
        // The leader path: nobody else is waiting for a commit, the log is free and little
        // is queued, so commit here. (Under load callers wait for the writer instead: its
        // groups are larger, and a worker is not held for a commit.)
        let record = if durability == Durability::Process
            && sh.waiting.load(Ordering::Acquire) == 0
            && sh.queued.load(Ordering::Acquire) <= LEADER_MAX_QUEUED
        {
            match sh.committer.try_lock() {
                Ok(mut c) => match lead(sh, &mut c, record) {
                    Ok(out) => return out,
                    Err(record) => record,
                },
                Err(TryLockError::Poisoned(_)) => return Err(AuditError::Stopped),
                Err(TryLockError::WouldBlock) => record,
            }
        } else {
            record
        };
        let (ack, done) = oneshot::channel();
        let _waiting = Waiting::new(&sh.waiting);
        sh.push(Msg::Record(Job {
            record,
            durability,
            ack: Some(ack),
        }))?;
        sh.urgent.store(true, Ordering::Release);
        sh.wake_writer();
        match done.await {
            Ok(Ok(seq)) => Ok(seq),
            Ok(Err(e)) => Err(AuditError::Corrupt(e)),
            Err(_) => Err(AuditError::Stopped),
        }
    }

    /// Waits until everything queued before this call is committed and covered by a signed
    /// checkpoint (graceful shutdown, tests).
    pub async fn flush(&self) {
        loop {
            let (tx, rx) = oneshot::channel();
            match self.shared.push(Msg::Flush(tx)) {
                Ok(()) => {
                    self.shared.urgent.store(true, Ordering::Release);
                    self.shared.wake_writer();
                    let _ = rx.await;
                    return;
                }
                // A full queue drains quickly.
                Err(AuditError::Full(_)) => tokio::time::sleep(Duration::from_millis(1)).await,
                // A stopped writer has nothing left to flush.
                Err(_) => return,
            }
        }
    }

    /// Queues `r` without waiting (refusals, outcomes, events that gate nothing): the next
    /// leader commits it, or the writer within [`LAZY_COMMIT`]. A failure is logged and
    /// counted; the caller has nothing left to stop.
    pub fn record(&self, r: &Record) {
        let sh = &*self.shared;
        let out = Prepared::new(r).and_then(|record| {
            sh.push(Msg::Record(Job {
                record,
                durability: Durability::Process,
                ack: None,
            }))
        });
        match out {
            Ok(()) => {
                if sh.idle.swap(false, Ordering::AcqRel)
                    || sh.queued.load(Ordering::Acquire) >= MAX_BATCH
                {
                    sh.wake_writer();
                }
            }
            Err(e) => {
                sh.health.failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(target: "warden::audit", "audit record not queued: {e}");
            }
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Commits `record` on the caller's thread, with whatever is queued before it. Hands the
/// record back (and the queue to the writer) when that would mean waiting: a queued record
/// needs `fsync`, or another process holds the database's write lock.
fn lead(
    sh: &Shared,
    c: &mut Committer,
    record: Prepared,
) -> Result<Result<u64, AuditError>, Prepared> {
    let mut batch = Batch::of(sh.take());
    if batch.durability == Durability::Disk {
        batch.requeue(sh);
        return Err(record);
    }
    batch.add(Job {
        record,
        durability: Durability::Process,
        ack: None,
    });
    let out = match commit_batch(sh, c, batch, true) {
        Committed::Last(seq) => Ok(Ok(seq)),
        Committed::Failed(e) => Ok(Err(AuditError::Corrupt(e))),
        Committed::Busy(mut batch) => {
            batch.acks.pop();
            match batch.records.pop() {
                Some(own) => {
                    batch.requeue(sh);
                    Err(own)
                }
                None => Ok(Err(AuditError::Stopped)),
            }
        }
    };
    // Someone who queued behind us while we held the log needs the writer; so does a
    // checkpoint that has come due (signed off the call's path).
    if checkpoint_due(sh, c) {
        sh.urgent.store(true, Ordering::Release);
    }
    if sh.urgent.load(Ordering::Acquire) {
        sh.wake_writer();
    }
    out
}

/// The writer thread: commits what callers queued for it, what no leader took within
/// [`LAZY_COMMIT`], and signs checkpoints when due.
fn run(sh: &Shared) {
    // Records left uncovered by a crash get their checkpoint now.
    let mut checkpoint_at = Instant::now() + sh.policy.every;
    if let Ok(mut c) = sh.committer.lock() {
        checkpoint(&mut c, &sh.health);
    }
    let mut active = Instant::now();
    loop {
        let now = Instant::now();
        let urgent = sh.urgent.swap(false, Ordering::AcqRel);
        if !urgent && !sh.closed.load(Ordering::Acquire) && now < checkpoint_at {
            let until_checkpoint = checkpoint_at - now;
            match sh.oldest() {
                // Give a leader the chance to take them, but not for long.
                Some(since)
                    if since.elapsed() < LAZY_COMMIT
                        && sh.queued.load(Ordering::Acquire) < MAX_BATCH =>
                {
                    active = now;
                    // `elapsed` has moved on since the guard: saturate, never underflow.
                    std::thread::park_timeout(
                        LAZY_COMMIT
                            .saturating_sub(since.elapsed())
                            .min(until_checkpoint),
                    );
                    continue;
                }
                Some(_) => active = now,
                // Traffic just stopped: keep looking, so that no caller has to wake us.
                None if active.elapsed() < STAY_AWAKE => {
                    std::thread::park_timeout(LAZY_COMMIT.min(until_checkpoint));
                    continue;
                }
                None => {
                    sh.idle.store(true, Ordering::Release);
                    // A record queued after the store above finds `idle` set and wakes us;
                    // one queued before it is seen here.
                    if sh.queued.load(Ordering::Acquire) == 0 {
                        std::thread::park_timeout(until_checkpoint);
                    }
                    sh.idle.store(false, Ordering::Release);
                    continue;
                }
            }
        }
        let Ok(mut c) = sh.committer.lock() else {
            break; // a caller panicked mid-commit: stop; waiting callers are refused
        };
        while sh.queued.load(Ordering::Acquire) > 0 {
            let msgs = sh.take();
            if msgs.is_empty() {
                break; // the queue's lock is poisoned: nothing can be taken, don't spin
            }
            let _ = commit_batch(sh, &mut c, Batch::of(msgs), false);
        }
        if checkpoint_due(sh, &c) {
            checkpoint(&mut c, &sh.health);
        }
        checkpoint_at = c.last_checkpoint + sh.policy.every;
        if sh.closed.load(Ordering::Acquire) && sh.queued.load(Ordering::Acquire) == 0 {
            checkpoint(&mut c, &sh.health);
            break;
        }
    }
}

/// Enough new records, or enough time, since the last signed checkpoint.
fn checkpoint_due(sh: &Shared, c: &Committer) -> bool {
    c.log.size() - c.log.checkpointed().0 >= sh.policy.every_records
        || c.last_checkpoint.elapsed() >= sh.policy.every
}

/// Records taken from the queue for one transaction, with their waiters.
#[derive(Default)]
struct Batch {
    records: Vec<Prepared>,
    acks: Vec<Option<oneshot::Sender<Result<u64, String>>>>,
    flushes: Vec<oneshot::Sender<()>>,
    durability: Durability,
}

impl Batch {
    fn of(msgs: Vec<Msg>) -> Self {
        let mut b = Self {
            records: Vec::with_capacity(msgs.len() + 1),
            acks: Vec::with_capacity(msgs.len() + 1),
            ..Self::default()
        };
        for m in msgs {
            match m {
                Msg::Record(job) => b.add(job),
                Msg::Flush(done) => b.flushes.push(done),
            }
        }
        b
    }

    fn add(&mut self, job: Job) {
        self.records.push(job.record);
        self.acks.push(job.ack);
        self.durability = self.durability.max(job.durability);
    }

    /// Puts the batch back at the head of the queue, in its order, for the writer.
    fn requeue(self, sh: &Shared) {
        let durability = self.durability;
        let msgs = self
            .records
            .into_iter()
            .zip(self.acks)
            .map(|(record, ack)| {
                Msg::Record(Job {
                    record,
                    durability,
                    ack,
                })
            })
            .chain(self.flushes.into_iter().map(Msg::Flush));
        if let Ok(mut q) = sh.queue.lock() {
            q.msgs.splice(0..0, msgs);
            q.since = Some(Instant::now());
            sh.queued.store(q.msgs.len(), Ordering::Release);
        }
    }
}

/// How a group commit ended.
enum Committed {
    /// The sequence number of the batch's last record (0 for a batch with none).
    Last(u64),
    /// Nothing was written; every waiter has been told why.
    Failed(String),
    /// A leader found another process holding the write lock: nothing was written and
    /// nobody was answered; the batch is handed back.
    Busy(Batch),
}

/// Commits the records of `batch` in one transaction and answers their waiters, then
/// answers its flushes (after a checkpoint). A leader never waits for another process's
/// write lock: it gets the batch back instead.
fn commit_batch(sh: &Shared, c: &mut Committer, mut batch: Batch, by_leader: bool) -> Committed {
    let health = &sh.health;
    let n = batch.acks.len() as u64;
    let mut gap_records = 0u64;
    if c.lost > 0 && n > 0 {
        let gap = Record::Event(
            EventRecord::new(now_ms(), "audit_gap", "warden")
                .reason(
                    "the audit log could not be written; the calls of these records were refused",
                )
                .detail("lost_records", c.lost),
        );
        if let Ok(p) = Prepared::new(&gap) {
            batch.records.insert(0, p);
            gap_records = 1;
        }
    }
    let out = if n == 0 {
        Committed::Last(0)
    } else {
        let appended = if by_leader {
            c.log.append_or_busy(&batch.records, batch.durability)
        } else {
            c.log.append(&batch.records, batch.durability)
        };
        match appended {
            Ok(first) => {
                for (i, ack) in batch.acks.drain(..).enumerate() {
                    if let Some(ack) = ack {
                        let _ = ack.send(Ok(first + gap_records + i as u64));
                    }
                }
                health.written.fetch_add(n, Ordering::Relaxed);
                health.commits.fetch_add(1, Ordering::Relaxed);
                if by_leader {
                    health.leader_commits.fetch_add(1, Ordering::Relaxed);
                }
                health.size.store(c.log.size(), Ordering::Relaxed);
                if health.failing.swap(false, Ordering::Relaxed) {
                    tracing::warn!(target: "warden::audit", lost = c.lost, "audit log writable again");
                }
                c.lost = 0;
                Committed::Last(first + gap_records + n - 1)
            }
            Err(AuditError::Busy) => {
                if gap_records == 1 {
                    batch.records.remove(0);
                }
                return Committed::Busy(batch);
            }
            Err(e) => {
                let msg = e.to_string();
                // The health counters first: a refused caller that looks at the metrics
                // must see the failure it was refused for.
                health.failed.fetch_add(n, Ordering::Relaxed);
                if !health.failing.swap(true, Ordering::Relaxed) {
                    tracing::error!(
                        target: "warden::audit",
                        "audit log cannot be written ({msg}); every call that needs a record is refused until it can"
                    );
                }
                if let Ok(mut last) = health.last_error.lock() {
                    last.clone_from(&msg);
                }
                c.lost += n;
                for ack in batch.acks.drain(..).flatten() {
                    let _ = ack.send(Err(msg.clone()));
                }
                Committed::Failed(msg)
            }
        }
    };
    if !batch.flushes.is_empty() {
        checkpoint(c, health);
        for done in batch.flushes {
            let _ = done.send(());
        }
    }
    out
}

fn checkpoint(c: &mut Committer, health: &AuditHealth) {
    c.last_checkpoint = Instant::now();
    match c.log.checkpoint(now_ms()) {
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

#[cfg(test)]
mod tests;
