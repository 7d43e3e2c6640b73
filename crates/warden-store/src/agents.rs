//! The registry's SQL and rules, run inside one transaction per call.

use rusqlite::{OptionalExtension, Transaction, params};
use warden_core::{AgentId, AgentKey, AgentRecord, AgentState, AutonomyLevel, NewAgent, PublicJwk};

use crate::{SponsorRemoved, StoreError};

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

pub(crate) fn create(
    tx: &Transaction<'_>,
    a: &NewAgent,
    now: i64,
) -> Result<AgentRecord, StoreError> {
    let sponsors: Vec<&str> = a
        .sponsors
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .collect();
    if sponsors.is_empty() {
        return Err(StoreError::NoSponsor);
    }
    let exists: Option<i64> = tx
        .query_row("SELECT 1 FROM agents WHERE id = ?1", [a.id.as_str()], |r| {
            r.get(0)
        })
        .optional()?;
    if exists.is_some() {
        return Err(StoreError::AgentExists(a.id.clone()));
    }
    tx.execute(
        "INSERT INTO agents (id, name, purpose, autonomy, state, dpop_required, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, 'active', ?5, ?6, ?6)",
        params![a.id.as_str(), a.name, a.purpose, a.autonomy.as_str(), a.dpop_required, now],
    )?;
    for s in sponsors {
        tx.execute(
            "INSERT INTO agent_sponsors (agent_id, sponsor, added_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (agent_id, sponsor) DO NOTHING",
            params![a.id.as_str(), s, now],
        )?;
    }
    insert_key(tx, &a.id, &a.key, now)?;
    load(tx, &a.id)
}

fn insert_key(
    tx: &Transaction<'_>,
    id: &AgentId,
    key: &PublicJwk,
    now: i64,
) -> Result<(), StoreError> {
    let jwk = serde_json::to_string(key).map_err(corrupt)?;
    tx.execute(
        "INSERT INTO agent_keys (agent_id, kid, jwk, created_at, not_after) VALUES (?1, ?2, ?3, ?4, NULL)",
        params![id.as_str(), key.kid, jwk, now],
    )?;
    Ok(())
}

