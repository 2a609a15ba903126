//! Files (blobs) behind one small trait, so every host and backend share one contract.
//!
//! [`BlobStore`] keeps each principal's files (bytes plus a content type) under
//! relative, `/`-separated paths. The `file_write` tool writes them and
//! [`crate::resources`] serves them as MCP resources; nothing here knows MCP.
//!
//! Backends: [`local::LocalBlobs`] (a folder; the `cargo run` default) and
//! [`s3::S3Blobs`] (an S3 bucket). Every backend passes the one shared suite in
//! `tests/blob_suite.rs`.
//!
//! Isolation: a principal's files live under [`principal_prefix`], a fixed-length
//! digest of the subject, and every path passes [`checked_blob_key`] first, so
//! no path or subject can reach another principal's files. Paths are stored and
//! compared in NFC and refuse invisible and look-alike characters ([`crate::names`]),
//! so two paths that display alike name one file or are refused.

pub mod local;
pub mod s3;

use std::borrow::Cow;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::{
    names,
    principal::Principal,
    store::{StoreError, cursor::CursorCodec},
};

/// Largest file accepted by [`BlobStore::put`]: 5 MiB.
///
/// Big enough for documents, images and data extracts, small enough that a
/// whole file fits in one Lambda response and is read into memory in one go.
/// Note that the HTTP body limit (`MCP_MAX_BODY_BYTES`, 1 MiB by default) caps
/// what one `file_write` call can carry before this limit is reached.
pub const MAX_BLOB_BYTES: usize = 5 * 1024 * 1024;
/// Longest path accepted, in bytes.
pub const MAX_BLOB_KEY_BYTES: usize = 512;
/// Longest segment of a path accepted, in bytes (a file-name limit of common filesystems).
pub const MAX_BLOB_SEGMENT_BYTES: usize = 255;
/// Longest content type accepted, in bytes.
pub const MAX_CONTENT_TYPE_BYTES: usize = 128;
/// Largest page [`BlobStore::list`] returns, whatever the caller asks for.
pub const MAX_BLOB_PAGE_SIZE: u32 = 100;
/// Content type of bytes whose type is unknown.
pub const OCTET_STREAM: &str = "application/octet-stream";

/// Listing name the cursors of [`BlobStore::list`] are bound to. The leading NUL
/// keeps it apart from every state-store prefix, so no state cursor opens here.
const LISTING: &str = "\u{0}files";

/// What is known about a stored file without its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobMeta {
    /// The file's path, relative to the caller's files.
    pub key: String,
    pub content_type: String,
    /// Length in bytes.
    pub size: u64,
    pub updated_at: DateTime<Utc>,
}

/// A stored file: its metadata and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub meta: BlobMeta,
    pub bytes: Bytes,
}

/// A page of [`BlobStore::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobPage {
    /// Files in key order.
    pub items: Vec<BlobMeta>,
    /// Pass back to get the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// What went wrong in a blob store call.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The path breaks a rule of [`validate_blob_key`] (or a limit of the backend).
    #[error("invalid path: {0}")]
    InvalidKey(String),
    #[error("file is {size} bytes; at most {max} are allowed")]
    TooLarge { size: usize, max: usize },
    #[error(
        "content type must be a media type such as text/plain or application/json \
         (type/subtype, optional ;parameters, at most {MAX_CONTENT_TYPE_BYTES} bytes)"
    )]
    InvalidContentType,
    #[error("the cursor is not valid for this listing; start again without a cursor")]
    BadCursor,
    /// The backend failed; `message` is for the log, never for the caller.
    #[error("file store {operation} failed: {message}")]
    Backend {
        operation: &'static str,
        message: String,
        /// Whether trying again later may succeed (throttling, 5xx, timeouts).
        retryable: bool,
    },
}

impl BlobError {
    /// True when the caller's input was at fault, so the message is safe and useful to show.
    pub fn is_caller_error(&self) -> bool {
        !matches!(self, Self::Backend { .. })
    }

    pub(crate) fn backend(
        operation: &'static str,
        message: impl Into<String>,
        retryable: bool,
    ) -> Self {
        Self::Backend {
            operation,
            message: message.into(),
            retryable,
        }
    }
}

