//! `file_write`: create or replace one of the caller's files, then readable as an MCP resource.

use base64::{Engine, engine::general_purpose::STANDARD};
use bytes::Bytes;
use rmcp::{
    handler::server::wrapper::{Json, Parameters},
    schemars::{self, JsonSchema},
    tool, tool_router,
};
use serde::{Deserialize, Serialize};

use super::{Caller, ToolError, Toolbox, checked_file_path};
use crate::{
    blob::{self, MAX_CONTENT_TYPE_BYTES, OCTET_STREAM},
    resources,
};

/// How `content` carries the file's bytes.
#[derive(Debug, Default, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// The text itself, stored as UTF-8.
    #[default]
    Utf8,
    /// Standard base64 (with padding) of the bytes.
    Base64,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct FileWriteArgs {
    /// Where to store the file: a relative path such as notes/today.md ('/' between folders, no '.' or '..' segments, no invisible characters, at most 512 bytes).
    pub path: String,
    /// The file's content: text, or base64 when encoding is "base64". At most 5 MiB once decoded.
    pub content: String,
    /// "utf8" (default) or "base64".
    #[serde(default)]
    pub encoding: Encoding,
    /// Media type such as text/plain. Default from the extension: .txt text/plain, .json application/json, .md text/markdown, otherwise application/octet-stream.
    #[serde(default)]
    pub content_type: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct FileWriteOutput {
    /// The file's resource URI, for resources/read.
    pub uri: String,
    /// The path, as stored.
    pub path: String,
    /// Length of the stored file in bytes.
    pub size: u64,
    #[serde(rename = "contentType")]
    pub content_type: String,
}

/// The content type a path gets when the caller names none.
fn content_type_for(path: &str) -> &'static str {
    let name = path.rsplit('/').next().unwrap_or(path);
    let extension = name
        .rsplit_once('.')
        .map(|(_, extension)| extension.to_ascii_lowercase());
    match extension.as_deref() {
        Some("txt") => "text/plain",
        Some("json") => "application/json",
        Some("md") => "text/markdown",
        _ => OCTET_STREAM,
    }
}

#[tool_router(router = file_write_router, vis = "pub(crate)")]
impl Toolbox {
    #[tool(
        description = "Write a file (text, or base64 for binary) at a path among the calling user's files, replacing any file there. Returns its resource URI (files:///<path>); resources/list lists the files and resources/read reads them.",
        annotations(
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    pub async fn file_write(
        &self,
        Caller(principal): Caller,
        Parameters(args): Parameters<FileWriteArgs>,
    ) -> Result<Json<FileWriteOutput>, ToolError> {
        let path = checked_file_path(&args.path)?;
        let content_type = match &args.content_type {
            Some(given) => given.trim().to_owned(),
            None => content_type_for(&path).to_owned(),
        };
        if blob::validate_content_type(&content_type).is_err() {
            return Err(ToolError::Invalid(format!(
                "content_type {content_type:?} is not a media type; use type/subtype such as \
                 text/plain or application/json (optional ;parameters, at most \
                 {MAX_CONTENT_TYPE_BYTES} bytes), or omit it to go by the extension"
            )));
        }
        let bytes = match args.encoding {
            Encoding::Utf8 => Bytes::from(args.content),
            Encoding::Base64 => STANDARD
                .decode(args.content.trim())
                .map(Bytes::from)
                .map_err(|error| {
                    ToolError::Invalid(format!(
                        "content is not valid base64 ({error}); send standard base64 with padding, \
                     or set encoding to \"utf8\" for text"
                    ))
                })?,
        };
        let meta = self
            .blobs()
            .put(&principal, &path, bytes, &content_type)
            .await?;
        let uri = resources::file_uri(&meta.key);
        resources::announce_written(self.context(), &principal, &uri).await;
        Ok(Json(FileWriteOutput {
            uri,
            path: meta.key,
            size: meta.size,
            content_type: meta.content_type,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_follow_the_extension() {
        assert_eq!(content_type_for("notes/a.txt"), "text/plain");
        assert_eq!(content_type_for("A.JSON"), "application/json");
        assert_eq!(content_type_for("docs/readme.md"), "text/markdown");
        assert_eq!(content_type_for("image.png"), OCTET_STREAM);
        assert_eq!(content_type_for("no-extension"), OCTET_STREAM);
        assert_eq!(content_type_for("dir.txt/file"), OCTET_STREAM);
    }
}
