//! The callers' files as MCP resources: `files:///<path>` URIs, `resources/list` (paginated),
//! `resources/read` (text or base64), the resource template, and legacy
//! `resources/subscribe`.
//!
//! The MCP side of [`crate::blob`]: the URIs and wire shapes are built here, so the file store
//! knows nothing of MCP. The handler ([`crate::server`]) calls these; the tools that write
//! files name them with [`file_uri`] and announce them with [`announce_written`].

use std::{borrow::Cow, collections::BTreeSet};

use base64::{Engine, engine::general_purpose::STANDARD};
use rmcp::{
    ErrorData, RoleServer,
    model::{
        CacheScope, ListResourcesResult, PaginatedRequestParams, ReadResourceRequestParams,
        ReadResourceResponse, ReadResourceResult, Resource, ResourceContents, ResourceTemplate,
        SubscribeRequestParams, UnsubscribeRequestParams,
    },
    service::RequestContext,
};
use serde_json::json;

use crate::{
    blob::{self, Blob, BlobMeta, checked_blob_key},
    config::ListenSettings,
    context::{ServerContext, request_principal},
    fault::rpc_error,
    listen::LegacyWatcher,
    principal::Principal,
    store::{MAX_SUBSCRIPTIONS, feed::Change},
};

/// Files per `resources/list` page.
pub const RESOURCE_PAGE_SIZE: u32 = 50;

/// Scheme and authority of the MCP resource URIs of files: `files:///<path>`.
pub const URI_PREFIX: &str = "files:///";

/// URI template of the caller's files (RFC 6570 reserved expansion keeps the `/`s).
pub const FILE_URI_TEMPLATE: &str = "files:///{+path}";

/// What the server's instructions say of the resources.
pub const SUMMARY: &str = "your files as files:///<path> (resources/list, resources/read).";

/// Characters kept as they are in a resource URI's path: RFC 3986 `pchar`
/// (unreserved, sub-delims, `:`, `@`) and the `/` between segments.
fn is_uri_safe(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&byte)
}

/// The MCP resource URI of a file: `files:///` and the path, percent-encoded.
pub fn file_uri(key: &str) -> String {
    let mut uri = String::with_capacity(URI_PREFIX.len() + key.len());
    uri.push_str(URI_PREFIX);
    for byte in key.bytes() {
        if is_uri_safe(byte) {
            uri.push(char::from(byte));
        } else {
            uri.push_str(&format!("%{byte:02X}"));
        }
    }
    uri
}

/// Why a URI names no file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    /// Not a `files:` URI at all: some other resource, which the files do not serve.
    #[error("not a files: URI")]
    OtherScheme,
    /// A `files:` URI that cannot name a file; the reason says why.
    #[error("{0}")]
    Malformed(String),
}

/// The file path a `files:///<path>` URI names (percent-decoded and validated).
pub fn key_from_uri(uri: &str) -> Result<String, UriError> {
    let scheme_ok = uri
        .get(..6)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("files:"));
    if !scheme_ok {
        return Err(UriError::OtherScheme);
    }
    let malformed = |reason: &str| Err(UriError::Malformed(reason.to_owned()));
    let Some(path) = uri[6..].strip_prefix("///") else {
        return malformed("a file URI is files:/// followed by the path");
    };
    if path.contains(['?', '#']) {
        return malformed("a file URI has no query or fragment; percent-encode `?` and `#`");
    }
    let mut bytes = Vec::with_capacity(path.len());
    let mut rest = path.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == b'%' {
            let hex = tail
                .get(..2)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok());
            let Some(decoded) = hex else {
                return malformed("`%` must start a percent-encoded byte such as %20");
            };
            bytes.push(decoded);
            rest = &tail[2..];
        } else {
            bytes.push(byte);
            rest = tail;
        }
    }
    let Ok(key) = String::from_utf8(bytes) else {
        return malformed("the percent-decoded path is not UTF-8");
    };
    match checked_blob_key(&key) {
        Ok(Cow::Borrowed(_)) => Ok(key),
        Ok(Cow::Owned(canonical)) => Ok(canonical),
        Err(error) => Err(UriError::Malformed(error.to_string())),
    }
}

/// Tells the caller's listeners that the file at `uri` was written. The listing shows each
/// file's size and type, so a replaced file changes it too.
pub async fn announce_written(context: &ServerContext, principal: &Principal, uri: &str) {
    let changes = [
        Change::ResourceListChanged,
        Change::ResourceUpdated {
            uri: uri.to_owned(),
        },
    ];
    context.announce(principal, &changes).await;
}