/// Files of each principal.
///
/// **Invariant:** no method returns, counts or reveals a file of a principal
/// other than the one passed in; cursors are bound to their principal.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Creates or replaces the file at `key`.
    async fn put(
        &self,
        principal: &Principal,
        key: &str,
        bytes: Bytes,
        content_type: &str,
    ) -> Result<BlobMeta, BlobError>;

    /// The file at `key`, if any.
    async fn get(&self, principal: &Principal, key: &str) -> Result<Option<Blob>, BlobError>;

    /// Files in key order (byte order of the path), at most `limit` (capped at
    /// [`MAX_BLOB_PAGE_SIZE`]) per page, resuming after `cursor`.
    async fn list(
        &self,
        principal: &Principal,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<BlobPage, BlobError>;

    /// Cheap round trip proving the backend answers (health).
    async fn ping(&self) -> Result<(), BlobError>;

    /// Backend name for health output ("local", "s3").
    fn backend(&self) -> &'static str;
}

/// A file path in the form it is stored and compared in, checked: non-empty, no control
/// character (NUL included), nothing [`names::canonical_path`] refuses (bidirectional text
/// controls, invisible formatting characters, look-alikes of `.`, `/` and `\`), and, once in
/// NFC, at most [`MAX_BLOB_KEY_BYTES`], relative, `/`-separated segments of at most
/// [`MAX_BLOB_SEGMENT_BYTES`] with none empty, `.` or `..`, and no backslash. Borrowed when
/// `key` is in its stored form already; every backend reads and writes files only under
/// paths from here.
///
/// A path that passes names a file strictly inside its principal's folder on
/// every backend: it can neither climb out nor start over at a root.
pub fn checked_blob_key(key: &str) -> Result<Cow<'_, str>, BlobError> {
    let invalid = |reason: String| Err(BlobError::InvalidKey(reason));
    if key.is_empty() {
        return invalid("it is empty; give a relative path such as notes/today.txt".into());
    }
    if key.chars().any(char::is_control) {
        return invalid("it contains a control character".into());
    }
    let key = match names::canonical_path(key) {
        Ok(key) => key,
        Err(reason) => return invalid(format!("it {reason}")),
    };
    if key.len() > MAX_BLOB_KEY_BYTES {
        return invalid(format!(
            "it is {} bytes; at most {MAX_BLOB_KEY_BYTES} are allowed",
            key.len()
        ));
    }
    if key.contains('\\') {
        return invalid("it contains a backslash; separate folders with `/`".into());
    }
    if key.starts_with('/') {
        return invalid("it starts with `/`; give a relative path such as notes/today.txt".into());
    }
    for segment in key.split('/') {
        if segment.is_empty() {
            return invalid("it has an empty segment (`//` or a trailing `/`)".into());
        }
        if segment == "." || segment == ".." {
            return invalid(
                "it has a `.` or `..` segment; give a relative path such as notes/today.txt".into(),
            );
        }
        if segment.len() > MAX_BLOB_SEGMENT_BYTES {
            return invalid(format!(
                "it has a segment of {} bytes; at most {MAX_BLOB_SEGMENT_BYTES} are allowed per segment",
                segment.len()
            ));
        }
    }
    Ok(key)
}

/// Checks that `key` is a valid path in its stored form ([`checked_blob_key`] would leave it
/// as it is): what a listing may show, so every listed file can be read by its path.
pub fn validate_blob_key(key: &str) -> Result<(), BlobError> {
    match checked_blob_key(key)? {
        Cow::Borrowed(_) => Ok(()),
        Cow::Owned(_) => Err(BlobError::InvalidKey(
            "it is not in Unicode normalization form C".into(),
        )),
    }
}

/// Checks a content type: `type/subtype` with optional `; name=value`
/// parameters, at most [`MAX_CONTENT_TYPE_BYTES`], nothing but visible ASCII
/// and spaces (it travels in HTTP headers).
pub fn validate_content_type(content_type: &str) -> Result<(), BlobError> {
    let bad = Err(BlobError::InvalidContentType);
    if content_type.is_empty() || content_type.len() > MAX_CONTENT_TYPE_BYTES {
        return bad;
    }
    let mut parts = content_type.split(';');
    let essence = parts.next().unwrap_or_default().trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return bad;
    };
    if !is_token(kind) || !is_token(subtype) {
        return bad;
    }
    for parameter in parts {
        let Some((name, value)) = parameter.trim().split_once('=') else {
            return bad;
        };
        let quoted = value.len() >= 2
            && value.starts_with('"')
            && value.ends_with('"')
            && value[1..value.len() - 1]
                .chars()
                .all(|c| (c == ' ' || c.is_ascii_graphic()) && c != '"' && c != '\\');
        if !is_token(name) || !(is_token(value) || quoted) {
            return bad;
        }
    }
    Ok(())
}

