//! `warden audit verify`: recomputes every leaf hash and the tree from the stored records,
//! checks every checkpoint's signature and that its signed root is the root of the records
//! it covers (which is what a consistency proof between two checkpoints proves: both are
//! prefixes of one sequence of leaves), and names the first record that does not fit.
//!
//! What it catches, and how it names it:
//! * a byte of a record changed → the record whose bytes no longer hash to its stored hash,
//!   or (if the stored hash was changed too) the first checkpoint whose root no longer
//!   matches and the range of records it covers;
//! * a record deleted → the missing sequence number;
//! * two records swapped → the record whose own `seq` is not its position;
//! * the tail cut off → a checkpoint covers more records than are left;
//! * a checkpoint replaced → its signature, or its root against the records.
//!
//! A thief who holds the checkpoint key can rewrite everything consistently; keep a signed
//! checkpoint elsewhere (`warden audit checkpoint`) and pass it with `--against` to catch
//! that too.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use ed25519_dalek::VerifyingKey;
use rusqlite::{Connection, OpenFlags};

use crate::log::{AUDIT_DB, AuditError};
use crate::merkle::{Frontier, Hash, leaf_hash};
use crate::note::{Checkpoint, parse_verifier_key};

/// One thing wrong with the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// No record with this sequence number (deleted).
    Missing { seq: u64 },
    /// The record's bytes do not hash to its stored leaf hash (changed).
    Changed { seq: u64 },
    /// The record at this position says it belongs at another (moved, reordered).
    Moved { seq: u64, claims: Option<u64> },
    /// A checkpoint whose signature does not verify, or that is not a checkpoint of this log.
    BadCheckpoint { size: u64, why: String },
    /// The records up to `size` do not have the root the checkpoint signed: one of the
    /// records from `from` (the previous good checkpoint) to `size - 1` was changed.
    RootMismatch { size: u64, from: u64 },
    /// A checkpoint covers more records than the log has (tail cut off).
    Truncated { checkpoint: u64, records: u64 },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing { seq } => write!(f, "record {seq} is missing (deleted)"),
            Self::Changed { seq } => {
                write!(
                    f,
                    "record {seq} was changed: its bytes do not hash to its leaf"
                )
            }
            Self::Moved {
                seq,
                claims: Some(c),
            } => {
                write!(
                    f,
                    "record {seq} is out of place: it was written as record {c}"
                )
            }
            Self::Moved { seq, claims: None } => {
                write!(
                    f,
                    "record {seq} is not a leaf of this log (no sequence number)"
                )
            }
            Self::BadCheckpoint { size, why } => write!(f, "checkpoint {size}: {why}"),
            Self::RootMismatch { size, from } => write!(
                f,
                "checkpoint {size} does not match the records: one of records {from}..{} was \
                 changed",
                size.saturating_sub(1)
            ),
            Self::Truncated {
                checkpoint,
                records,
            } => write!(
                f,
                "the log was cut: checkpoint {checkpoint} covers {checkpoint} records, only \
                 {records} are left"
            ),
        }
    }
}

/// What verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub records: u64,
    pub checkpoints: u64,
    /// The newest checkpoint's size (records after it are not yet covered by a signature).
    pub checkpointed: u64,
    pub root: Hash,
    pub problems: Vec<Problem>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The most problems listed; the first is what matters.
const MAX_PROBLEMS: usize = 20;

