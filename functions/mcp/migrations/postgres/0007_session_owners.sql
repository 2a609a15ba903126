-- The cap on live sessions per principal: the count reads this index, and creating a session
-- first upserts its principal's row here (a row lock until the commit), so concurrent
-- creations of one principal are counted one after another.
CREATE INDEX mcp_sessions_principal ON mcp_sessions (principal, expires_at);
CREATE TABLE mcp_session_owners (
    principal  TEXT COLLATE "C" PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
