-- Sessions of the legacy (2025) wire and per-principal JSON documents.
-- Times are Unix epoch milliseconds so SQLite and PostgreSQL agree exactly.
-- COLLATE "C" orders keys by bytes, as SQLite does, so pagination matches.
CREATE TABLE mcp_sessions (
    id           TEXT COLLATE "C" PRIMARY KEY,
    principal    TEXT COLLATE "C" NOT NULL,
    init_params  TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);
CREATE INDEX mcp_sessions_expiry ON mcp_sessions (expires_at);

CREATE TABLE mcp_state (
    principal  TEXT COLLATE "C" NOT NULL,
    key        TEXT COLLATE "C" NOT NULL,
    value      TEXT NOT NULL,
    version    BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    expires_at BIGINT,
    PRIMARY KEY (principal, key)
);
CREATE INDEX mcp_state_expiry ON mcp_state (expires_at) WHERE expires_at IS NOT NULL;
