//! `state_delete`: remove one of the caller's documents.

use rmcp::{
    handler::server::wrapper::{Json, Parameters},
    schemars::{self, JsonSchema},
    tool, tool_router,
};
use serde::{Deserialize, Serialize};

use super::{Caller, ToolError, Toolbox};
use crate::store::Expect;

#[derive(Debug, Deserialize, JsonSchema)]
pub struct StateDeleteArgs {
    /// Key of the document to delete.
    pub key: String,
    /// Delete only if the current version is this one. Omit to delete whatever is there.
    #[serde(default)]
    pub expected_version: Option<u64>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct StateDeleteOutput {
    pub key: String,
    /// False when there was no document to delete.
    pub deleted: bool,
}

#[tool_router(router = state_delete_router, vis = "pub(crate)")]
impl Toolbox {
    #[tool(
        description = "Delete the document under a key for the calling user; with expected_version, only if it is still that version.",
        annotations(
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    pub async fn state_delete(
        &self,
        Caller(principal): Caller,
        Parameters(args): Parameters<StateDeleteArgs>,
    ) -> Result<Json<StateDeleteOutput>, ToolError> {
        let expect = match args.expected_version {
            None => Expect::Any,
            Some(0) => {
                return Err(ToolError::Invalid(
                    "expected_version 0 means \"no document\"; there is nothing to delete then. Pass the version from state_get, or omit it".to_owned(),
                ));
            }
            Some(version) => Expect::Version(version),
        };
        let deleted = self.store().delete(&principal, &args.key, expect).await?;
        Ok(Json(StateDeleteOutput {
            key: args.key,
            deleted,
        }))
    }
}
