//! Baselines and alerts (MO-1): SQL, one transaction per call.

use rusqlite::{Row, Transaction, params};

use crate::{AlertRecord, StoreError};

pub(crate) fn save_baselines(
    tx: &Transaction<'_>,
    states: &[(String, String)],
    now: i64,
) -> Result<(), StoreError> {
    let mut stmt = tx.prepare(
        "INSERT INTO baselines (agent_id, state, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (agent_id) DO UPDATE SET state = excluded.state,
             updated_at = excluded.updated_at",
    )?;
    for (agent, state) in states {
        stmt.execute(params![agent, state, now])?;
    }
    Ok(())
}

pub(crate) fn baselines(
    tx: &Transaction<'_>,
    agent: Option<&str>,
) -> Result<Vec<(String, String)>, StoreError> {
    let mut stmt = tx.prepare(
        "SELECT agent_id, state FROM baselines WHERE ?1 IS NULL OR agent_id = ?1
         ORDER BY agent_id",
    )?;
    let rows = stmt.query_map([agent], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(crate) fn add_alert(tx: &Transaction<'_>, a: &AlertRecord) -> Result<i64, StoreError> {
    tx.execute(
        "INSERT INTO alerts (time_ms, agent_id, risk, action, signals, webhook)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![a.time_ms, a.agent, a.risk, a.action, a.signals, a.webhook],
    )?;
    Ok(tx.last_insert_rowid())
}

pub(crate) fn set_webhook(tx: &Transaction<'_>, id: i64, state: &str) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE alerts SET webhook = ?2 WHERE id = ?1",
        params![id, state],
    )?;
    Ok(())
}

fn alert_row(r: &Row<'_>) -> rusqlite::Result<AlertRecord> {
    Ok(AlertRecord {
        id: r.get(0)?,
        time_ms: r.get(1)?,
        agent: r.get(2)?,
        risk: r.get(3)?,
        action: r.get(4)?,
        signals: r.get(5)?,
        webhook: r.get(6)?,
    })
}

/// The newest `limit` alerts (of one agent, or all), oldest first.
pub(crate) fn alerts(
    tx: &Transaction<'_>,
    agent: Option<&str>,
    since_ms: i64,
    limit: u32,
) -> Result<Vec<AlertRecord>, StoreError> {
    let mut stmt = tx.prepare(
        "SELECT id, time_ms, agent_id, risk, action, signals, webhook FROM alerts
         WHERE (?1 IS NULL OR agent_id = ?1) AND time_ms >= ?2
         ORDER BY id DESC LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![agent, since_ms, limit], alert_row)?;
    let mut out: Vec<AlertRecord> = rows.collect::<Result<_, _>>()?;
    out.reverse();
    Ok(out)
}