/// Opens `audit.db` of `data_dir` read-only.
pub fn open_read_only(data_dir: &Path) -> Result<Connection, AuditError> {
    let path = data_dir.join(AUDIT_DB);
    if !path.exists() {
        return Err(AuditError::Io {
            path: path.display().to_string(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no audit log here"),
        });
    }
    let conn = Connection::open_with_flags(
        &path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // Reading the whole log (verify, export, proofs) maps it instead of copying every page
    // through read(2).
    conn.pragma_update(None, "mmap_size", 1_i64 << 34)?;
    Ok(conn)
}

/// The `"seq":N}` a canonical leaf ends with.
fn leaf_seq(leaf: &[u8]) -> Option<u64> {
    let rest = leaf.strip_suffix(b"}")?;
    let at = rest.iter().rposition(|b| *b == b':')?;
    let (head, tail) = rest.split_at(at);
    if !head.ends_with(b",\"seq\"") {
        return None;
    }
    std::str::from_utf8(tail.get(1..)?).ok()?.parse().ok()
}

/// Verifies the log in `data_dir` against the checkpoint key `verifier_key`
/// (`<name>+<id>+<key>`). `progress(done, total)` is called as records are read.
pub fn verify(
    data_dir: &Path,
    verifier_key: &str,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Report, AuditError> {
    let (name, key) =
        parse_verifier_key(verifier_key).map_err(|e| AuditError::Corrupt(e.to_string()))?;
    let conn = open_read_only(data_dir)?;
    let mut problems = Vec::new();
    let checkpoints = load_checkpoints(&conn, &name, &key, &mut problems)?;
    let total: u64 = conn.query_row("SELECT COUNT(*) FROM records", [], |r| r.get(0))?;
    let mut stmt = conn.prepare("SELECT seq, leaf, leaf_hash FROM records ORDER BY seq")?;
    let mut rows = stmt.query([])?;
    let mut walk = Walk {
        checkpoints: &checkpoints,
        frontier: Frontier::new(),
        next_cp: 0,
        last_good: 0,
        mismatch_seen: false,
        problems: &mut problems,
    };
    // This thread reads rows (SQLite's work and a copy); a second one hashes the leaves and
    // folds them into the tree, a chunk behind.
    let folded = AtomicU64::new(0);
    std::thread::scope(|scope| -> Result<(), AuditError> {
        let (to_fold, chunks) = std::sync::mpsc::sync_channel::<Chunk>(4);
        let folder = scope.spawn(|| {
            for chunk in chunks {
                walk.fold(&chunk);
                folded.fetch_add(chunk.seqs.len() as u64, Ordering::Relaxed);
            }
        });
        let mut chunk = Chunk::with_capacity(CHUNK);
        while let Some(row) = rows.next()? {
            let seq: u64 = row.get(0)?;
            let leaf = row.get_ref(1)?.as_bytes().map_err(rusqlite::Error::from)?;
            let stored = row.get_ref(2)?.as_blob().map_err(rusqlite::Error::from)?;
            chunk.push(seq, leaf, stored);
            if chunk.seqs.len() == CHUNK {
                let full = std::mem::replace(&mut chunk, Chunk::with_capacity(CHUNK));
                to_fold
                    .send(full)
                    .map_err(|_| AuditError::Corrupt("the hashing thread stopped".into()))?;
                progress(folded.load(Ordering::Relaxed), total);
            }
        }
        if !chunk.seqs.is_empty() {
            to_fold
                .send(chunk)
                .map_err(|_| AuditError::Corrupt("the hashing thread stopped".into()))?;
        }
        drop(to_fold);
        folder
            .join()
            .map_err(|_| AuditError::Corrupt("the hashing thread failed".into()))
    })?;
    progress(folded.load(Ordering::Relaxed), total);
    let Walk { frontier, .. } = walk;
    if let Some((size, _)) = checkpoints.last()
        && *size > frontier.size()
    {
        note(
            Problem::Truncated {
                checkpoint: *size,
                records: frontier.size(),
            },
            &mut problems,
        );
    }
    Ok(Report {
        records: frontier.size(),
        checkpoints: checkpoints.len() as u64,
        checkpointed: checkpoints.last().map_or(0, |c| c.0),
        root: frontier.root(),
        problems,
    })
}

/// Rows read per chunk handed to the hashing thread.
const CHUNK: usize = 8192;

/// Consecutive rows, their leaves in one buffer.
struct Chunk {
    seqs: Vec<u64>,
    /// Where each leaf ends in `bytes`.
    ends: Vec<usize>,
    bytes: Vec<u8>,
    stored: Vec<u8>,
}

impl Chunk {
    fn with_capacity(rows: usize) -> Self {
        Self {
            seqs: Vec::with_capacity(rows),
            ends: Vec::with_capacity(rows),
            bytes: Vec::with_capacity(rows * 1024),
            stored: Vec::with_capacity(rows * 32),
        }
    }

    fn push(&mut self, seq: u64, leaf: &[u8], stored: &[u8]) {
        self.seqs.push(seq);
        self.bytes.extend_from_slice(leaf);
        self.ends.push(self.bytes.len());
        // A stored hash of the wrong length never equals a computed one.
        let mut h = [0xff; 32];
        if let Some(dst) = h.get_mut(..stored.len()) {
            dst.copy_from_slice(stored);
        }
        self.stored.extend_from_slice(&h);
    }

    fn leaves(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter().copied())
            .map(|(a, b)| self.bytes.get(a..b).unwrap_or_default())
    }
}

fn note(p: Problem, problems: &mut Vec<Problem>) {
    if problems.len() < MAX_PROBLEMS {
        problems.push(p);
    }
}

/// The tree so far and the checkpoints it is checked against, in leaf order.
struct Walk<'a> {
    checkpoints: &'a [(u64, Hash)],
    frontier: Frontier,
    next_cp: usize,
    last_good: u64,
    mismatch_seen: bool,
    problems: &'a mut Vec<Problem>,
}

impl Walk<'_> {
    fn fold(&mut self, chunk: &Chunk) {
        let rows = chunk.seqs.iter().zip(chunk.leaves());
        for ((seq, leaf), stored) in rows.zip(chunk.stored.chunks_exact(32)) {
            let (seq, position) = (*seq, self.frontier.size());
            if seq > position {
                note(Problem::Missing { seq: position }, self.problems);
            }
            let h = leaf_hash(leaf);
            if h.as_slice() != stored {
                note(Problem::Changed { seq }, self.problems);
            }
            let claims = leaf_seq(leaf);
            if claims != Some(seq) {
                note(Problem::Moved { seq, claims }, self.problems);
            }
            self.frontier.push(h);
            while let Some((size, root)) = self.checkpoints.get(self.next_cp) {
                if *size > self.frontier.size() {
                    break;
                }
                if *size == self.frontier.size() {
                    if self.frontier.root() == *root {
                        self.last_good = *size;
                    } else if !self.mismatch_seen {
                        self.mismatch_seen = true;
                        note(
                            Problem::RootMismatch {
                                size: *size,
                                from: self.last_good,
                            },
                            self.problems,
                        );
                    }
                }
                self.next_cp += 1;
            }
        }
    }
}

