//! `state_export`: write the caller's state documents (all, or those under a key prefix)
//! into one JSON file among their files.
//!
//! An export reads every page of the caller's documents, so it can take a while: where the
//! client declared the tasks extension it runs as a task ([`job`]), on any host; otherwise
//! the call answers when the file is written.

use bytes::Bytes;
use rmcp::{
    ErrorData,
    handler::server::{
        tool::IntoCallToolResult,
        wrapper::{Json, Parameters},
    },
    model::CallToolResponse,
    schemars::{self, JsonSchema},
    tool, tool_router,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Caller, ToolError, Toolbox, checked_file_path, document::Document};
use crate::{
    blob::MAX_BLOB_BYTES,
    context::ServerContext,
    principal::Principal,
    resources,
    store::MAX_PAGE_SIZE,
    tasks::{JobInput, JobOutcome},
};

#[derive(Debug, Deserialize, JsonSchema)]
pub struct StateExportArgs {
    /// Only documents whose key starts with this text. Omit to export all.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Where to write the export among your files, e.g. backups/state.json. Default: exports/state-<UTC time>.json.
    #[serde(default)]
    pub path: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct StateExportOutput {
    /// The export's resource URI, for resources/read.
    pub uri: String,
    pub path: String,
    /// How many documents the file holds.
    pub documents: usize,
    /// Length of the file in bytes.
    pub size: u64,
}

/// The exported file.
#[derive(Serialize)]
struct ExportFile<'a> {
    #[serde(rename = "exportedAt")]
    exported_at: chrono::DateTime<chrono::Utc>,
    prefix: &'a str,
    documents: Vec<Document>,
}

#[tool_router(router = state_export_router, vis = "pub(crate)")]
impl Toolbox {
    #[tool(
        description = "Export the calling user's state documents (all, or those whose key starts with prefix) into one JSON file among their files (default exports/state-<UTC time>.json), readable as a files:/// resource. Runs as a task when the client supports tasks.",
        annotations(
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    pub async fn state_export(
        &self,
        Caller(principal): Caller,
        Parameters(args): Parameters<StateExportArgs>,
    ) -> Result<Json<StateExportOutput>, ToolError> {
        export(self.context(), &principal, args).await.map(Json)
    }
}

/// The task form of `state_export`.
pub(crate) fn job(input: JobInput) -> futures::future::BoxFuture<'static, JobOutcome> {
    Box::pin(async move {
        let args = match serde_json::from_value::<StateExportArgs>(Value::Object(input.arguments)) {
            Ok(args) => args,
            Err(error) => {
                return JobOutcome::Failed(ErrorData::invalid_params(
                    format!("invalid arguments for state_export: {error}"),
                    None,
                ));
            }
        };
        let exported = export(&input.context, &input.principal, args)
            .await
            .map(Json);
        match exported.into_call_tool_result() {
            Ok(CallToolResponse::Complete(result)) => JobOutcome::Done(result),
            Ok(_) => JobOutcome::Failed(ErrorData::internal_error(
                "state_export answered in an unexpected shape",
                None,
            )),
            Err(error) => JobOutcome::Failed(error),
        }
    })
}

async fn export(
    context: &ServerContext,
    principal: &Principal,
    args: StateExportArgs,
) -> Result<StateExportOutput, ToolError> {
    let exported_at = chrono::Utc::now();
    let path = args.path.unwrap_or_else(|| {
        format!(
            "exports/state-{}.json",
            exported_at.format("%Y%m%dT%H%M%SZ")
        )
    });
    let path = checked_file_path(&path)?;
    let prefix = args.prefix.unwrap_or_default();
    let mut documents = Vec::new();
    let mut cursor = None;
    loop {
        let page = context
            .store
            .list(principal, &prefix, cursor.as_deref(), MAX_PAGE_SIZE)
            .await?;
        documents.extend(page.items.into_iter().map(Document::from));
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    let count = documents.len();
    let file = ExportFile {
        exported_at,
        prefix: &prefix,
        documents,
    };
    let bytes = serde_json::to_vec_pretty(&file).map_err(|error| {
        ToolError::Invalid(format!("the documents could not be encoded: {error}"))
    })?;
    if bytes.len() > MAX_BLOB_BYTES {
        return Err(ToolError::Invalid(format!(
            "the export would be {} bytes, over the {MAX_BLOB_BYTES}-byte file limit; export a \
             narrower prefix",
            bytes.len()
        )));
    }
    let meta = context
        .blobs
        .put(principal, &path, Bytes::from(bytes), "application/json")
        .await?;
    let uri = resources::file_uri(&meta.key);
    resources::announce_written(context, principal, &uri).await;
    Ok(StateExportOutput {
        uri,
        path: meta.key,
        documents: count,
        size: meta.size,
    })
}
