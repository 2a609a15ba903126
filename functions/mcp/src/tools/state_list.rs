//! `state_list`: page through the caller's documents in key order.

use rmcp::{
    handler::server::wrapper::{Json, Parameters},
    schemars::{self, JsonSchema},
    tool, tool_router,
};
use serde::Deserialize;

use super::{Caller, ToolError, Toolbox, document::Page};
use crate::store::MAX_PAGE_SIZE;

const DEFAULT_PAGE_SIZE: u32 = 50;

#[derive(Debug, Deserialize, JsonSchema)]
pub struct StateListArgs {
    /// Only keys starting with this text. Omit for all keys.
    #[serde(default)]
    pub prefix: Option<String>,
    /// The nextCursor of the previous page, to continue the same listing.
    #[serde(default)]
    pub cursor: Option<String>,
    /// Documents per page, 1 to 100 (default 50).
    #[serde(default)]
    pub limit: Option<u32>,
}

#[tool_router(router = state_list_router, vis = "pub(crate)")]
impl Toolbox {
    #[tool(
        description = "List the calling user's documents in key order, optionally by key prefix. Returns up to `limit` documents and a nextCursor while more remain.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    pub async fn state_list(
        &self,
        Caller(principal): Caller,
        Parameters(args): Parameters<StateListArgs>,
    ) -> Result<Json<Page>, ToolError> {
        let limit = args.limit.unwrap_or(DEFAULT_PAGE_SIZE);
        if !(1..=MAX_PAGE_SIZE).contains(&limit) {
            return Err(ToolError::Invalid(format!(
                "limit is {limit}; use 1 to {MAX_PAGE_SIZE}"
            )));
        }
        let prefix = args.prefix.unwrap_or_default();
        let page = self
            .store()
            .list(&principal, &prefix, args.cursor.as_deref(), limit)
            .await?;
        Ok(Json(page.into()))
    }
}
