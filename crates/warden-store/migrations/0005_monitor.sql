-- Behavioural monitor (MO-1): each agent's learned baseline and risk (JSON, written by
-- warden-monitor), and the alerts it raised. Portable SQL.
CREATE TABLE baselines (
    agent_id   TEXT PRIMARY KEY,
    state      TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE alerts (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    time_ms   BIGINT NOT NULL,
    agent_id  TEXT NOT NULL,
    risk      INTEGER NOT NULL,
    -- `alert` or `quarantine`.
    action    TEXT NOT NULL,
    -- JSON array of {kind, points, detail}.
    signals   TEXT NOT NULL,
    -- Webhook delivery: `none` (no webhook), `pending`, `delivered`, `failed`.
    webhook   TEXT NOT NULL
);
CREATE INDEX alerts_by_agent ON alerts (agent_id, time_ms);
