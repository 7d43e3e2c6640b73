//! The audit log on disk: `audit.db` (SQLite, WAL) in the data directory, one row per
//! record in leaf order, signed checkpoints beside them, and the checkpoint signing key in
//! `keys/audit-ed25519.key` (C2SP private key format, 0600).
//!
//! A leaf is the RFC 8785 form of `{"record": <record>, "seq": <index>}`: the record's
//! position is inside what is hashed, so moving a record is as visible as changing it.
//! Several processes may append (the server, an offline `warden agent` command): every
//! append takes SQLite's write lock (`BEGIN IMMEDIATE`) and first folds in whatever
//! another process appended since, so the in-memory right edge of the tree is always the
//! edge of what is on disk.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::SigningKey;
use rusqlite::{Connection, OptionalExtension, params};

use crate::merkle::{Frontier, Hash, leaf_hash};
use crate::note::{self, Checkpoint};
use crate::record::Record;

/// The database file inside the data directory.
pub const AUDIT_DB: &str = "audit.db";
/// The checkpoint signing key, inside the data directory.
pub const AUDIT_KEY: &str = "keys/audit-ed25519.key";

/// Why the audit log could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit database: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("the audit log is damaged: {0}")]
    Corrupt(String),
    #[error("the audit writer has stopped")]
    Stopped,
    #[error("the audit queue is full ({0} records waiting)")]
    Full(usize),
    #[error("could not encode the record: {0}")]
    Encode(String),
    #[error("another process holds the audit log's write lock")]
    Busy,
}

/// How durable a record must be before the call it permits is forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord)]
pub enum Durability {
    /// Committed to the write-ahead log with `write(2)`: survives a crash of Warden (kill -9,
    /// panic, OOM kill), not a crash of the operating system.
    #[default]
    Process,
    /// Committed and `fsync`ed: survives power loss. One `fdatasync` per group commit.
    Disk,
}

impl Durability {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Process => "process",
            Self::Disk => "disk",
        }
    }
}

/// A record ready to append: its canonical bytes and the columns it is found by.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub(crate) body: Vec<u8>,
    pub(crate) kind: &'static str,
    pub(crate) time_ms: i64,
    pub(crate) agent: Option<String>,
    pub(crate) task: Option<String>,
    pub(crate) decision: String,
}

impl Prepared {
    /// Canonicalises `r` (RFC 8785).
    pub fn new(r: &Record) -> Result<Self, AuditError> {
        let v = serde_json::to_value(r).map_err(|e| AuditError::Encode(e.to_string()))?;
        Ok(Self {
            body: crate::jcs::to_vec(&v),
            kind: r.kind(),
            time_ms: r.time_ms(),
            agent: r.agent().map(str::to_owned),
            task: r.task().map(str::to_owned),
            decision: r.decision().to_owned(),
        })
    }
}

/// The canonical leaf for a record body at `seq`: `{"record":<body>,"seq":<seq>}` ("record"
/// sorts before "seq", so this is the RFC 8785 form when `body` is).
pub fn leaf_bytes(body: &[u8], seq: u64) -> Vec<u8> {
    let mut leaf = Vec::with_capacity(body.len() + 32);
    leaf.extend_from_slice(b"{\"record\":");
    leaf.extend_from_slice(body);
    leaf.extend_from_slice(b",\"seq\":");
    leaf.extend_from_slice(seq.to_string().as_bytes());
    leaf.push(b'}');
    leaf
}

