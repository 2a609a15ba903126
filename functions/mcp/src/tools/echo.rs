//! `echo`: returns its message unchanged; the smallest round trip through the stack.

use rmcp::{
    handler::server::wrapper::{Json, Parameters},
    schemars::{self, JsonSchema},
    tool, tool_router,
};
use serde::{Deserialize, Serialize};

use super::{ToolError, Toolbox};

/// Longest message echoed, in bytes.
const MAX_MESSAGE_BYTES: usize = 16 * 1024;

#[derive(Debug, Deserialize, JsonSchema)]
pub struct EchoArgs {
    /// Text to send back unchanged (at most 16 KiB).
    pub message: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct EchoOutput {
    /// The message, as received.
    pub message: String,
}

#[tool_router(router = echo_router, vis = "pub(crate)")]
impl Toolbox {
    #[tool(
        description = "Return the given message unchanged. Use it to check that the server answers.",
        annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    pub async fn echo(
        &self,
        Parameters(args): Parameters<EchoArgs>,
    ) -> Result<Json<EchoOutput>, ToolError> {
        if args.message.len() > MAX_MESSAGE_BYTES {
            return Err(ToolError::Invalid(format!(
                "message is {} bytes; at most {MAX_MESSAGE_BYTES} are allowed",
                args.message.len()
            )));
        }
        Ok(Json(EchoOutput {
            message: args.message,
        }))
    }
}
