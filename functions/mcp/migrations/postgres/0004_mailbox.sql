-- Legacy server-to-client requests waiting for the client's answer (store/mailbox.rs):
-- answer stays NULL until the client's response is posted. A row past expires_at (ms) may go.
CREATE TABLE mcp_mailbox (
    session_id TEXT NOT NULL,
    request_id TEXT NOT NULL,
    answer     TEXT,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (session_id, request_id)
);
CREATE INDEX mcp_mailbox_expiry ON mcp_mailbox (expires_at);
