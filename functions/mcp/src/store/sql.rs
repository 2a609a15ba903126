//! [`StateStore`] and [`SessionRecords`] over SQLite or PostgreSQL, through one SQL dialect.
//!
//! Both backends run the same statements through sqlx's `Any` driver (`$N`
//! placeholders, `ON CONFLICT … RETURNING`), so their behaviour cannot drift;
//! only the migrations differ, one folder per backend under `migrations/`.
//! Compare-and-set is a single conditional statement, never read-then-write.

use std::{borrow::Cow, collections::BTreeSet, path::Path, str::FromStr, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{
    AnyPool, Row, SqlSafeStr,
    any::{AnyConnectOptions, AnyPoolOptions, AnyRow},
    migrate::{Migration, MigrationType, Migrator},
};

use super::{
    Admission, Document, Expect, Gcra, MAX_PAGE_SIZE, Page, Put, RateBuckets, SessionRecord,
    SessionRecords, StateStore, StoreError, checked_key, checked_prefix,
    cursor::CursorCodec,
    feed::{FeedLog, FeedRecords},
    mailbox::MailboxRecords,
    now_millis, subscriptions_json, subscriptions_of,
    tasks::{TaskRecord, TaskRecords, checked_body},
    time_of, ttl_millis,
};
use crate::principal::Principal;

/// The schema migrations of each backend, embedded in the binary, oldest first.
fn migrator(backend: Backend) -> Migrator {
    let migrations: &[(i64, &str, &'static str)] = match backend {
        Backend::Sqlite => &[
            (
                1,
                "init",
                include_str!("../../migrations/sqlite/0001_init.sql"),
            ),
            (
                2,
                "rate_limits",
                include_str!("../../migrations/sqlite/0002_rate_limits.sql"),
            ),
            (
                3,
                "feeds",
                include_str!("../../migrations/sqlite/0003_feeds.sql"),
            ),
            (
                4,
                "mailbox",
                include_str!("../../migrations/sqlite/0004_mailbox.sql"),
            ),
            (
                5,
                "tasks",
                include_str!("../../migrations/sqlite/0005_tasks.sql"),
            ),
            (
                6,
                "subscriptions",
                include_str!("../../migrations/sqlite/0006_subscriptions.sql"),
            ),
            (
                7,
                "session_owners",
                include_str!("../../migrations/sqlite/0007_session_owners.sql"),
            ),
        ],
        Backend::Postgres => &[
            (
                1,
                "init",
                include_str!("../../migrations/postgres/0001_init.sql"),
            ),
            (
                2,
                "rate_limits",
                include_str!("../../migrations/postgres/0002_rate_limits.sql"),
            ),
            (
                3,
                "feeds",
                include_str!("../../migrations/postgres/0003_feeds.sql"),
            ),
            (
                4,
                "mailbox",
                include_str!("../../migrations/postgres/0004_mailbox.sql"),
            ),
            (
                5,
                "tasks",
                include_str!("../../migrations/postgres/0005_tasks.sql"),
            ),
            (
                6,
                "subscriptions",
                include_str!("../../migrations/postgres/0006_subscriptions.sql"),
            ),
            (
                7,
                "session_owners",
                include_str!("../../migrations/postgres/0007_session_owners.sql"),
            ),
        ],
    };
    Migrator::with_migrations(
        migrations
            .iter()
            .map(|(version, description, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*description),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

/// Which SQL server a [`SqlStore`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend a store URL names.
    pub fn of_url(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else {
            Err(StoreError::UnsupportedUrl(url.to_owned()))
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// A pooled SQL store, migrated on connect.
#[derive(Clone)]
pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
    cursors: CursorCodec,
}

impl SqlStore {
    /// Connects to `url` with cursors sealed by one fixed key (tests, tools).
    pub async fn connect(url: &str, cursor_key: &[u8]) -> Result<Self, StoreError> {
        Self::connect_with(url, CursorCodec::new(cursor_key)).await
    }

    /// Connects to `url`, creating the SQLite file and its folder if needed, and runs migrations.
    pub async fn connect_with(url: &str, cursors: CursorCodec) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of_url(url)?;
        let url = match backend {
            Backend::Sqlite => prepare_sqlite_url(url)?,
            Backend::Postgres => url.to_owned(),
        };
        let connect_failed = |error| sql_error(backend.name(), "connect", error);
        let options = AnyConnectOptions::from_str(&url).map_err(connect_failed)?;
        let pool = AnyPoolOptions::new()
            .max_connections(match backend {
                Backend::Sqlite => 4,
                Backend::Postgres => 10,
            })
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers run beside the writer; the busy timeout
                        // queues concurrent writers instead of failing them.
                        sqlx::raw_sql("PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000; PRAGMA synchronous = NORMAL;")
                            .execute(conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(connect_failed)?;
        migrator(backend)
            .run(&pool)
            .await
            .map_err(|error| StoreError::backend(backend.name(), "migration", false, error))?;
        Ok(Self {
            pool,
            backend,
            cursors,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The live version at `key`, for conflict messages.
    async fn current_version(
        &self,
        principal: &Principal,
        key: &str,
        now: i64,
    ) -> Result<Option<u64>, StoreError> {
        let row = sqlx::query(
            "SELECT version FROM mcp_state WHERE principal = $1 AND key = $2 \
             AND (expires_at IS NULL OR expires_at > $3)",
        )
        .bind(principal.as_str())
        .bind(key)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| version_of(&row)).transpose()
    }

    async fn conflict(
        &self,
        principal: &Principal,
        key: &str,
        expect: Expect,
        now: i64,
    ) -> StoreError {
        let current = match self.current_version(principal, key, now).await {
            Ok(current) => current,
            Err(error) => return error,
        };
        StoreError::version_conflict(key, expect, current)
    }
}

/// A failed statement. The `Any` driver runs the same statements on either server, so the
/// backend is named by its dialect; a pool timeout or a broken connection may pass when retried.
impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        sql_error("SQL", "query", error)
    }
}

/// `operation` of `backend` failed with `error`; retryable as a pool timeout or a broken
/// connection is.
fn sql_error(backend: &'static str, operation: &'static str, error: sqlx::Error) -> StoreError {
    let retryable = matches!(error, sqlx::Error::PoolTimedOut | sqlx::Error::Io(_));
    StoreError::backend(backend, operation, retryable, error)
}

/// SQLite URLs get `mode=rwc` (create if missing) and their folder made.
fn prepare_sqlite_url(url: &str) -> Result<String, StoreError> {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path != ":memory:"
        && let Some(parent) = Path::new(path).parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent).map_err(|source| {
            let reason = format!("cannot create {}: {source}", parent.display());
            StoreError::backend(Backend::Sqlite.name(), "directory setup", false, reason)
        })?;
    }
    let query = if query.contains("mode=") {
        query.to_owned()
    } else if query.is_empty() {
        "mode=rwc".to_owned()
    } else {
        format!("{query}&mode=rwc")
    };
    Ok(format!("sqlite://{path}?{query}"))
}

fn version_of(row: &AnyRow) -> Result<u64, StoreError> {
    let version: i64 = row.try_get("version")?;
    u64::try_from(version).map_err(|_| StoreError::Corrupt(format!("negative version {version}")))
}

fn document_of(row: &AnyRow) -> Result<Document, StoreError> {
    let value: String = row.try_get("value")?;
    let expires_at: Option<i64> = row.try_get("expires_at")?;
    Ok(Document {
        key: row.try_get("key")?,
        value: serde_json::from_str(&value).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        version: version_of(row)?,
        updated_at: time_of(row.try_get("updated_at")?)?,
        expires_at: expires_at.map(time_of).transpose()?,
    })
}

fn session_of(row: &AnyRow) -> Result<SessionRecord, StoreError> {
    let principal: String = row.try_get("principal")?;
    let init_params: String = row.try_get("init_params")?;
    Ok(SessionRecord {
        id: row.try_get("id")?,
        principal: Principal::new(&principal).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        init_params: serde_json::from_str(&init_params)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        created_at: time_of(row.try_get("created_at")?)?,
        last_seen_at: time_of(row.try_get("last_seen_at")?)?,
        expires_at: time_of(row.try_get("expires_at")?)?,
    })
}

#[async_trait]
impl StateStore for SqlStore {
    async fn get(&self, principal: &Principal, key: &str) -> Result<Option<Document>, StoreError> {
        let key = checked_key(key)?;
        let row = sqlx::query(
            "SELECT key, value, version, updated_at, expires_at FROM mcp_state \
             WHERE principal = $1 AND key = $2 AND (expires_at IS NULL OR expires_at > $3)",
        )
        .bind(principal.as_str())
        .bind(key.as_ref())
        .bind(now_millis())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(document_of).transpose()
    }

    async fn put(&self, principal: &Principal, put: Put<'_>) -> Result<Document, StoreError> {
        let (key, value) = put.checked()?;
        let put = Put { key: &key, ..put };
        let now = now_millis();
        let expires_at = put.ttl.map(|ttl| now.saturating_add(ttl_millis(ttl)));
        let statement = match put.expect {
            // An expired row counts as absent: its version restarts at 1.
            Expect::Any => {
                "INSERT INTO mcp_state (principal, key, value, version, updated_at, expires_at) \
                 VALUES ($1, $2, $3, 1, $4, $5) \
                 ON CONFLICT (principal, key) DO UPDATE SET value = excluded.value, \
                 version = CASE WHEN mcp_state.expires_at IS NOT NULL AND mcp_state.expires_at <= $4 \
                 THEN 1 ELSE mcp_state.version + 1 END, \
                 updated_at = excluded.updated_at, expires_at = excluded.expires_at \
                 RETURNING version"
            }
            Expect::Absent => {
                "INSERT INTO mcp_state (principal, key, value, version, updated_at, expires_at) \
                 VALUES ($1, $2, $3, 1, $4, $5) \
                 ON CONFLICT (principal, key) DO UPDATE SET value = excluded.value, version = 1, \
                 updated_at = excluded.updated_at, expires_at = excluded.expires_at \
                 WHERE mcp_state.expires_at IS NOT NULL AND mcp_state.expires_at <= $4 \
                 RETURNING version"
            }
            Expect::Version(_) => {
                "UPDATE mcp_state SET value = $3, version = version + 1, updated_at = $4, \
                 expires_at = $5 WHERE principal = $1 AND key = $2 AND version = $6 \
                 AND (expires_at IS NULL OR expires_at > $4) RETURNING version"
            }
        };
        let mut query = sqlx::query(statement)
            .bind(principal.as_str())
            .bind(put.key)
            .bind(value)
            .bind(now)
            .bind(expires_at);
        if let Expect::Version(version) = put.expect {
            query = query.bind(i64::try_from(version).unwrap_or(i64::MAX));
        }
        let Some(row) = query.fetch_optional(&self.pool).await? else {
            return Err(self.conflict(principal, put.key, put.expect, now).await);
        };
        Ok(Document {
            key: put.key.to_owned(),
            value: put.value.clone(),
            version: version_of(&row)?,
            updated_at: time_of(now)?,
            expires_at: expires_at.map(time_of).transpose()?,
        })
    }

    async fn delete(
        &self,
        principal: &Principal,
        key: &str,
        expect: Expect,
    ) -> Result<bool, StoreError> {
        let key = checked_key(key)?;
        let key = key.as_ref();
        let now = now_millis();
        let deleted = match expect {
            Expect::Any => sqlx::query(
                "DELETE FROM mcp_state WHERE principal = $1 AND key = $2 \
                     AND (expires_at IS NULL OR expires_at > $3)",
            )
            .bind(principal.as_str())
            .bind(key)
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected(),
            Expect::Version(version) => sqlx::query(
                "DELETE FROM mcp_state WHERE principal = $1 AND key = $2 \
                     AND (expires_at IS NULL OR expires_at > $3) AND version = $4",
            )
            .bind(principal.as_str())
            .bind(key)
            .bind(now)
            .bind(i64::try_from(version).unwrap_or(i64::MAX))
            .execute(&self.pool)
            .await?
            .rows_affected(),
            Expect::Absent => 0,
        };
        match (deleted, expect) {
            (0, Expect::Any) => Ok(false),
            (0, _) => match self.current_version(principal, key, now).await? {
                None if expect == Expect::Absent => Ok(false),
                _ => Err(self.conflict(principal, key, expect, now).await),
            },
            _ => Ok(true),
        }
    }

    async fn list(
        &self,
        principal: &Principal,
        prefix: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page, StoreError> {
        let prefix = checked_prefix(prefix)?;
        let prefix = prefix.as_ref();
        let after = match cursor {
            Some(cursor) => self.cursors.open(principal, prefix, cursor)?,
            None => String::new(),
        };
        let limit = limit.clamp(1, MAX_PAGE_SIZE);
        let rows = sqlx::query(
            "SELECT key, value, version, updated_at, expires_at FROM mcp_state \
             WHERE principal = $1 AND key > $2 AND substr(key, 1, length($3)) = $3 \
             AND (expires_at IS NULL OR expires_at > $4) ORDER BY key LIMIT $5",
        )
        .bind(principal.as_str())
        .bind(after)
        .bind(prefix)
        .bind(now_millis())
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.pool)
        .await?;
        let items = rows
            .iter()
            .map(document_of)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_lookahead(
            items,
            limit as usize,
            &self.cursors,
            principal,
            prefix,
        ))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn purge_expired(&self) -> Result<u64, StoreError> {
        let now = now_millis();
        let state =
            sqlx::query("DELETE FROM mcp_state WHERE expires_at IS NOT NULL AND expires_at <= $1")
                .bind(now)
                .execute(&self.pool)
                .await?
                .rows_affected();
        let sessions = sqlx::query("DELETE FROM mcp_sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected();
        let owners = sqlx::query("DELETE FROM mcp_session_owners WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected();
        let buckets = sqlx::query("DELETE FROM mcp_rate_limits WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected();
        let feeds = sqlx::query("DELETE FROM mcp_feeds WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected();
        let mailbox = sqlx::query("DELETE FROM mcp_mailbox WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected();
        let tasks = sqlx::query("DELETE FROM mcp_tasks WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(state + sessions + owners + buckets + feeds + mailbox + tasks)
    }
}

#[async_trait]
impl RateBuckets for SqlStore {
    /// One upsert: a new bucket is inserted admitted; an existing one moves only when the
    /// request fits (the `WHERE` of `DO UPDATE`), and `RETURNING` says whether it did. Only a
    /// refusal reads the bucket again, to tell the caller when to retry.
    async fn admit(
        &self,
        principal: &Principal,
        gcra: Gcra,
        now_us: i64,
    ) -> Result<Admission, StoreError> {
        let expires_at = gcra.expires_at_ms(now_us);
        let admitted = sqlx::query(
            "INSERT INTO mcp_rate_limits (principal, tat_us, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (principal) DO UPDATE SET \
             tat_us = (CASE WHEN mcp_rate_limits.tat_us > $4 THEN mcp_rate_limits.tat_us ELSE $4 END) + $5, \
             expires_at = $3 \
             WHERE (CASE WHEN mcp_rate_limits.tat_us > $4 THEN mcp_rate_limits.tat_us ELSE $4 END) + $5 <= $6 \
             RETURNING tat_us",
        )
        .bind(principal.as_str())
        .bind(now_us + gcra.interval_us)
        .bind(expires_at)
        .bind(now_us)
        .bind(gcra.interval_us)
        .bind(now_us + gcra.tolerance_us)
        .fetch_optional(&self.pool)
        .await?;
        if admitted.is_some() {
            return Ok(Admission::Admitted);
        }
        let tat: Option<i64> =
            sqlx::query_scalar("SELECT tat_us FROM mcp_rate_limits WHERE principal = $1")
                .bind(principal.as_str())
                .fetch_optional(&self.pool)
                .await?;
        Ok(gcra.step(tat, now_us).0)
    }
}

#[async_trait]
impl FeedRecords for SqlStore {
    async fn load_feed(&self, principal: &Principal) -> Result<Option<FeedLog>, StoreError> {
        let log: Option<String> =
            sqlx::query_scalar("SELECT log FROM mcp_feeds WHERE principal = $1")
                .bind(principal.as_str())
                .fetch_optional(&self.pool)
                .await?;
        log.as_deref().map(FeedLog::from_json).transpose()
    }

    /// An insert that does nothing when the row exists, or an update conditional on the
    /// head: either way one statement whose row count says whether it won.
    async fn save_feed(
        &self,
        principal: &Principal,
        log: &FeedLog,
        expected_head: Option<i64>,
    ) -> Result<bool, StoreError> {
        let json = log.to_json()?;
        let expires_at = FeedLog::expires_at_millis();
        let written = match expected_head {
            None => sqlx::query(
                "INSERT INTO mcp_feeds (principal, head, log, expires_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (principal) DO NOTHING",
            )
            .bind(principal.as_str())
            .bind(log.head)
            .bind(json)
            .bind(expires_at)
            .execute(&self.pool)
            .await?,
            Some(expected) => {
                sqlx::query(
                    "UPDATE mcp_feeds SET head = $2, log = $3, expires_at = $4 \
                     WHERE principal = $1 AND head = $5",
                )
                .bind(principal.as_str())
                .bind(log.head)
                .bind(json)
                .bind(expires_at)
                .bind(expected)
                .execute(&self.pool)
                .await?
            }
        };
        Ok(written.rows_affected() == 1)
    }
}

#[async_trait]
impl MailboxRecords for SqlStore {
    async fn open_request(
        &self,
        session: &str,
        request: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO mcp_mailbox (session_id, request_id, answer, expires_at) \
             VALUES ($1, $2, NULL, $3) \
             ON CONFLICT (session_id, request_id) DO UPDATE SET answer = NULL, expires_at = $3",
        )
        .bind(session)
        .bind(request)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// One conditional update: its row count says whether the request was open.
    async fn post_answer(
        &self,
        session: &str,
        request: &str,
        answer: &str,
    ) -> Result<bool, StoreError> {
        let written = sqlx::query(
            "UPDATE mcp_mailbox SET answer = $3 \
             WHERE session_id = $1 AND request_id = $2 AND answer IS NULL AND expires_at > $4",
        )
        .bind(session)
        .bind(request)
        .bind(answer)
        .bind(now_millis())
        .execute(&self.pool)
        .await?;
        Ok(written.rows_affected() == 1)
    }

    async fn load_answer(
        &self,
        session: &str,
        request: &str,
    ) -> Result<Option<String>, StoreError> {
        let answer: Option<Option<String>> = sqlx::query_scalar(
            "SELECT answer FROM mcp_mailbox \
             WHERE session_id = $1 AND request_id = $2 AND expires_at > $3",
        )
        .bind(session)
        .bind(request)
        .bind(now_millis())
        .fetch_optional(&self.pool)
        .await?;
        Ok(answer.flatten())
    }

    async fn close_request(&self, session: &str, request: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM mcp_mailbox WHERE session_id = $1 AND request_id = $2")
            .bind(session)
            .bind(request)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl TaskRecords for SqlStore {
    /// One upsert: a new id is inserted, an expired row of that id is replaced (the `WHERE` of
    /// `DO UPDATE`), a live one is left alone; the row count says which.
    async fn create_task(
        &self,
        principal: &Principal,
        id: &str,
        body: &str,
        expires_at: i64,
    ) -> Result<bool, StoreError> {
        checked_body(body)?;
        let written = sqlx::query(
            "INSERT INTO mcp_tasks (principal, task_id, body, version, expires_at) \
             VALUES ($1, $2, $3, 1, $4) \
             ON CONFLICT (principal, task_id) DO UPDATE SET body = excluded.body, version = 1, \
             expires_at = excluded.expires_at WHERE mcp_tasks.expires_at <= $5",
        )
        .bind(principal.as_str())
        .bind(id)
        .bind(body)
        .bind(expires_at)
        .bind(now_millis())
        .execute(&self.pool)
        .await?;
        Ok(written.rows_affected() == 1)
    }

    async fn load_task(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<Option<TaskRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT body, version FROM mcp_tasks \
             WHERE principal = $1 AND task_id = $2 AND expires_at > $3",
        )
        .bind(principal.as_str())
        .bind(id)
        .bind(now_millis())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(TaskRecord {
                body: row.try_get("body")?,
                version: version_of(&row)?,
            })
        })
        .transpose()
    }

    /// One conditional update on the version read: its row count says whether it won.
    async fn replace_task(
        &self,
        principal: &Principal,
        id: &str,
        version: u64,
        body: &str,
        expires_at: i64,
    ) -> Result<bool, StoreError> {
        checked_body(body)?;
        // No stored version is above i64::MAX, so an expected one that is matches nothing.
        let Ok(version) = i64::try_from(version) else {
            return Ok(false);
        };
        let written = sqlx::query(
            "UPDATE mcp_tasks SET body = $3, version = version + 1, expires_at = $4 \
             WHERE principal = $1 AND task_id = $2 AND version = $5 AND expires_at > $6",
        )
        .bind(principal.as_str())
        .bind(id)
        .bind(body)
        .bind(expires_at)
        .bind(version)
        .bind(now_millis())
        .execute(&self.pool)
        .await?;
        Ok(written.rows_affected() == 1)
    }
}

#[async_trait]
impl SessionRecords for SqlStore {
    /// One transaction: an upsert of the principal's row in `mcp_session_owners` first, which
    /// PostgreSQL locks until the commit (SQLite has one writer anyway), so creations of one
    /// principal are counted one after another; then an insert guarded by the count of the
    /// principal's other live sessions (the `(principal, expires_at)` index), whose row count
    /// says whether it was under the limit.
    async fn create_session(&self, record: &SessionRecord, limit: usize) -> Result<(), StoreError> {
        let init_params = record.checked_init_params()?;
        let expires_at = record.expires_at.timestamp_millis();
        let mut transaction = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO mcp_session_owners (principal, expires_at) VALUES ($1, $2) \
             ON CONFLICT (principal) DO UPDATE SET expires_at = excluded.expires_at",
        )
        .bind(record.principal.as_str())
        .bind(expires_at)
        .execute(&mut *transaction)
        .await?;
        let created = sqlx::query(
            "INSERT INTO mcp_sessions (id, principal, init_params, created_at, last_seen_at, expires_at) \
             SELECT $1, $2, $3, $4, $5, $6 \
             WHERE (SELECT COUNT(*) FROM mcp_sessions \
                    WHERE principal = $2 AND expires_at > $7 AND id <> $1) < $8 \
             ON CONFLICT (id) DO UPDATE SET principal = excluded.principal, \
             init_params = excluded.init_params, created_at = excluded.created_at, \
             last_seen_at = excluded.last_seen_at, expires_at = excluded.expires_at",
        )
        .bind(record.id.as_str())
        .bind(record.principal.as_str())
        .bind(init_params)
        .bind(record.created_at.timestamp_millis())
        .bind(record.last_seen_at.timestamp_millis())
        .bind(expires_at)
        .bind(now_millis())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .execute(&mut *transaction)
        .await?
        .rows_affected();
        transaction.commit().await?;
        if created == 0 {
            return Err(StoreError::TooManySessions { limit });
        }
        Ok(())
    }

    async fn load_session(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, principal, init_params, created_at, last_seen_at, expires_at \
             FROM mcp_sessions WHERE id = $1 AND expires_at > $2",
        )
        .bind(id)
        .bind(now_millis())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(session_of).transpose()
    }

    async fn touch_session(
        &self,
        principal: &Principal,
        id: &str,
        last_seen_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE mcp_sessions SET last_seen_at = $3, expires_at = $4 \
             WHERE id = $1 AND principal = $2",
        )
        .bind(id)
        .bind(principal.as_str())
        .bind(last_seen_at.timestamp_millis())
        .bind(expires_at.timestamp_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn set_session_subscriptions(
        &self,
        id: &str,
        uris: &BTreeSet<String>,
    ) -> Result<bool, StoreError> {
        let written = sqlx::query(
            "UPDATE mcp_sessions SET subscriptions = $2 WHERE id = $1 AND expires_at > $3",
        )
        .bind(id)
        .bind(subscriptions_json(uris)?)
        .bind(now_millis())
        .execute(&self.pool)
        .await?;
        Ok(written.rows_affected() == 1)
    }

    async fn load_session_subscriptions(
        &self,
        id: &str,
    ) -> Result<Option<BTreeSet<String>>, StoreError> {
        let row =
            sqlx::query("SELECT subscriptions FROM mcp_sessions WHERE id = $1 AND expires_at > $2")
                .bind(id)
                .bind(now_millis())
                .fetch_optional(&self.pool)
                .await?;
        row.map(|row| {
            let stored: Option<String> = row.try_get("subscriptions")?;
            subscriptions_of(stored.as_deref())
        })
        .transpose()
    }

    async fn delete_session(&self, principal: &Principal, id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM mcp_sessions WHERE id = $1 AND principal = $2")
            .bind(id)
            .bind(principal.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_name_their_backend() {
        assert_eq!(Backend::of_url("sqlite://x.db").ok(), Some(Backend::Sqlite));
        assert_eq!(
            Backend::of_url("postgres://h/db").ok(),
            Some(Backend::Postgres)
        );
        assert!(matches!(
            Backend::of_url("mysql://h/db"),
            Err(StoreError::UnsupportedUrl(_))
        ));
    }

    #[test]
    fn sqlite_urls_create_their_file() {
        assert_eq!(
            prepare_sqlite_url("sqlite::memory:").ok(),
            Some("sqlite://:memory:?mode=rwc".into())
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("nested/mcp.db");
        let url = prepare_sqlite_url(&format!("sqlite://{}", path.display())).expect("prepared");
        assert!(url.ends_with("mcp.db?mode=rwc"));
        assert!(path.parent().is_some_and(Path::exists));
    }
}
