-- Task records of task-augmented tool calls (store/tasks.rs): the task as JSON text with its
-- compare-and-set version, per principal. A row past expires_at (ms) is gone for every read
-- and may be replaced by a new task of the same id.
CREATE TABLE mcp_tasks (
    principal  TEXT NOT NULL,
    task_id    TEXT NOT NULL,
    body       TEXT NOT NULL,
    version    BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (principal, task_id)
);
CREATE INDEX mcp_tasks_expiry ON mcp_tasks (expires_at);
