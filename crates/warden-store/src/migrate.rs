//! Schema migrations: numbered SQL files embedded in the binary, applied in order, each in
//! its own transaction, recorded in `schema_migrations`.

use rusqlite::Connection;

/// (version, SQL), in order. Never edit a released migration; add a new one.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/0001_agents.sql")),
    (2, include_str!("../migrations/0002_admins_revocations.sql")),
    (3, include_str!("../migrations/0003_kills_approvals.sql")),
    (4, include_str!("../migrations/0004_taints_tool_pins.sql")),
    (5, include_str!("../migrations/0005_monitor.sql")),
];

/// Applies every migration not applied yet. Returns how many ran.
pub(crate) fn migrate(conn: &mut Connection, now: i64) -> rusqlite::Result<usize> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    BIGINT PRIMARY KEY,
             applied_at BIGINT NOT NULL
         )",
    )?;
    let current: i64 = conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    let mut ran = 0;
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
            (version, now),
        )?;
        tx.commit()?;
        ran += 1;
    }
    Ok(ran)
}

/// The newest schema version this build knows.
pub(crate) fn latest() -> i64 {
    MIGRATIONS.last().map_or(0, |(v, _)| *v)
}