/// `resources/list`: a page of the caller's files.
pub async fn list(
    context: &ServerContext,
    request: Option<PaginatedRequestParams>,
    cx: RequestContext<RoleServer>,
) -> Result<ListResourcesResult, ErrorData> {
    let principal = request_principal(&cx.extensions)?;
    let cursor = request.and_then(|request| request.cursor);
    let page = context
        .blobs
        .list(&principal, cursor.as_deref(), RESOURCE_PAGE_SIZE)
        .await
        .map_err(|error| rpc_error("file store", error))?;
    let mut result =
        ListResourcesResult::with_all_items(page.items.iter().map(file_resource).collect())
            .with_ttl_ms(0)
            .with_cache_scope(CacheScope::Private);
    result.next_cursor = page.next_cursor;
    Ok(result)
}

/// The resource templates of the product: the caller's files.
pub fn templates() -> Vec<ResourceTemplate> {
    vec![
        ResourceTemplate::new(FILE_URI_TEMPLATE, "file")
            .with_title("Your files")
            .with_description(
                "Your own files, written with the file_write tool; path is the path given to \
                 file_write (resources/list lists them).",
            ),
    ]
}

/// `resources/read`: one of the caller's files; any URI that names none is not found.
pub async fn read(
    context: &ServerContext,
    request: ReadResourceRequestParams,
    cx: RequestContext<RoleServer>,
) -> Result<ReadResourceResponse, ErrorData> {
    let principal = request_principal(&cx.extensions)?;
    let uri = request.uri;
    let key = match key_from_uri(&uri) {
        Ok(key) => key,
        Err(UriError::OtherScheme) => return Err(resource_not_found(&uri)),
        Err(UriError::Malformed(reason)) => {
            return Err(ErrorData::invalid_params(
                format!(
                    "malformed file URI {uri}: {reason}; use files:///<path> as resources/list shows it"
                ),
                Some(json!({ "uri": uri })),
            ));
        }
    };
    let blob = context
        .blobs
        .get(&principal, &key)
        .await
        .map_err(|error| rpc_error("file store", error))?
        .ok_or_else(|| resource_not_found(&uri))?;
    Ok(ReadResourceResult::new(vec![file_contents(uri, blob)])
        .with_ttl_ms(0)
        .with_cache_scope(CacheScope::Private)
        .into())
}

/// Legacy `resources/subscribe`: updates of the resource at the request's URI reach the
/// session's standalone stream.
pub async fn subscribe(
    context: &ServerContext,
    request: SubscribeRequestParams,
    cx: RequestContext<RoleServer>,
) -> Result<(), ErrorData> {
    let settings = legacy_subscriptions(context)?;
    let principal = request_principal(&cx.extensions)?;
    let session = legacy_session_id(&cx)?;
    if let Err(UriError::Malformed(reason)) = key_from_uri(&request.uri) {
        return Err(ErrorData::invalid_params(
            format!("malformed file URI {}: {reason}", request.uri),
            Some(json!({ "uri": request.uri })),
        ));
    }
    if context.host == "lambda" {
        return change_stored_subscriptions(context, &session, |uris| {
            uris.insert(request.uri);
        })
        .await;
    }
    let watcher = LegacyWatcher {
        feed: context.store.clone(),
        principal,
        peer: cx.peer.clone(),
        poll: settings.poll,
    };
    context
        .legacy_watches
        .subscribe(&session, request.uri, watcher);
    Ok(())
}

/// Legacy `resources/unsubscribe`.
pub async fn unsubscribe(
    context: &ServerContext,
    request: UnsubscribeRequestParams,
    cx: RequestContext<RoleServer>,
) -> Result<(), ErrorData> {
    legacy_subscriptions(context)?;
    let session = legacy_session_id(&cx)?;
    if context.host == "lambda" {
        return change_stored_subscriptions(context, &session, |uris| {
            uris.remove(&request.uri);
        })
        .await;
    }
    context.legacy_watches.unsubscribe(&session, &request.uri);
    Ok(())
}

/// Legacy subscriptions need updates delivered on the session's standalone stream: on
/// mcp-server the session's worker holds it; on Lambda, with long-lived streams on, the
/// `GET /mcp` stream follows the caller's change feed and the session's subscriptions
/// are kept in the store. With long-lived streams off there is no such stream.
fn legacy_subscriptions(context: &ServerContext) -> Result<ListenSettings, ErrorData> {
    context.listen.ok_or_else(|| {
        ErrorData::invalid_request(
            "resources/subscribe is not available here: its updates need the standalone GET \
             stream, which this host does not hold (long-lived streams are off)",
            None,
        )
    })
}

