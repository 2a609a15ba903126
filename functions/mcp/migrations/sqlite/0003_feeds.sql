-- Per-principal change feeds (store/feed.rs): the newest position, for compare-and-set,
-- beside the whole log as JSON text. A row idle past expires_at (ms) may go.
CREATE TABLE mcp_feeds (
    principal  TEXT PRIMARY KEY,
    head       BIGINT NOT NULL,
    log        TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX mcp_feeds_expiry ON mcp_feeds (expires_at);