pub(crate) fn load(tx: &Transaction<'_>, id: &AgentId) -> Result<AgentRecord, StoreError> {
    let row = tx
        .query_row(
            "SELECT name, purpose, autonomy, state, dpop_required, created_at, updated_at
             FROM agents WHERE id = ?1",
            [id.as_str()],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, bool>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, i64>(6)?,
                ))
            },
        )
        .optional()?
        .ok_or_else(|| StoreError::UnknownAgent(id.clone()))?;
    let (name, purpose, autonomy, state, dpop_required, created_at, updated_at) = row;
    let mut stmt = tx.prepare_cached(
        "SELECT sponsor FROM agent_sponsors WHERE agent_id = ?1 ORDER BY sponsor",
    )?;
    let sponsors = stmt
        .query_map([id.as_str()], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    let mut stmt = tx.prepare_cached(
        "SELECT jwk, created_at, not_after FROM agent_keys WHERE agent_id = ?1
         ORDER BY not_after IS NOT NULL, created_at DESC",
    )?;
    let keys = stmt
        .query_map([id.as_str()], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Option<i64>>(2)?,
            ))
        })?
        .map(|row| {
            let (jwk, created_at, not_after) = row?;
            Ok(AgentKey {
                jwk: serde_json::from_str(&jwk).map_err(corrupt)?,
                created_at,
                not_after,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(AgentRecord {
        id: id.clone(),
        name,
        sponsors,
        purpose,
        autonomy: autonomy.parse().map_err(corrupt)?,
        state: state.parse().map_err(corrupt)?,
        dpop_required,
        keys,
        created_at,
        updated_at,
    })
}

pub(crate) fn load_all(tx: &Transaction<'_>) -> Result<Vec<AgentRecord>, StoreError> {
    let mut stmt = tx.prepare("SELECT id FROM agents ORDER BY id")?;
    let ids = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    ids.into_iter()
        .map(|id| load(tx, &AgentId::new(id).map_err(corrupt)?))
        .collect()
}

pub(crate) fn set_state(
    tx: &Transaction<'_>,
    id: &AgentId,
    state: AgentState,
    now: i64,
) -> Result<AgentRecord, StoreError> {
    let current = load(tx, id)?;
    if current.state == AgentState::Revoked && state != AgentState::Revoked {
        return Err(StoreError::Revoked(id.clone()));
    }
    if state == AgentState::Active && current.sponsors.is_empty() {
        return Err(StoreError::ResumeWithoutSponsor(id.clone()));
    }
    tx.execute(
        "UPDATE agents SET state = ?2, updated_at = ?3 WHERE id = ?1",
        params![id.as_str(), state.as_str(), now],
    )?;
    load(tx, id)
}

pub(crate) fn set_autonomy(
    tx: &Transaction<'_>,
    id: &AgentId,
    autonomy: AutonomyLevel,
    now: i64,
) -> Result<AgentRecord, StoreError> {
    refuse_revoked(tx, id)?;
    tx.execute(
        "UPDATE agents SET autonomy = ?2, updated_at = ?3 WHERE id = ?1",
        params![id.as_str(), autonomy.as_str(), now],
    )?;
    load(tx, id)
}

/// Marks the agent as changed at `now`.
fn touch(tx: &Transaction<'_>, id: &AgentId, now: i64) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE agents SET updated_at = ?2 WHERE id = ?1",
        params![id.as_str(), now],
    )?;
    Ok(())
}

fn refuse_revoked(tx: &Transaction<'_>, id: &AgentId) -> Result<AgentRecord, StoreError> {
    let a = load(tx, id)?;
    if a.state == AgentState::Revoked {
        return Err(StoreError::Revoked(id.clone()));
    }
    Ok(a)
}

pub(crate) fn add_sponsor(
    tx: &Transaction<'_>,
    id: &AgentId,
    sponsor: &str,
    now: i64,
) -> Result<AgentRecord, StoreError> {
    refuse_revoked(tx, id)?;
    let sponsor = sponsor.trim();
    if sponsor.is_empty() {
        return Err(StoreError::NoSponsor);
    }
    tx.execute(
        "INSERT INTO agent_sponsors (agent_id, sponsor, added_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (agent_id, sponsor) DO NOTHING",
        params![id.as_str(), sponsor, now],
    )?;
    touch(tx, id, now)?;
    load(tx, id)
}

pub(crate) fn remove_sponsor(
    tx: &Transaction<'_>,
    id: &AgentId,
    sponsor: &str,
    now: i64,
) -> Result<SponsorRemoved, StoreError> {
    refuse_revoked(tx, id)?;
    let removed = tx.execute(
        "DELETE FROM agent_sponsors WHERE agent_id = ?1 AND sponsor = ?2",
        params![id.as_str(), sponsor],
    )?;
    if removed == 0 {
        return Err(StoreError::UnknownSponsor {
            agent: id.clone(),
            sponsor: sponsor.to_owned(),
        });
    }
    let left: i64 = tx.query_row(
        "SELECT COUNT(*) FROM agent_sponsors WHERE agent_id = ?1",
        [id.as_str()],
        |r| r.get(0),
    )?;
    // ID-3: an agent nobody is accountable for does not act.
    let suspended = left == 0;
    if suspended {
        tx.execute(
            "UPDATE agents SET state = 'suspended', updated_at = ?2 WHERE id = ?1",
            params![id.as_str(), now],
        )?;
    } else {
        touch(tx, id, now)?;
    }
    Ok(SponsorRemoved {
        agent: load(tx, id)?,
        suspended,
    })
}

pub(crate) fn rotate_key(
    tx: &Transaction<'_>,
    id: &AgentId,
    key: &PublicJwk,
    grace_secs: i64,
    now: i64,
) -> Result<AgentRecord, StoreError> {
    refuse_revoked(tx, id)?;
    let until = now.saturating_add(grace_secs.max(0));
    tx.execute(
        "UPDATE agent_keys SET not_after = ?2 WHERE agent_id = ?1 AND (not_after IS NULL OR not_after > ?2)",
        params![id.as_str(), until],
    )?;
    insert_key(tx, id, key, now)?;
    touch(tx, id, now)?;
    load(tx, id)
}
