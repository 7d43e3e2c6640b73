//! Reading the log: records by agent, task, time and decision (AU-4), the newest
//! checkpoint, and inclusion and consistency proofs against stored checkpoints.

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension};
use serde::Serialize;
use serde_json::Value;

use crate::log::{AuditError, StoredCheckpoint};
use crate::merkle::{self, Hash};

/// Which records. Every set field must match.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub agent: Option<String>,
    pub task: Option<String>,
    /// Unix milliseconds, inclusive.
    pub since_ms: Option<i64>,
    /// Unix milliseconds, exclusive.
    pub until_ms: Option<i64>,
    /// `allow`, `deny`, `require_approval` (decision records), an outcome status, or an
    /// event name.
    pub decision: Option<String>,
    /// `decision`, `outcome`, `event`.
    pub kind: Option<String>,
    /// Records after this sequence number (paging).
    pub after_seq: Option<u64>,
    pub limit: Option<u64>,
}

/// One stored record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    pub seq: u64,
    pub record: Value,
}

/// Records matching `f`, oldest first.
pub fn query(conn: &Connection, f: &Filter) -> Result<Vec<Entry>, AuditError> {
    leaves(conn, f)?
        .into_iter()
        .map(|(seq, leaf)| {
            let mut v: Value = serde_json::from_str(&leaf)
                .map_err(|e| AuditError::Corrupt(format!("record {seq} is not JSON: {e}")))?;
            Ok(Entry {
                seq,
                record: v.get_mut("record").map(Value::take).unwrap_or(Value::Null),
            })
        })
        .collect()
}

/// The stored leaves (canonical bytes, as hashed) of the records matching `f`.
pub fn leaves(conn: &Connection, f: &Filter) -> Result<Vec<(u64, String)>, AuditError> {
    let mut sql = String::from("SELECT seq, leaf FROM records WHERE 1=1");
    let mut args: Vec<SqlValue> = Vec::new();
    let mut cond = |col: &str, op: &str, v: SqlValue| {
        args.push(v);
        sql.push_str(&format!(" AND {col} {op} ?{}", args.len()));
    };
    let text = |s: &String| SqlValue::Text(s.clone());
    if let Some(a) = &f.agent {
        cond("agent", "=", text(a));
    }
    if let Some(t) = &f.task {
        cond("task", "=", text(t));
    }
    if let Some(s) = f.since_ms {
        cond("time_ms", ">=", SqlValue::Integer(s));
    }
    if let Some(u) = f.until_ms {
        cond("time_ms", "<", SqlValue::Integer(u));
    }
    if let Some(d) = &f.decision {
        cond("decision", "=", text(d));
    }
    if let Some(k) = &f.kind {
        cond("kind", "=", text(k));
    }
    if let Some(s) = f.after_seq {
        cond(
            "seq",
            ">",
            SqlValue::Integer(i64::try_from(s).unwrap_or(i64::MAX)),
        );
    }
    sql.push_str(" ORDER BY seq");
    if let Some(l) = f.limit {
        sql.push_str(&format!(" LIMIT {l}"));
    }
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args), |r| {
        Ok((r.get::<_, u64>(0)?, r.get::<_, String>(1)?))
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// The newest checkpoint, if any.
pub fn latest_checkpoint(conn: &Connection) -> Result<Option<StoredCheckpoint>, AuditError> {
    checkpoint_at_least(conn, 0)
}

/// The newest checkpoint covering at least `size` records.
fn checkpoint_at_least(
    conn: &Connection,
    size: u64,
) -> Result<Option<StoredCheckpoint>, AuditError> {
    Ok(conn
        .query_row(
            "SELECT size, time_ms, note FROM checkpoints WHERE size >= ?1 ORDER BY size DESC LIMIT 1",
            [size],
            |r| {
                Ok(StoredCheckpoint {
                    size: r.get(0)?,
                    time_ms: r.get(1)?,
                    note: r.get(2)?,
                })
            },
        )
        .optional()?)
}

fn leaf_hashes(conn: &Connection, size: u64) -> Result<Vec<Hash>, AuditError> {
    let mut stmt = conn.prepare("SELECT leaf FROM records WHERE seq < ?1 ORDER BY seq")?;
    let mut rows = stmt.query([size])?;
    let mut out = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    while let Some(row) = rows.next()? {
        out.push(merkle::leaf_hash(
            row.get_ref(0)?.as_bytes().map_err(rusqlite::Error::from)?,
        ));
    }
    if out.len() as u64 != size {
        return Err(AuditError::Corrupt(format!(
            "the log has {} of the {size} records the checkpoint covers; run `warden audit verify`",
            out.len()
        )));
    }
    Ok(out)
}

/// An inclusion proof of one record in a signed checkpoint (RFC 9162 §2.1.3).
#[derive(Debug, Clone, Serialize)]
pub struct InclusionProof {
    pub seq: u64,
    /// The leaf bytes as stored (canonical JSON).
    pub leaf: String,
    /// SHA-256(0x00 ‖ leaf), base64.
    pub leaf_hash: String,
    pub tree_size: u64,
    /// Sibling hashes from the leaf up, base64.
    pub proof: Vec<String>,
    /// The signed checkpoint the proof leads to.
    pub checkpoint: String,
}

fn b64(h: &Hash) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(h)
}