/// A checkpoint as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub size: u64,
    pub time_ms: i64,
    /// The signed note.
    pub note: String,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS records (
    seq       INTEGER PRIMARY KEY,
    time_ms   INTEGER NOT NULL,
    kind      TEXT NOT NULL,
    agent     TEXT,
    task      TEXT,
    decision  TEXT NOT NULL,
    leaf      TEXT NOT NULL,
    leaf_hash BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS records_agent ON records (agent, time_ms);
CREATE INDEX IF NOT EXISTS records_task ON records (task);
CREATE INDEX IF NOT EXISTS records_time ON records (time_ms);
CREATE TABLE IF NOT EXISTS checkpoints (
    size     INTEGER PRIMARY KEY,
    time_ms  INTEGER NOT NULL,
    note     TEXT NOT NULL,
    frontier BLOB NOT NULL
);
";

/// The sequence number the next record gets, as the database sees it.
const NEXT_SEQ: &str = "SELECT COALESCE(MAX(seq) + 1, 0) FROM records";

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AuditError + '_ {
    move |source| AuditError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Reads the checkpoint key, creating it (named `origin`) if there is none.
fn load_or_create_key(path: &Path, origin: &str) -> Result<(String, SigningKey), AuditError> {
    if path.exists() {
        let text = std::fs::read_to_string(path).map_err(io(path))?;
        return parse_private_key(&text).ok_or_else(|| {
            AuditError::Corrupt(format!(
                "{} is not a C2SP Ed25519 private key (PRIVATE+KEY+<name>+<id>+<key>)",
                path.display()
            ))
        });
    }
    let key = SigningKey::generate(&mut rand_core::OsRng);
    let vkey = note::verifier_key(origin, &key.verifying_key());
    let id = vkey.split('+').nth(1).unwrap_or_default();
    let mut raw = vec![1u8];
    raw.extend_from_slice(key.as_bytes());
    let text = format!("PRIVATE+KEY+{origin}+{id}+{}\n", STANDARD.encode(raw));
    if let Some(dir) = path.parent() {
        let mut b = std::fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
        b.create(dir).map_err(io(dir))?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path).map_err(io(path))?;
    std::io::Write::write_all(&mut f, text.as_bytes()).map_err(io(path))?;
    f.sync_all().map_err(io(path))?;
    Ok((origin.to_owned(), key))
}

fn parse_private_key(text: &str) -> Option<(String, SigningKey)> {
    let rest = text.trim().strip_prefix("PRIVATE+KEY+")?;
    // The name never holds a `+`; the base64 key may.
    let mut parts = rest.splitn(3, '+');
    let (name, _id, raw) = (parts.next()?, parts.next()?, parts.next()?);
    let raw = STANDARD.decode(raw).ok()?;
    let (&1, seed) = raw.split_first()? else {
        return None;
    };
    Some((
        name.to_owned(),
        SigningKey::from_bytes(seed.try_into().ok()?),
    ))
}

fn frontier_blob(f: &Frontier) -> Vec<u8> {
    f.nodes().concat()
}

fn hash_of(blob: &[u8]) -> Result<Hash, AuditError> {
    blob.try_into()
        .map_err(|_| AuditError::Corrupt(format!("a stored hash has {} bytes", blob.len())))
}

/// The audit log of one data directory, opened for appending.
pub struct AuditLog {
    conn: Connection,
    path: PathBuf,
    origin: String,
    key: SigningKey,
    frontier: Frontier,
    /// Size and time of the newest checkpoint.
    checkpointed: (u64, i64),
    /// Whether the connection currently commits with `synchronous=FULL`.
    fsync: bool,
    /// The log's size after each commit, for the WAL checkpoint thread.
    committed: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path)
            .field("origin", &self.origin)
            .field("size", &self.frontier.size())
            .finish_non_exhaustive()
    }
}

/// How long a commit waits for another process's write lock before it fails.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Opens `audit.db` read-write, creating its tables.
pub(crate) fn connect(path: &Path) -> Result<Connection, AuditError> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // Group commits write megabytes at a time: checkpoint the WAL into the database every
    // 64 MiB rather than every 4 MiB (each checkpoint fsyncs), and keep the indexes' hot
    // pages in a 64 MiB cache.
    conn.pragma_update(None, "wal_autocheckpoint", 16_384)?;
    conn.pragma_update(None, "cache_size", -65_536)?;
    conn.pragma_update(None, "journal_size_limit", 67_108_864)?;
    // Another writer (an offline `warden agent` command) holds the lock for milliseconds;
    // longer than this and calls waiting for their records are refused rather than hung.
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

