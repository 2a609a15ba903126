-- Sessions of the legacy (2025) wire and per-principal JSON documents.
-- Times are Unix epoch milliseconds so SQLite and PostgreSQL agree exactly.
CREATE TABLE mcp_sessions (
    id           TEXT PRIMARY KEY,
    principal    TEXT NOT NULL,
    init_params  TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);
CREATE INDEX mcp_sessions_expiry ON mcp_sessions (expires_at);

CREATE TABLE mcp_state (
    principal  TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    version    BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    expires_at BIGINT,
    PRIMARY KEY (principal, key)
);
CREATE INDEX mcp_state_expiry ON mcp_state (expires_at) WHERE expires_at IS NOT NULL;
