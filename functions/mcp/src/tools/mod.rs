//! The product tools: one file each, registered in [`product_tools`].
//!
//! A tool is an `impl McpServer` block with a `#[tool_router(router = …)]`
//! attribute, an argument struct deriving `Deserialize` + `JsonSchema` (its doc
//! comments become the schema descriptions), and a function returning
//! `Result<Json<Output>, ToolError>`. An `Err` reaches the client as an
//! `isError: true` result whose text says what was wrong and how to fix it.
//!
//! To add a tool: copy `echo.rs`, rename, and add one line to [`product_tools`].

mod echo;
mod file_write;
mod get_time;
mod health_check;
pub(crate) mod schema;
mod state_delete;
mod state_export;
mod state_get;
mod state_list;
mod state_set;
mod text_copy;

pub(crate) use text_copy::without_large_text_copy;

use rmcp::{
    ErrorData,
    handler::server::{
        common::{AsRequestContext, FromContextPart},
        router::tool::ToolRouter,
    },
    model::{ContentBlock, Extensions, IntoContents},
};

use crate::{
    blob::BlobError,
    principal::Principal,
    server::McpServer,
    store::{StoreError, feed::Change},
};

/// Every product tool; the one place a new tool is registered. Their schemas are
/// advertised in their most portable spelling (see [`schema`]).
pub(crate) fn product_tools() -> ToolRouter<McpServer> {
    let mut router = McpServer::health_check_router()
        + McpServer::echo_router()
        + McpServer::get_time_router()
        + McpServer::state_get_router()
        + McpServer::state_set_router()
        + McpServer::state_list_router()
        + McpServer::state_delete_router()
        + McpServer::file_write_router()
        + McpServer::state_export_router();
    for route in router.map.values_mut() {
        schema::portable(&mut route.attr);
    }
    router
}

/// The product tools that can run as tasks (SEP-2663), by name.
pub(crate) fn task_jobs() -> crate::tasks::TaskJobs {
    crate::tasks::TaskJobs::default().with("state_export", state_export::job)
}

/// The tools of `router` not marked `read_only_hint = true`: calling them needs `mcp:write`.
///
/// The annotation on each tool is the one place this is decided, so a new writing tool is
/// guarded the moment it is registered (and a tool without the annotation counts as writing).
pub(crate) fn write_tools(router: &ToolRouter<McpServer>) -> std::collections::HashSet<String> {
    router
        .list_all()
        .into_iter()
        .filter(|tool| {
            tool.annotations
                .as_ref()
                .and_then(|annotations| annotations.read_only_hint)
                != Some(true)
        })
        .map(|tool| tool.name.into_owned())
        .collect()
}

/// A tool failure the caller can act on; shown to the client as `isError: true`.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The arguments were well-formed but not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// A store rule refused the call (size, key, version conflict, cursor).
    #[error("{0}")]
    Store(StoreError),
    /// A file store rule refused the call (path, size, content type, cursor).
    #[error("{0}")]
    Blob(BlobError),
    /// Something on the server side failed; details are in the server log only.
    #[error("the {0} is unavailable right now; retry shortly (details are in the server log)")]
    Unavailable(&'static str),
}

impl From<StoreError> for ToolError {
    fn from(error: StoreError) -> Self {
        if error.is_caller_error() {
            Self::Store(error)
        } else {
            tracing::error!(%error, "store call failed");
            Self::Unavailable("state store")
        }
    }
}

impl From<BlobError> for ToolError {
    fn from(error: BlobError) -> Self {
        if error.is_caller_error() {
            Self::Blob(error)
        } else {
            tracing::error!(%error, "file store call failed");
            Self::Unavailable("file store")
        }
    }
}

impl IntoContents for ToolError {
    fn into_contents(self) -> Vec<ContentBlock> {
        vec![ContentBlock::text(self.to_string())]
    }
}

