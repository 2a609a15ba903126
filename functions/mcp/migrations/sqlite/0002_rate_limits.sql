-- Per-principal rate buckets (GCRA): the theoretical arrival time of the next request,
-- in Unix microseconds. A row idle past expires_at (ms) is a full bucket and may go.
CREATE TABLE mcp_rate_limits (
    principal  TEXT PRIMARY KEY,
    tat_us     BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX mcp_rate_limits_expiry ON mcp_rate_limits (expires_at);
