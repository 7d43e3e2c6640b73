-- Agent registry (ID-1..ID-3). Portable SQL: the PostgreSQL backend runs the same file.
CREATE TABLE agents (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    purpose       TEXT NOT NULL,
    autonomy      TEXT NOT NULL CHECK (autonomy IN ('intern', 'junior', 'senior', 'principal')),
    state         TEXT NOT NULL CHECK (state IN ('active', 'suspended', 'revoked')),
    dpop_required BOOLEAN NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);

CREATE TABLE agent_sponsors (
    agent_id TEXT NOT NULL REFERENCES agents (id),
    sponsor  TEXT NOT NULL,
    added_at BIGINT NOT NULL,
    PRIMARY KEY (agent_id, sponsor)
);

CREATE TABLE agent_keys (
    agent_id   TEXT NOT NULL REFERENCES agents (id),
    kid        TEXT NOT NULL,
    jwk        TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    not_after  BIGINT,
    PRIMARY KEY (agent_id, kid)
);