/// The checkpoints whose signature verifies, by size; the others become problems.
fn load_checkpoints(
    conn: &Connection,
    name: &str,
    key: &VerifyingKey,
    problems: &mut Vec<Problem>,
) -> Result<Vec<(u64, Hash)>, AuditError> {
    let mut stmt = conn.prepare("SELECT size, note FROM checkpoints ORDER BY size")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, u64>(0)?, r.get::<_, String>(1)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (size, note) = row?;
        match Checkpoint::open(&note, name, key) {
            Ok(cp) if cp.size == size && cp.origin == name => out.push((size, cp.root)),
            Ok(cp) => problems.push(Problem::BadCheckpoint {
                size,
                why: format!(
                    "it is stored as checkpoint {size} but signs {} records of `{}`",
                    cp.size, cp.origin
                ),
            }),
            Err(e) => problems.push(Problem::BadCheckpoint {
                size,
                why: e.to_string(),
            }),
        }
    }
    Ok(out)
}

/// Checks the log against a signed checkpoint kept elsewhere: it must verify under the
/// key, and the log's first `size` records must have its root.
pub fn verify_against(
    data_dir: &Path,
    verifier_key: &str,
    note: &str,
) -> Result<Result<Checkpoint, String>, AuditError> {
    let (name, key) =
        parse_verifier_key(verifier_key).map_err(|e| AuditError::Corrupt(e.to_string()))?;
    let cp = match Checkpoint::open(note, &name, &key) {
        Ok(cp) => cp,
        Err(e) => return Ok(Err(format!("the given checkpoint: {e}"))),
    };
    let conn = open_read_only(data_dir)?;
    let mut stmt = conn.prepare("SELECT leaf FROM records WHERE seq < ?1 ORDER BY seq")?;
    let mut rows = stmt.query([cp.size])?;
    let mut f = Frontier::new();
    while let Some(row) = rows.next()? {
        f.push(leaf_hash(
            row.get_ref(0)?.as_bytes().map_err(rusqlite::Error::from)?,
        ));
    }
    Ok(if f.size() < cp.size {
        Err(format!(
            "the log was cut: the given checkpoint covers {} records, only {} are left",
            cp.size,
            f.size()
        ))
    } else if f.root() != cp.root {
        Err(format!(
            "the first {} records are not the ones the given checkpoint signed",
            cp.size
        ))
    } else {
        Ok(cp)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_sequence_number_at_the_end_of_a_leaf() {
        assert_eq!(leaf_seq(br#"{"record":{"a":1},"seq":17}"#), Some(17));
        assert_eq!(leaf_seq(br#"{"record":{"seq":3}}"#), None);
        assert_eq!(leaf_seq(b"garbage"), None);
    }
}
