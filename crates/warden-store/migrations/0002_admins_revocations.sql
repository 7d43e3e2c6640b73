-- Admin API credentials (stored as SHA-256 of a 256-bit random secret) and revocations
-- (CR-5). Portable SQL.
CREATE TABLE admin_credentials (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    secret_hash TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL,
    created_by  TEXT NOT NULL
);

CREATE TABLE revocations (
    id          INTEGER PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('token', 'task', 'agent')),
    value       TEXT NOT NULL,
    reason      TEXT NOT NULL,
    revoked_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    -- After this time the revoked thing has expired anyway and the row may be dropped.
    expires_at  BIGINT
);
CREATE INDEX revocations_expiry ON revocations (expires_at);
