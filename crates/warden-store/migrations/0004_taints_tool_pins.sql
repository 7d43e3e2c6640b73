-- Content inspection (IO-1): tasks tainted by an injection finding in content the agent
-- received; and tool pinning (EP-4). Portable SQL.
CREATE TABLE taints (
    agent_id     TEXT NOT NULL,
    task_id      TEXT NOT NULL,
    -- The resource whose content carried the finding, and what was found.
    source       TEXT NOT NULL,
    finding      TEXT NOT NULL,
    decision_seq BIGINT,
    tainted_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    PRIMARY KEY (agent_id, task_id)
);

-- The approved definition of each tool: SHA-256 (hex) of its canonical JSON.
CREATE TABLE tool_pins (
    upstream    TEXT NOT NULL,
    tool        TEXT NOT NULL,
    hash        TEXT NOT NULL,
    definition  TEXT NOT NULL,
    approved_by TEXT NOT NULL,
    approved_at BIGINT NOT NULL,
    PRIMARY KEY (upstream, tool)
);

-- The definition each upstream lists now, as Warden last saw it.
CREATE TABLE tool_sightings (
    upstream   TEXT NOT NULL,
    tool       TEXT NOT NULL,
    hash       TEXT NOT NULL,
    definition TEXT NOT NULL,
    first_seen BIGINT NOT NULL,
    last_seen  BIGINT NOT NULL,
    PRIMARY KEY (upstream, tool)
);
