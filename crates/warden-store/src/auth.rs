//! Admin credentials and revocations: SQL and rules, one transaction per call.

use rusqlite::{OptionalExtension, Transaction, params};

use crate::{AdminCredential, RevocationRecord, StoreError};

pub(crate) fn admin_count(tx: &Transaction<'_>) -> Result<i64, StoreError> {
    Ok(tx.query_row("SELECT COUNT(*) FROM admin_credentials", [], |r| r.get(0))?)
}

pub(crate) fn add_admin(
    tx: &Transaction<'_>,
    name: &str,
    secret_hash: &str,
    created_by: &str,
    now: i64,
) -> Result<AdminCredential, StoreError> {
    let exists: Option<i64> = tx
        .query_row(
            "SELECT 1 FROM admin_credentials WHERE name = ?1",
            [name],
            |r| r.get(0),
        )
        .optional()?;
    if exists.is_some() {
        return Err(StoreError::AdminExists(name.to_owned()));
    }
    tx.execute(
        "INSERT INTO admin_credentials (name, secret_hash, created_at, created_by)
         VALUES (?1, ?2, ?3, ?4)",
        params![name, secret_hash, now, created_by],
    )?;
    Ok(AdminCredential {
        name: name.to_owned(),
        created_at: now,
        created_by: created_by.to_owned(),
    })
}

pub(crate) fn admin_by_hash(
    tx: &Transaction<'_>,
    secret_hash: &str,
) -> Result<Option<AdminCredential>, StoreError> {
    Ok(tx
        .query_row(
            "SELECT name, created_at, created_by FROM admin_credentials WHERE secret_hash = ?1",
            [secret_hash],
            |r| {
                Ok(AdminCredential {
                    name: r.get(0)?,
                    created_at: r.get(1)?,
                    created_by: r.get(2)?,
                })
            },
        )
        .optional()?)
}

pub(crate) fn replace_admin_secret(
    tx: &Transaction<'_>,
    name: &str,
    secret_hash: &str,
) -> Result<(), StoreError> {
    let n = tx.execute(
        "UPDATE admin_credentials SET secret_hash = ?2 WHERE name = ?1",
        params![name, secret_hash],
    )?;
    if n == 0 {
        return Err(StoreError::UnknownAdmin(name.to_owned()));
    }
    Ok(())
}

pub(crate) fn add_revocation(
    tx: &Transaction<'_>,
    r: &RevocationRecord,
) -> Result<RevocationRecord, StoreError> {
    if !["token", "task", "agent"].contains(&r.kind.as_str()) || r.value.is_empty() {
        return Err(StoreError::Invalid(format!(
            "a revocation is of a token, task or agent, with a value; got {} `{}`",
            r.kind, r.value
        )));
    }
    tx.execute(
        "INSERT INTO revocations (kind, value, reason, revoked_by, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            r.kind,
            r.value,
            r.reason,
            r.revoked_by,
            r.created_at,
            r.expires_at
        ],
    )?;
    let mut out = r.clone();
    out.id = tx.last_insert_rowid();
    Ok(out)
}

/// Revocations newer than `after_id` that are still in force at `now`, oldest first.
pub(crate) fn revocations_since(
    tx: &Transaction<'_>,
    after_id: i64,
    now: i64,
) -> Result<Vec<RevocationRecord>, StoreError> {
    let mut stmt = tx.prepare(
        "SELECT id, kind, value, reason, revoked_by, created_at, expires_at FROM revocations
         WHERE id > ?1 AND (expires_at IS NULL OR expires_at > ?2) ORDER BY id",
    )?;
    let rows = stmt.query_map(params![after_id, now], |r| {
        Ok(RevocationRecord {
            id: r.get(0)?,
            kind: r.get(1)?,
            value: r.get(2)?,
            reason: r.get(3)?,
            revoked_by: r.get(4)?,
            created_at: r.get(5)?,
            expires_at: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Agents that may not act: suspended or revoked.
pub(crate) fn blocked_agents(tx: &Transaction<'_>) -> Result<Vec<String>, StoreError> {
    let mut stmt = tx.prepare("SELECT id FROM agents WHERE state <> 'active' ORDER BY id")?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(crate) fn agent_levels(
    tx: &Transaction<'_>,
) -> Result<Vec<(String, warden_core::AutonomyLevel)>, StoreError> {
    let mut stmt =
        tx.prepare("SELECT id, autonomy FROM agents WHERE autonomy <> 'principal' ORDER BY id")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    rows.map(|r| {
        let (id, level) = r?;
        let level = level
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("agent {id}: {e}")))?;
        Ok((id, level))
    })
    .collect()
}