/// Proves record `seq` against the newest checkpoint (which must cover it).
pub fn prove_inclusion(conn: &Connection, seq: u64) -> Result<InclusionProof, AuditError> {
    let cp = checkpoint_at_least(conn, seq + 1)?.ok_or_else(|| {
        AuditError::Corrupt(format!(
            "no checkpoint covers record {seq} yet (checkpoints are signed every few seconds); \
             try again shortly"
        ))
    })?;
    let leaf: String = conn
        .query_row("SELECT leaf FROM records WHERE seq = ?1", [seq], |r| {
            r.get(0)
        })
        .optional()?
        .ok_or_else(|| AuditError::Corrupt(format!("there is no record {seq}")))?;
    let leaves = leaf_hashes(conn, cp.size)?;
    let idx = usize::try_from(seq).map_err(|e| AuditError::Corrupt(e.to_string()))?;
    let proof = merkle::inclusion_proof(&leaves, idx).unwrap_or_default();
    Ok(InclusionProof {
        seq,
        leaf_hash: b64(&merkle::leaf_hash(leaf.as_bytes())),
        leaf,
        tree_size: cp.size,
        proof: proof.iter().map(b64).collect(),
        checkpoint: cp.note,
    })
}

/// A consistency proof between two stored checkpoints (RFC 9162 §2.1.4).
#[derive(Debug, Clone, Serialize)]
pub struct ConsistencyProof {
    pub size1: u64,
    pub size2: u64,
    pub proof: Vec<String>,
    pub checkpoint1: String,
    pub checkpoint2: String,
}

/// Proves that the checkpoint of `size1` is a prefix of the checkpoint of `size2`.
pub fn prove_consistency(
    conn: &Connection,
    size1: u64,
    size2: u64,
) -> Result<ConsistencyProof, AuditError> {
    let note = |size: u64| -> Result<String, AuditError> {
        conn.query_row(
            "SELECT note FROM checkpoints WHERE size = ?1",
            [size],
            |r| r.get(0),
        )
        .optional()?
        .ok_or_else(|| AuditError::Corrupt(format!("there is no checkpoint of size {size}")))
    };
    if size1 > size2 {
        return Err(AuditError::Corrupt(format!(
            "the first checkpoint ({size1}) must not be larger than the second ({size2})"
        )));
    }
    let (checkpoint1, checkpoint2) = (note(size1)?, note(size2)?);
    let leaves = leaf_hashes(conn, size2)?;
    let m = usize::try_from(size1).map_err(|e| AuditError::Corrupt(e.to_string()))?;
    let proof = merkle::consistency_proof(&leaves, m).unwrap_or_default();
    Ok(ConsistencyProof {
        size1,
        size2,
        proof: proof.iter().map(b64).collect(),
        checkpoint1,
        checkpoint2,
    })
}
