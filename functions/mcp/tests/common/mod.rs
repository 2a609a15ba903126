//! Helpers shared by the integration tests: stores on real backends.

#![allow(dead_code)]

use std::sync::Arc;

use mcp_function::store::{Store, sql::SqlStore};
use sqlx::{Connection, PgConnection};

/// Cursor key used by test stores.
pub const TEST_KEY: &[u8] = b"test-signing-key-of-at-least-32-bytes!!";

/// The PostgreSQL server the tests use (`MCP_TEST_POSTGRES_URL`, default: the local `test` database).
pub fn postgres_url() -> String {
    std::env::var("MCP_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A SQLite store in a fresh temporary folder (kept alive by the returned guard).
pub async fn sqlite_store() -> (SqlStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("mcp.db").display());
    let store = SqlStore::connect(&url, TEST_KEY)
        .await
        .expect("sqlite store");
    (store, dir)
}

/// A PostgreSQL store in a schema of its own, dropped when the guard is dropped.
pub struct PostgresSchema {
    pub name: String,
}

impl Drop for PostgresSchema {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs outside the test's runtime: use a small one of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(runtime) = runtime {
                runtime.block_on(async {
                    if let Ok(mut conn) = PgConnection::connect(&postgres_url()).await {
                        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                            "DROP SCHEMA IF EXISTS {name} CASCADE"
                        )))
                        .execute(&mut conn)
                        .await;
                    }
                });
            }
        })
        .join();
    }
}

pub async fn postgres_store() -> (SqlStore, PostgresSchema) {
    let name = format!("mcp_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = PgConnection::connect(&postgres_url()).await.expect(
        "PostgreSQL must be running at MCP_TEST_POSTGRES_URL (default 127.0.0.1:5432/test)",
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
        .execute(&mut conn)
        .await
        .expect("create schema");
    let separator = if postgres_url().contains('?') {
        '&'
    } else {
        '?'
    };
    let url = format!(
        "{}{separator}options=-c%20search_path%3D{name}",
        postgres_url()
    );
    let store = SqlStore::connect(&url, TEST_KEY)
        .await
        .expect("postgres store");
    (store, PostgresSchema { name })
}

pub fn shared(store: SqlStore) -> Arc<dyn Store> {
    Arc::new(store)
}