/// Applies `edit` to the session's subscriptions kept in the store (Lambda, where no
/// instance keeps the session), within [`MAX_SUBSCRIPTIONS`].
async fn change_stored_subscriptions(
    context: &ServerContext,
    session: &str,
    edit: impl FnOnce(&mut BTreeSet<String>),
) -> Result<(), ErrorData> {
    let unavailable = |error| rpc_error("session store", error);
    let gone = || ErrorData::invalid_request("the session has ended; initialize again", None);
    let store = context.store.as_ref();
    let mut uris = store
        .load_session_subscriptions(session)
        .await
        .map_err(unavailable)?
        .ok_or_else(gone)?;
    edit(&mut uris);
    if uris.len() > MAX_SUBSCRIPTIONS {
        return Err(ErrorData::invalid_params(
            format!(
                "a session may subscribe to at most {MAX_SUBSCRIPTIONS} resources; \
                 unsubscribe from some first"
            ),
            None,
        ));
    }
    if !store
        .set_session_subscriptions(session, &uris)
        .await
        .map_err(unavailable)?
    {
        return Err(gone());
    }
    Ok(())
}

/// The legacy session a request belongs to (rmcp only routes session requests here).
fn legacy_session_id(cx: &RequestContext<RoleServer>) -> Result<String, ErrorData> {
    cx.extensions
        .get::<http::request::Parts>()
        .and_then(|parts| parts.headers.get("mcp-session-id"))
        .and_then(|id| id.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| ErrorData::invalid_request("resources/subscribe needs a session", None))
}

/// The `resources/list` entry of a file.
fn file_resource(meta: &BlobMeta) -> Resource {
    Resource::new(file_uri(&meta.key), meta.key.clone())
        .with_mime_type(meta.content_type.clone())
        .with_size(meta.size)
}

/// A file's contents: text for textual types holding UTF-8, base64 otherwise.
fn file_contents(uri: String, blob: Blob) -> ResourceContents {
    let Blob { meta, bytes } = blob;
    if blob::is_textual(&meta.content_type)
        && let Ok(text) = std::str::from_utf8(&bytes)
    {
        return ResourceContents::text(text, uri).with_mime_type(meta.content_type);
    }
    ResourceContents::blob(STANDARD.encode(&bytes), uri).with_mime_type(meta.content_type)
}

/// The MCP "resource not found" error (-32002; rmcp sends -32602 on 2026-07-28, SEP-2164).
fn resource_not_found(uri: &str) -> ErrorData {
    ErrorData::resource_not_found(
        format!("Resource not found: {uri}"),
        Some(json!({ "uri": uri })),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_uris_round_trip() {
        for key in [
            "notes/today.txt",
            "a b/c#d?e%f",
            "ümlaut/日本.md",
            "x:y@z!$&'()*+,;=",
        ] {
            let uri = file_uri(key);
            assert!(uri.starts_with(URI_PREFIX));
            assert!(!uri[URI_PREFIX.len()..].contains([' ', '#', '?']));
            assert_eq!(key_from_uri(&uri).as_deref(), Ok(key));
        }
        assert_eq!(file_uri("a b"), "files:///a%20b");
        // A path is named in its stored form (NFC), however the URI spells it.
        assert_eq!(
            key_from_uri("files:///cafe%CC%81").as_deref(),
            Ok("caf\u{00E9}")
        );
        assert_eq!(key_from_uri("FILES:///a").as_deref(), Ok("a"));
    }

    #[test]
    fn other_and_malformed_uris_are_told_apart() {
        assert_eq!(
            key_from_uri("test://static-text"),
            Err(UriError::OtherScheme)
        );
        assert_eq!(
            key_from_uri("file:///etc/passwd"),
            Err(UriError::OtherScheme)
        );
        for malformed in [
            "files://host/a",
            "files:/a",
            "files:///",
            "files:///../x",
            "files:///a/%2E%2E/b",
            "files:///a%2",
            "files:///a%zz",
            "files:///a?b",
            "files:///a#b",
            "files:///%FF",
            "files:///a%00b",
            "files:///a%5Cb",
        ] {
            assert!(
                matches!(key_from_uri(malformed), Err(UriError::Malformed(_))),
                "{malformed}"
            );
        }
    }
}
