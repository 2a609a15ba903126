//! The product tools: one file each, registered in [`product_tools`].
//!
//! A tool is an `impl Toolbox` block with a `#[tool_router(router = …)]`
//! attribute, an argument struct deriving `Deserialize` + `JsonSchema` (its doc
//! comments become the schema descriptions), and a function returning
//! `Result<Json<Output>, ToolError>`. An `Err` reaches the client as an
//! `isError: true` result whose text says what was wrong and how to fix it.
//! Tools reach the stores and settings through [`Toolbox`]; they know nothing of the
//! MCP handler ([`crate::server`]) that dispatches to them.
//!
//! To add a tool: copy `echo.rs`, rename, and add one line to [`product_tools`]. Its name
//! and the first sentence of its description join the server's instructions by themselves.

mod document;
mod echo;
mod file_write;
mod get_time;
mod health_check;
pub mod schema;
mod state_delete;
mod state_export;
mod state_get;
mod state_list;
mod state_set;
mod text_copy;

use std::sync::Arc;

pub(crate) use text_copy::without_large_text_copy;

use rmcp::{
    ErrorData,
    handler::server::{
        common::{AsRequestContext, FromContextPart},
        router::tool::ToolRouter,
    },
    model::{ContentBlock, IntoContents},
};

use crate::{
    blob::{BlobError, BlobStore},
    context::{ServerContext, request_principal},
    fault::Fault,
    principal::Principal,
    store::{Store, StoreError},
};

/// What a tool works with: the stores and settings of this process. Cheap to clone.
#[derive(Clone)]
pub struct Toolbox {
    context: Arc<ServerContext>,
}

impl Toolbox {
    pub fn new(context: Arc<ServerContext>) -> Self {
        Self { context }
    }

    pub fn context(&self) -> &ServerContext {
        &self.context
    }

    pub fn store(&self) -> &dyn Store {
        self.context.store.as_ref()
    }

    pub fn blobs(&self) -> &dyn BlobStore {
        self.context.blobs.as_ref()
    }
}

/// Every product tool; the one place a new tool is registered. Their schemas are
/// advertised in their most portable spelling (see [`schema`]).
pub fn product_tools() -> ToolRouter<Toolbox> {
    let mut router = Toolbox::health_check_router()
        + Toolbox::echo_router()
        + Toolbox::get_time_router()
        + Toolbox::state_get_router()
        + Toolbox::state_set_router()
        + Toolbox::state_list_router()
        + Toolbox::state_delete_router()
        + Toolbox::file_write_router()
        + Toolbox::state_export_router();
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
pub(crate) fn write_tools(router: &ToolRouter<Toolbox>) -> std::collections::HashSet<String> {
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
    /// The state store refused the call (size, key, version conflict, cursor) or failed.
    #[error("{0}")]
    Store(Fault<StoreError>),
    /// The file store refused the call (path, size, content type, cursor) or failed.
    #[error("{0}")]
    Files(Fault<BlobError>),
}

impl From<StoreError> for ToolError {
    fn from(error: StoreError) -> Self {
        Self::Store(Fault::sort("state store", error))
    }
}

impl From<BlobError> for ToolError {
    fn from(error: BlobError) -> Self {
        Self::Files(Fault::sort("file store", error))
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
}
