//! `state_get`: read one of the caller's documents.

use rmcp::{
    handler::server::wrapper::{Json, Parameters},
    schemars::{self, JsonSchema},
    tool, tool_router,
};
use serde::Deserialize;

use super::{Caller, ToolError, Toolbox, document::Document};

#[derive(Debug, Deserialize, JsonSchema)]
pub struct StateGetArgs {
    /// Key of the document (1 to 256 bytes, no control or invisible characters; compared in Unicode NFC).
    pub key: String,
}

#[tool_router(router = state_get_router, vis = "pub(crate)")]
impl Toolbox {
    #[tool(
        description = "Read the JSON document stored under a key for the calling user, with its version (for state_set's expected_version).",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    pub async fn state_get(
        &self,
        Caller(principal): Caller,
        Parameters(args): Parameters<StateGetArgs>,
    ) -> Result<Json<Document>, ToolError> {
        self.store()
            .get(&principal, &args.key)
            .await?
            .map(|document| Json(document.into()))
            .ok_or_else(|| {
                ToolError::Invalid(format!(
                    "no document under key {:?}; use state_list to see your keys",
                    args.key
                ))
            })
    }
}
