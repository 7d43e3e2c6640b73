-- Kills (KS-1..KS-3) and approvals (HC-1). Portable SQL.
CREATE TABLE kills (
    id         INTEGER PRIMARY KEY,
    agent_id   TEXT NOT NULL,
    mode       TEXT NOT NULL CHECK (mode IN ('graceful', 'forced')),
    reason     TEXT NOT NULL,
    killed_by  TEXT NOT NULL,
    -- Every token issued to or through the agent at or before this time stays revoked.
    killed_at  BIGINT NOT NULL,
    resumed_at BIGINT,
    resumed_by TEXT
);
CREATE INDEX kills_agent ON kills (agent_id);

CREATE TABLE approvals (
    id              TEXT PRIMARY KEY,
    agent_id        TEXT NOT NULL,
    task_id         TEXT NOT NULL,
    action          TEXT NOT NULL,
    resource        TEXT NOT NULL,
    -- What the approver is shown: the arguments with secrets redacted.
    arguments       TEXT NOT NULL,
    -- SHA-256 (hex) of agent, action, resource, full-argument digest and task: finds the
    -- approval of a retried call.
    match_key       TEXT NOT NULL,
    -- SHA-256 (hex) of the match key and the expiry: what an approval is bound to.
    binding         TEXT NOT NULL,
    reasons         TEXT NOT NULL,
    stated_reason   TEXT,
    approvers       TEXT NOT NULL,
    state           TEXT NOT NULL
                    CHECK (state IN ('pending', 'approved', 'denied', 'expired', 'used')),
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    decided_by      TEXT,
    decided_at      BIGINT,
    decision_reason TEXT,
    used_at         BIGINT
);
CREATE INDEX approvals_match ON approvals (match_key, state);
CREATE INDEX approvals_agent ON approvals (agent_id, created_at);
