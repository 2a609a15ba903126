-- Legacy resources/subscribe where no instance keeps the session (Lambda): the session's
-- subscribed URIs as a JSON array, read by its GET stream when a resource changes.
ALTER TABLE mcp_sessions ADD COLUMN subscriptions TEXT;