impl AuditLog {
    /// Opens (creating if needed) the audit log of `data_dir`. A new log is named `origin`
    /// (the checkpoints' first line and the key's name); an existing one keeps its name.
    pub fn open(data_dir: &Path, origin: &str) -> Result<Self, AuditError> {
        let path = data_dir.join(AUDIT_DB);
        let (origin, key) = load_or_create_key(&data_dir.join(AUDIT_KEY), origin)?;
        let conn = connect(&path)?;
        conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('origin', ?1)",
            [&origin],
        )?;
        let mut log = Self {
            conn,
            path,
            origin,
            key,
            frontier: Frontier::new(),
            checkpointed: (0, 0),
            fsync: false,
            committed: std::sync::Arc::default(),
        };
        log.load_tail()?;
        Ok(log)
    }

    /// Rebuilds the right edge: from the newest checkpoint's stored frontier (checked
    /// against its signed root), then every leaf after it.
    fn load_tail(&mut self) -> Result<(), AuditError> {
        let newest: Option<(u64, i64, String, Vec<u8>)> = self
            .conn
            .query_row(
                "SELECT size, time_ms, note, frontier FROM checkpoints ORDER BY size DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        self.frontier = Frontier::new();
        self.checkpointed = (0, 0);
        if let Some((size, time, note, blob)) = newest {
            let nodes = blob
                .chunks(32)
                .map(hash_of)
                .collect::<Result<Vec<_>, _>>()?;
            let f = Frontier::from_parts(size, nodes).ok_or_else(|| {
                AuditError::Corrupt(format!("the stored edge of checkpoint {size} is malformed"))
            })?;
            let cp = Checkpoint::open(&note, &self.origin, &self.key.verifying_key())
                .map_err(|e| AuditError::Corrupt(format!("checkpoint {size}: {e}")))?;
            if cp.size != size || cp.root != f.root() {
                return Err(AuditError::Corrupt(format!(
                    "checkpoint {size} does not match its stored tree edge"
                )));
            }
            self.frontier = f;
            self.checkpointed = (size, time);
        }
        self.catch_up()
    }

    /// Folds in leaves appended (by any process) beyond the in-memory edge.
    fn catch_up(&mut self) -> Result<(), AuditError> {
        let on_disk: u64 = self
            .conn
            .prepare_cached(NEXT_SEQ)?
            .query_row([], |r| r.get(0))?;
        let size = self.frontier.size();
        if on_disk < size {
            return Err(AuditError::Corrupt(format!(
                "the log has {on_disk} records but {size} were written; records were removed"
            )));
        }
        if on_disk == size {
            return Ok(());
        }
        let mut stmt = self
            .conn
            .prepare_cached("SELECT seq, leaf_hash FROM records WHERE seq >= ?1 ORDER BY seq")?;
        let mut rows = stmt.query([size])?;
        while let Some(row) = rows.next()? {
            let seq: u64 = row.get(0)?;
            if seq != self.frontier.size() {
                return Err(AuditError::Corrupt(format!(
                    "record {} is missing",
                    self.frontier.size()
                )));
            }
            let h: Vec<u8> = row.get(1)?;
            self.frontier.push(hash_of(&h)?);
        }
        Ok(())
    }

    /// The log's name (first line of its checkpoints).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The verifier key of the checkpoints (`<origin>+<id>+<key>`).
    pub fn verifier_key(&self) -> String {
        note::verifier_key(&self.origin, &self.key.verifying_key())
    }

    /// How many records.
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// The root over every record.
    pub fn root(&self) -> Hash {
        self.frontier.root()
    }

    /// Size and time (ms) of the newest checkpoint.
    pub fn checkpointed(&self) -> (u64, i64) {
        self.checkpointed
    }

    fn set_fsync(&mut self, on: bool) -> Result<(), AuditError> {
        if self.fsync != on {
            let mode = if on { "FULL" } else { "NORMAL" };
            self.conn.pragma_update(None, "synchronous", mode)?;
            self.fsync = on;
        }
        Ok(())
    }

    /// Appends `batch` in one transaction; returns the sequence number of its first record.
    /// Nothing is appended if it fails.
    pub fn append(
        &mut self,
        batch: &[Prepared],
        durability: Durability,
    ) -> Result<u64, AuditError> {
        self.set_fsync(durability == Durability::Disk)?;
        let before = self.frontier.clone();
        let out = self.append_tx(batch);
        if out.is_err() {
            self.frontier = before;
        }
        out
    }

    /// As [`append`](Self::append), but when another process holds the write lock it gives
    /// up at once with [`AuditError::Busy`] (nothing appended) instead of waiting: for a
    /// caller that must not block, and can hand the batch to one that may.
    pub fn append_or_busy(
        &mut self,
        batch: &[Prepared],
        durability: Durability,
    ) -> Result<u64, AuditError> {
        self.conn.busy_timeout(std::time::Duration::ZERO)?;
        let out = self.append(batch, durability);
        self.conn.busy_timeout(BUSY_TIMEOUT)?;
        match out {
            Err(AuditError::Database(rusqlite::Error::SqliteFailure(e, _)))
                if e.code == rusqlite::ErrorCode::DatabaseBusy =>
            {
                Err(AuditError::Busy)
            }
            other => other,
        }
    }

    fn append_tx(&mut self, batch: &[Prepared]) -> Result<u64, AuditError> {
        let tx = rusqlite::Transaction::new_unchecked(
            &self.conn,
            rusqlite::TransactionBehavior::Immediate,
        )?;
        // Another process may have appended since: fold its leaves in first.
        {
            // Cached: parsing this statement on every commit cost more than running it.
            let on_disk: u64 = tx.prepare_cached(NEXT_SEQ)?.query_row([], |r| r.get(0))?;
            if on_disk != self.frontier.size() {
                drop(tx);
                self.catch_up()?;
                return self.append_tx(batch);
            }
        }
        let first = self.frontier.size();
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO records (seq, time_ms, kind, agent, task, decision, leaf, leaf_hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for p in batch {
                let seq = self.frontier.size();
                let leaf = leaf_bytes(&p.body, seq);
                let h = leaf_hash(&leaf);
                // The leaf is UTF-8: canonical JSON of a serde value.
                let text =
                    std::str::from_utf8(&leaf).map_err(|e| AuditError::Encode(e.to_string()))?;
                stmt.execute(params![
                    seq,
                    p.time_ms,
                    p.kind,
                    p.agent,
                    p.task,
                    p.decision,
                    text,
                    &h[..]
                ])?;
                self.frontier.push(h);
            }
        }
        tx.commit()?;
        self.committed
            .store(self.frontier.size(), Ordering::Relaxed);
        Ok(first)
    }

    /// Signs and stores a checkpoint over every record, unless the newest one already
    /// covers them all. Returns the signed note when one was made.
    pub fn checkpoint(&mut self, now_ms: i64) -> Result<Option<String>, AuditError> {
        self.catch_up()?;
        let size = self.frontier.size();
        if size == 0 || size == self.checkpointed.0 {
            return Ok(None);
        }
        let note = Checkpoint {
            origin: self.origin.clone(),
            size,
            root: self.frontier.root(),
        }
        .sign(&self.origin, &self.key);
        self.conn.execute(
            "INSERT OR IGNORE INTO checkpoints (size, time_ms, note, frontier) VALUES (?1, ?2, ?3, ?4)",
            params![size, now_ms, note, frontier_blob(&self.frontier)],
        )?;
        self.checkpointed = (size, now_ms);
        Ok(Some(note))
    }

    /// Moves SQLite's WAL checkpoints (copying committed pages into the database file, with
    /// an `fsync` each) off this connection to a thread of their own, so a group commit
    /// rarely waits for one. Once `CHECKPOINT_RECORDS` more records are committed, or the log
    /// has been quiet for a second, the thread copies what is committed (PASSIVE: never
    /// blocking the writer); under sustained load the WAL never empties that way, so once it
    /// passes `WAL_RESTART_PAGES` the thread restarts it (the writer waits only for the few
    /// pages the last pass left). Stops when the returned handle is dropped. Until it has
    /// started, and if it cannot, SQLite's own automatic checkpoints stay on.
    pub fn checkpoint_in_background(&mut self) -> Result<WalCheckpointer, AuditError> {
        let conn = connect(&self.path)?;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let path = self.path.display().to_string();
        let committed = std::sync::Arc::clone(&self.committed);
        let handle = std::thread::Builder::new()
            .name("warden-audit-wal".into())
            .spawn(move || {
                let every = std::time::Duration::from_millis(100);
                let (mut last, mut idle_ticks) = (committed.load(Ordering::Relaxed), 0u32);
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(every)
                {
                    // Only when enough is waiting, or the log has been quiet for a second:
                    // each pass costs two fsyncs, which a light load should not pay often.
                    let now = committed.load(Ordering::Relaxed);
                    idle_ticks = if now == last { idle_ticks + 1 } else { 0 };
                    let due = now.saturating_sub(last) >= CHECKPOINT_RECORDS
                        || (idle_ticks == 10 && now > last);
                    if !due {
                        continue;
                    }
                    last = now;
                    let pass = |mode: &str| -> Result<i64, rusqlite::Error> {
                        conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| r.get(1))
                    };
                    let out = pass("PASSIVE").and_then(|frames| {
                        if frames > WAL_RESTART_PAGES {
                            pass("RESTART")?;
                        }
                        Ok(())
                    });
                    if let Err(e) = out {
                        tracing::warn!(target: "warden::audit", "{path}: WAL checkpoint: {e}");
                    }
                }
                // A last one on the way out, so the next start begins with a short WAL.
                let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
            })
            .map_err(|e| AuditError::Io {
                path: self.path.display().to_string(),
                source: e,
            })?;
        self.conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        Ok(WalCheckpointer {
            stop: Some(stop),
            handle: Some(handle),
        })
    }

    /// Appends one record now (offline commands), with a checkpoint after it.
    pub fn append_now(&mut self, r: &Record, now_ms: i64) -> Result<u64, AuditError> {
        let seq = self.append(&[Prepared::new(r)?], Durability::Disk)?;
        self.checkpoint(now_ms)?;
        Ok(seq)
    }
}

