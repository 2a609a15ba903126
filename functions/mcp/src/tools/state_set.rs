//! `state_set`: write one of the caller's documents, optionally compare-and-set.

use std::time::Duration;

use rmcp::{
    handler::server::wrapper::{Json, Parameters},
    schemars::{self, JsonSchema},
    tool, tool_router,
};
use serde::Deserialize;
use serde_json::Value;

use super::{Caller, ToolError, Toolbox, document::Document};
use crate::store::{Expect, Put};

/// Longest expiry accepted: one year.
const MAX_TTL_SECONDS: u64 = 365 * 24 * 3600;

#[derive(Debug, Deserialize, JsonSchema)]
pub struct StateSetArgs {
    /// Key of the document (1 to 256 bytes, no control or invisible characters; compared in Unicode NFC).
    pub key: String,
    /// Any JSON value; at most 64 KiB once serialized.
    pub value: Value,
    /// Write only if the current version is this one (0 = only if the key is empty). Omit to overwrite.
    #[serde(default)]
    pub expected_version: Option<u64>,
    /// Delete the document this many seconds after the write (1 to 31536000). Omit to keep it.
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
}

#[tool_router(router = state_set_router, vis = "pub(crate)")]
impl Toolbox {
    #[tool(
        description = "Store a JSON document under a key for the calling user. Pass expected_version (from state_get) to update only if nobody changed it since, or 0 to create only; returns the new version.",
        annotations(
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    pub async fn state_set(
        &self,
        Caller(principal): Caller,
        Parameters(args): Parameters<StateSetArgs>,
    ) -> Result<Json<Document>, ToolError> {
        let ttl = match args.ttl_seconds {
            None => None,
            Some(secs @ 1..=MAX_TTL_SECONDS) => Some(Duration::from_secs(secs)),
            Some(secs) => {
                return Err(ToolError::Invalid(format!(
                    "ttl_seconds is {secs}; use 1 to {MAX_TTL_SECONDS}, or omit it to keep the document"
                )));
            }
        };
        let put = Put {
            key: &args.key,
            value: &args.value,
            expect: Expect::from_expected_version(args.expected_version),
            ttl,
        };
        Ok(Json(self.store().put(&principal, put).await?.into()))
    }
}