/// An RFC 9110 token: one or more of ALPHA, DIGIT and ``!#$%&'*+-.^_`|~``.
fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether bytes of this content type are text to show as text: `text/*`,
/// JSON, XML, YAML, JavaScript and the like (parameters ignored).
pub fn is_textual(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    kind == "text"
        || (kind == "application"
            && (matches!(
                subtype,
                "json"
                    | "xml"
                    | "yaml"
                    | "x-yaml"
                    | "toml"
                    | "javascript"
                    | "ecmascript"
                    | "x-sh"
                    | "sql"
                    | "graphql"
                    | "x-ndjson"
                    | "ndjson"
                    | "csv"
            ) || subtype.ends_with("+json")
                || subtype.ends_with("+xml")
                || subtype.ends_with("+yaml")))
}

/// The folder name of a principal's files on every backend: the lowercase hex
/// SHA-256 of the subject.
///
/// Subjects may hold any printable character (`/`, `..`, `%`, …) and up to 256
/// bytes, so they cannot be used as path segments directly. The digest is one
/// fixed-length segment of `[0-9a-f]` whatever the subject: it cannot escape or
/// collide (also on case-insensitive filesystems), fits a file name and the S3
/// key budget next to a 512-byte path, and keeps subjects (possibly e-mail
/// addresses) out of object keys and access logs. To find a user's files,
/// compute this from their subject.
pub fn principal_prefix(principal: &Principal) -> String {
    Sha256::digest(principal.as_str().as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Seals the cursor that resumes a principal's listing after `last_key`.
pub(crate) fn seal_cursor(cursors: &CursorCodec, principal: &Principal, last_key: &str) -> String {
    cursors.seal(principal, LISTING, last_key)
}

/// The key a listing cursor resumes after, if it was issued for this principal's files.
pub(crate) fn open_cursor(
    cursors: &CursorCodec,
    principal: &Principal,
    cursor: Option<&str>,
) -> Result<Option<String>, BlobError> {
    cursor
        .map(|cursor| {
            cursors
                .open(principal, LISTING, cursor)
                .map_err(|error| match error {
                    StoreError::BadCursor => BlobError::BadCursor,
                    other => BlobError::backend("list", other.to_string(), false),
                })
        })
        .transpose()
}

/// The page size a backend uses for a requested `limit`.
pub(crate) fn page_size(limit: u32) -> u32 {
    limit.clamp(1, MAX_BLOB_PAGE_SIZE)
}

/// Checks everything [`BlobStore::put`] checks before touching a backend; the path in its
/// stored form.
pub(crate) fn validate_put<'a>(
    key: &'a str,
    bytes: &Bytes,
    content_type: &str,
) -> Result<Cow<'a, str>, BlobError> {
    let key = checked_blob_key(key)?;
    validate_content_type(content_type)?;
    if bytes.len() > MAX_BLOB_BYTES {
        return Err(BlobError::TooLarge {
            size: bytes.len(),
            max: MAX_BLOB_BYTES,
        });
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(key: &str) -> String {
        match validate_blob_key(key) {
            Err(BlobError::InvalidKey(reason)) => reason,
            other => panic!("{key:?} should be refused, got {other:?}"),
        }
    }

    #[test]
    fn escaping_and_malformed_paths_are_refused_with_reasons() {
        let dots = "it has a `.` or `..` segment; give a relative path such as notes/today.txt";
        assert_eq!(reason(".."), dots);
        assert_eq!(reason("../x"), dots);
        assert_eq!(reason("a/../../b"), dots);
        assert_eq!(reason("a/./b"), dots);
        assert_eq!(
            reason("/abs"),
            "it starts with `/`; give a relative path such as notes/today.txt"
        );
        let empty_segment = "it has an empty segment (`//` or a trailing `/`)";
        assert_eq!(reason("a//b"), empty_segment);
        assert_eq!(reason("a/"), empty_segment);
        assert_eq!(
            reason("a\\b"),
            "it contains a backslash; separate folders with `/`"
        );
        assert_eq!(
            reason("..\\x"),
            "it contains a backslash; separate folders with `/`"
        );
        for control in ["a\u{0}b", "a\nb", "tab\there", "\u{7f}", "x\u{85}"] {
            assert_eq!(reason(control), "it contains a control character");
        }
        assert_eq!(
            reason(""),
            "it is empty; give a relative path such as notes/today.txt"
        );
        assert_eq!(
            reason(&"x".repeat(513)),
            "it is 513 bytes; at most 512 are allowed"
        );
        assert_eq!(
            reason(&format!("a/{}", "s".repeat(256))),
            "it has a segment of 256 bytes; at most 255 are allowed per segment"
        );
        assert_eq!(
            reason("\u{FF0E}\u{FF0E}/etc"),
            "it contains U+FF0E, which looks like `.` but is another character; use `.` \
             itself or a different character"
        );
        assert_eq!(
            reason("a\u{202E}txt.exe"),
            "it contains U+202E, a bidirectional text control that can make a name display \
             differently from how it is stored; remove it"
        );
        // A listing shows only paths in their stored form, so each can be read back.
        assert_eq!(
            reason("cafe\u{0301}"),
            "it is not in Unicode normalization form C"
        );
    }

    #[test]
    fn paths_are_kept_in_nfc_and_sized_as_stored() {
        assert_eq!(
            checked_blob_key("dir/cafe\u{0301}.txt").ok().as_deref(),
            Some("dir/caf\u{00E9}.txt")
        );
        assert!(matches!(
            checked_blob_key("dir/caf\u{00E9}.txt"),
            Ok(Cow::Borrowed(_))
        ));
        // Limits apply to the stored form: 127 decomposed `é` are 381 bytes, composed 254.
        let decomposed = "e\u{0301}".repeat(127);
        assert_eq!(
            checked_blob_key(&decomposed).map(|key| key.len()).ok(),
            Some(254)
        );
    }

    #[test]
    fn ordinary_paths_are_accepted() {
        for key in [
            "a",
            "notes/today.txt",
            ".hidden",
            "...",
            "a..b/c.d",
            "dir/sub dir/ümlaut – ok.md",
            "%2e%2e/literal-percent",
            "x:y@z!$&'()*+,;=",
            &format!("{}/{}/x", "y".repeat(255), "z".repeat(254)),
            &format!("{}/{}", "s".repeat(255), "t".repeat(255)),
        ] {
            assert!(validate_blob_key(key).is_ok(), "{key:?}");
        }
    }

    #[test]
    fn principal_prefixes_are_fixed_length_hex_and_distinct() {
        let subjects = [
            "alice",
            "a/..",
            "../a",
            "a",
            "A",
            "a/b",
            "a%2Fb",
            "anonymous",
        ];
        let prefixes: Vec<String> = subjects
            .iter()
            .map(|s| principal_prefix(&Principal::new(s).expect("valid subject")))
            .collect();
        for prefix in &prefixes {
            assert_eq!(prefix.len(), 64);
            assert!(
                prefix
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            );
        }
        let distinct: std::collections::HashSet<&String> = prefixes.iter().collect();
        assert_eq!(distinct.len(), subjects.len());
        // Stable across releases: stored files must stay reachable.
        assert_eq!(
            principal_prefix(&Principal::new("alice").expect("valid subject")),
            "2bd806c97f0e00af1a1fc3328fa763a9269723c8db8fac4f93af71db186d6e90"
        );
        let longest = Principal::new(&"é".repeat(128)).expect("valid subject");
        assert_eq!(principal_prefix(&longest).len(), 64);
    }

    #[test]
    fn content_types_are_checked() {
        for ok in [
            "text/plain",
            "application/json",
            "text/plain; charset=utf-8",
            "text/plain;charset=\"utf-8\"",
            "application/vnd.api+json",
            "image/png",
        ] {
            assert!(validate_content_type(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "text",
            "text/",
            "/plain",
            "text/plain; charset",
            "text/pl ain",
            "text/plain\r\nx-evil: 1",
            "tëxt/plain",
            &format!("text/{}", "x".repeat(124)),
        ] {
            assert!(
                matches!(
                    validate_content_type(bad),
                    Err(BlobError::InvalidContentType)
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn textual_types_are_recognised() {
        for text in [
            "text/plain",
            "text/markdown; charset=utf-8",
            "application/json",
            "application/ld+json",
            "application/xml",
            "TEXT/CSV",
        ] {
            assert!(is_textual(text), "{text}");
        }
        for binary in ["image/png", OCTET_STREAM, "application/pdf", "nonsense"] {
            assert!(!is_textual(binary), "{binary}");
        }
    }
}