/// Records committed since the last background checkpoint that make the next one due.
const CHECKPOINT_RECORDS: u64 = 8_192;

/// WAL pages (4 KiB) past which the checkpoint thread restarts the WAL.
const WAL_RESTART_PAGES: i64 = 16_384;

/// The thread that checkpoints the WAL for a writer; dropping it stops the thread after a
/// last checkpoint.
#[derive(Debug)]
pub struct WalCheckpointer {
    stop: Option<std::sync::mpsc::Sender<()>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Drop for WalCheckpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A name for a new log when none is configured: `warden.local/audit/<random id>`.
pub fn default_origin() -> String {
    let mut id = [0u8; 6];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut id);
    format!("warden.local/audit/{}", hex::encode(id))
}

/// Reads the verifier key for the log in `data_dir` from its key file.
pub fn verifier_key(data_dir: &Path) -> Result<String, AuditError> {
    let path = data_dir.join(AUDIT_KEY);
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    let (name, key) = parse_private_key(&text).ok_or_else(|| {
        AuditError::Corrupt(format!(
            "{} is not a C2SP Ed25519 private key",
            path.display()
        ))
    })?;
    Ok(note::verifier_key(&name, &key.verifying_key()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::EventRecord;

    fn ev(i: i64) -> Record {
        Record::Event(EventRecord::new(i, "test", "cli").detail("i", i))
    }

    #[test]
    fn appends_checkpoints_and_reopens_where_it_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = AuditLog::open(dir.path(), "test.example/audit").unwrap();
        let batch: Vec<Prepared> = (0..5).map(|i| Prepared::new(&ev(i)).unwrap()).collect();
        assert_eq!(log.append(&batch, Durability::Process).unwrap(), 0);
        assert_eq!(log.append(&batch[..2], Durability::Disk).unwrap(), 5);
        let note = log.checkpoint(10).unwrap().unwrap();
        assert!(note.starts_with("test.example/audit\n7\n"));
        assert_eq!(log.checkpoint(11).unwrap(), None);
        log.append(&batch[..1], Durability::Process).unwrap();
        let root = log.root();
        drop(log);
        let log = AuditLog::open(dir.path(), "ignored").unwrap();
        assert_eq!(log.origin(), "test.example/audit");
        assert_eq!((log.size(), log.root()), (8, root));
        assert_eq!(log.checkpointed(), (7, 10));
    }

    /// Two handles on one file (the server and an offline command) interleave appends
    /// and both keep the right tree.
    #[test]
    fn two_writers_share_one_tree() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = AuditLog::open(dir.path(), "x").unwrap();
        let mut b = AuditLog::open(dir.path(), "x").unwrap();
        let one = [Prepared::new(&ev(1)).unwrap()];
        a.append(&one, Durability::Process).unwrap();
        assert_eq!(b.append(&one, Durability::Process).unwrap(), 1);
        assert_eq!(a.append(&one, Durability::Process).unwrap(), 2);
        b.checkpoint(1).unwrap();
        assert_eq!(a.root(), b.root());
        let leaves: Vec<Hash> = {
            let mut s = a
                .conn
                .prepare("SELECT leaf FROM records ORDER BY seq")
                .unwrap();
            s.query_map([], |r| r.get::<_, String>(0))
                .unwrap()
                .map(|l| leaf_hash(l.unwrap().as_bytes()))
                .collect()
        };
        assert_eq!(crate::merkle::root(&leaves), a.root());
    }

    /// With checkpoints on their own thread, the writer's connection never checkpoints; the
    /// thread's last pass (when its handle is dropped) copies every committed page into the
    /// database, and everything appended is there on reopening.
    #[test]
    fn wal_checkpoints_run_on_their_own_thread() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = AuditLog::open(dir.path(), "x").unwrap();
        let wal = log.checkpoint_in_background().unwrap();
        let auto: i64 = log
            .conn
            .query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
            .unwrap();
        assert_eq!(auto, 0);
        let batch: Vec<Prepared> = (0..200).map(|i| Prepared::new(&ev(i)).unwrap()).collect();
        for _ in 0..5 {
            log.append(&batch, Durability::Process).unwrap();
        }
        let db = dir.path().join(AUDIT_DB);
        drop(wal);
        // 1,000 records of ~100 bytes: only a checkpoint puts them in the database file.
        let size = std::fs::metadata(&db).unwrap().len();
        assert!(size > 100_000, "audit.db is {size} bytes: not checkpointed");
        let root = log.root();
        drop(log);
        let log = AuditLog::open(dir.path(), "x").unwrap();
        assert_eq!((log.size(), log.root()), (1000, root));
    }

    #[test]
    fn the_leaf_is_the_canonical_form_of_record_and_seq() {
        let p = Prepared::new(&ev(3)).unwrap();
        let leaf = leaf_bytes(&p.body, 42);
        let v: serde_json::Value = serde_json::from_slice(&leaf).unwrap();
        assert_eq!(crate::jcs::to_vec(&v), leaf);
        assert_eq!(v["seq"], 42);
        assert_eq!(v["record"]["kind"], "event");
    }
}