/// A file path a caller gave (`file_write`, `state_export`) in the form it is stored in (see
/// [`crate::blob::checked_blob_key`]), or what is wrong with it.
pub(crate) fn checked_file_path(path: &str) -> Result<String, ToolError> {
    match crate::blob::checked_blob_key(path) {
        Ok(stored) => Ok(stored.into_owned()),
        Err(BlobError::InvalidKey(reason)) => Err(ToolError::Invalid(format!(
            "invalid path {path:?}: {reason}"
        ))),
        Err(other) => Err(other.into()),
    }
}

/// Tells the caller's listeners that the file at `uri` was written. The listing shows each
/// file's size and type, so a replaced file changes it too.
pub(crate) async fn announce_file_written(
    context: &crate::server::ServerContext,
    principal: &Principal,
    uri: &str,
) {
    let changes = [
        Change::ResourceListChanged,
        Change::ResourceUpdated {
            uri: uri.to_owned(),
        },
    ];
    context.announce(principal, &changes).await;
}

/// The principal a tool call acts for, taken from the HTTP request.
///
/// The host inserts the [`Principal`] into the request before the MCP layer
/// sees it; a request without one is refused rather than run as anyone.
pub struct Caller(pub Principal);

impl<C: AsRequestContext> FromContextPart<C> for Caller {
    fn from_context_part(context: &mut C) -> Result<Self, ErrorData> {
        request_principal(&context.as_request_context().extensions).map(Caller)
    }
}

/// The [`Principal`] the host put into the HTTP request behind an MCP request.
///
/// Tools get it through [`Caller`]; other handlers (resources) call this. A
/// request without one is refused rather than run as anyone.
pub(crate) fn request_principal(extensions: &Extensions) -> Result<Principal, ErrorData> {
    extensions
        .get::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<Principal>())
        .cloned()
        .ok_or_else(|| ErrorData::internal_error("request carries no principal", None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_writing_tools_are_the_ones_that_change_state_or_files() {
        let mut tools: Vec<String> = write_tools(&product_tools()).into_iter().collect();
        tools.sort();
        assert_eq!(
            tools,
            ["file_write", "state_delete", "state_export", "state_set"]
        );
    }

    #[test]
    fn every_tool_schema_is_plain_portable_json_schema() {
        let tools = product_tools().list_all();
        assert!(tools.iter().any(|tool| tool.output_schema.is_some()));
        assert_eq!(schema::portability_problems(&tools), Vec::<String>::new());
        // What the bounds say stays: a version is a non-negative integer, or null.
        let state_set = tools
            .iter()
            .find(|tool| tool.name == "state_set")
            .expect("state_set");
        let input = serde_json::Value::Object((*state_set.input_schema).clone());
        assert_eq!(
            input["properties"]["expected_version"]["anyOf"],
            serde_json::json!([{ "type": "integer", "minimum": 0 }, { "type": "null" }]),
            "{input}"
        );
    }

    #[test]
    fn the_authorizer_is_told_the_same_writing_tools() {
        let template =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../template.yaml"))
                .expect("template.yaml");
        let listed = template
            .lines()
            .find_map(|line| line.trim().strip_prefix("MCP_WRITE_TOOLS: "))
            .expect("the template sets MCP_WRITE_TOOLS");
        let listed: std::collections::HashSet<String> =
            listed.split(',').map(str::to_owned).collect();
        assert_eq!(listed, write_tools(&product_tools()));
    }

    #[test]
    fn a_request_without_a_principal_is_refused() {
        let mut extensions = Extensions::default();
        let refused = request_principal(&extensions).expect_err("no principal");
        assert_eq!(refused.message, "request carries no principal");

        let (parts, ()) = http::Request::new(()).into_parts();
        extensions.insert(parts);
        assert!(request_principal(&extensions).is_err());

        let mut request = http::Request::new(());
        request.extensions_mut().insert(Principal::anonymous());
        let (parts, ()) = request.into_parts();
        extensions.insert(parts);
        assert_eq!(
            request_principal(&extensions).ok(),
            Some(Principal::anonymous())
        );
    }
}
