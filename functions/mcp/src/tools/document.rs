//! The wire shape of the caller's state documents: what `state_get`, `state_set` and
//! `state_list` answer and what `state_export` writes, built from the store's records here so
//! the store keeps no wire names.

use chrono::{DateTime, Utc};
use rmcp::schemars::{self, JsonSchema};
use serde::Serialize;
use serde_json::Value;

use crate::store;

/// One stored document and its bookkeeping.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Document {
    pub key: String,
    /// The stored JSON document, as written.
    pub value: Value,
    /// Starts at 1 and grows by one on every write; the compare-and-set token.
    pub version: u64,
    #[serde(rename = "updatedAt")]
    pub updated_at: DateTime<Utc>,
    /// When the document stops being visible; absent keeps it until deleted.
    #[serde(rename = "expiresAt", skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

impl From<store::Document> for Document {
    fn from(document: store::Document) -> Self {
        let store::Document {
            key,
            value,
            version,
            updated_at,
            expires_at,
        } = document;
        Self {
            key,
            value,
            version,
            updated_at,
            expires_at,
        }
    }
}

/// A page of the caller's documents in key order.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Page {
    pub items: Vec<Document>,
    /// Pass back to get the next page; `None` on the last page.
    #[serde(rename = "nextCursor", skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

impl From<store::Page> for Page {
    fn from(page: store::Page) -> Self {
        Self {
            items: page.items.into_iter().map(Document::from).collect(),
            next_cursor: page.next_cursor,
        }
    }
}
