//! [`S3Blobs`]: files as objects in an S3 bucket, for Lambda and other AWS hosts.
//!
//! Object key: `<prefix>files/<principal prefix>/<path>`, where the principal
//! prefix is 64 hex digits ([`super::principal_prefix`]); the object's
//! `Content-Type` is the file's content type, and every object is written with
//! SSE-S3 (`AES256`) server-side encryption.
//!
//! Listing is `ListObjectsV2` under the principal's folder, resuming with
//! `StartAfter` at the key sealed in our own cursor (never S3's continuation
//! token, which would not be bound to the principal), plus one concurrent
//! `HeadObject` per listed file for its content type.

use async_trait::async_trait;
use aws_sdk_s3::{
    Client,
    error::{DisplayErrorContext, ProvideErrorMetadata, SdkError},
    primitives::{ByteStream, DateTime as AwsDateTime},
    types::ServerSideEncryption,
};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt, stream};

use super::{
    Blob, BlobError, BlobMeta, BlobPage, BlobStore, OCTET_STREAM, checked_blob_key, open_cursor,
    page_size, principal_prefix, seal_cursor, validate_blob_key, validate_put,
};
use crate::{principal::Principal, store::cursor::CursorCodec};

/// `HeadObject` calls a listing page runs at once.
const HEAD_CONCURRENCY: usize = 8;

/// Files as objects in one bucket, under one key prefix.
pub struct S3Blobs {
    client: Client,
    bucket: String,
    prefix: String,
    cursors: CursorCodec,
}

impl S3Blobs {
    /// Files in `bucket` under `prefix` (empty, or ending in `/` by convention,
    /// e.g. `mcp/`); the bucket must exist.
    pub fn new(client: Client, bucket: String, prefix: String, cursors: CursorCodec) -> Self {
        Self {
            client,
            bucket,
            prefix,
            cursors,
        }
    }

    /// The folder of a principal's files: `<prefix>files/<principal prefix>/`.
    fn folder(&self, principal: &Principal) -> String {
        format!("{}files/{}/", self.prefix, principal_prefix(principal))
    }

    /// Metadata of one object, from `HeadObject`; `None` if it is gone.
    async fn head(&self, folder: &str, key: String) -> Result<Option<BlobMeta>, BlobError> {
        let output = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(format!("{folder}{key}"))
            .send()
            .await;
        match output {
            Ok(output) => Ok(Some(BlobMeta {
                key,
                content_type: content_type_or_default(output.content_type()),
                size: output.content_length().unwrap_or_default().max(0) as u64,
                updated_at: to_utc(output.last_modified()),
            })),
            Err(error) if error.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(None),
            Err(error) => Err(backend_error("list", error)),
        }
    }
}

fn content_type_or_default(content_type: Option<&str>) -> String {
    content_type
        .filter(|content_type| !content_type.is_empty())
        .unwrap_or(OCTET_STREAM)
        .to_owned()
}

fn to_utc(time: Option<&AwsDateTime>) -> DateTime<Utc> {
    time.and_then(|time| DateTime::from_timestamp(time.secs(), time.subsec_nanos()))
        .unwrap_or_else(Utc::now)
}

/// Error codes S3 uses for "slow down" and transient trouble.
const RETRYABLE_CODES: &[&str] = &[
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "InternalError",
    "ServiceUnavailable",
];

/// Maps an SDK error to [`BlobError::Backend`] with its full context; throttling,
/// 5xx, timeouts and connection trouble are retryable.
fn backend_error<E>(operation: &'static str, error: SdkError<E>) -> BlobError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let retryable = match &error {
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => true,
        SdkError::DispatchFailure(failure) => failure.is_timeout() || failure.is_io(),
        SdkError::ServiceError(service) => {
            let status = service.raw().status();
            status.is_server_error()
                || status.as_u16() == 429
                || service
                    .err()
                    .code()
                    .is_some_and(|code| RETRYABLE_CODES.contains(&code))
        }
        _ => false,
    };
    BlobError::backend(
        operation,
        DisplayErrorContext(&error).to_string(),
        retryable,
    )
}

#[async_trait]
impl BlobStore for S3Blobs {
    async fn put(
        &self,
        principal: &Principal,
        key: &str,
        bytes: Bytes,
        content_type: &str,
    ) -> Result<BlobMeta, BlobError> {
        let key = validate_put(key, &bytes, content_type)?;
        let key = key.as_ref();
        let size = bytes.len() as u64;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(format!("{}{key}", self.folder(principal)))
            .body(ByteStream::from(bytes))
            .content_type(content_type)
            .server_side_encryption(ServerSideEncryption::Aes256)
            .send()
            .await
            .map_err(|error| backend_error("put", error))?;
        Ok(BlobMeta {
            key: key.to_owned(),
            content_type: content_type.to_owned(),
            size,
            updated_at: Utc::now(),
        })
    }

    async fn get(&self, principal: &Principal, key: &str) -> Result<Option<Blob>, BlobError> {
        let key = checked_blob_key(key)?;
        let key = key.as_ref();
        let output = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(format!("{}{key}", self.folder(principal)))
            .send()
            .await;
        let output = match output {
            Ok(output) => output,
            Err(error) if error.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                return Ok(None);
            }
            Err(error) => return Err(backend_error("get", error)),
        };
        let content_type = content_type_or_default(output.content_type());
        let updated_at = to_utc(output.last_modified());
        let bytes = output
            .body
            .collect()
            .await
            .map_err(|error| {
                BlobError::backend("get", DisplayErrorContext(&error).to_string(), true)
            })?
            .into_bytes();
        Ok(Some(Blob {
            meta: BlobMeta {
                key: key.to_owned(),
                content_type,
                size: bytes.len() as u64,
                updated_at,
            },
            bytes,
        }))
    }

    async fn list(
        &self,
        principal: &Principal,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<BlobPage, BlobError> {
        let after = open_cursor(&self.cursors, principal, cursor)?;
        let folder = self.folder(principal);
        let output = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&folder)
            .max_keys(page_size(limit) as i32)
            .set_start_after(after.map(|after| format!("{folder}{after}")))
            .send()
            .await
            .map_err(|error| backend_error("list", error))?;
        let keys: Vec<String> = output
            .contents()
            .iter()
            .filter_map(|object| object.key()?.strip_prefix(&folder))
            .map(str::to_owned)
            .collect();
        let last_key = keys.last().cloned();
        // Objects written around this store (not valid paths) are skipped, not served.
        let items: Vec<BlobMeta> = stream::iter(keys)
            .filter(|key| std::future::ready(validate_blob_key(key).is_ok()))
            .map(|key| self.head(&folder, key))
            .buffered(HEAD_CONCURRENCY)
            .try_filter_map(|meta| std::future::ready(Ok(meta)))
            .try_collect()
            .await?;
        let next_cursor = match last_key {
            Some(last) if output.is_truncated().unwrap_or(false) => {
                Some(seal_cursor(&self.cursors, principal, &last))
            }
            _ => None,
        };
        Ok(BlobPage { items, next_cursor })
    }

    // A one-key listing under the store's own prefix, not HeadBucket: HeadBucket needs
    // s3:ListBucket on the whole bucket, which the deployed policy grants only for this prefix.
    async fn ping(&self) -> Result<(), BlobError> {
        self.client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(format!("{}files/", self.prefix))
            .max_keys(1)
            .send()
            .await
            .map_err(|error| backend_error("ping", error))?;
        Ok(())
    }

    fn backend(&self) -> &'static str {
        "s3"
    }
}
