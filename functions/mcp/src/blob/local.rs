//! [`LocalBlobs`]: files in a local folder, for laptops, containers and tests.
//!
//! Layout under the root folder:
//!
//! ```text
//! <root>/<principal prefix>/<path>          the bytes, as a plain file
//! <root>/.meta/<principal prefix>/<path>    sidecar: {"contentType": "…"}
//! <root>/.tmp/<uuid>                        writes in progress
//! ```
//!
//! The principal prefix is 64 hex digits ([`super::principal_prefix`]), so the
//! dot folders never collide with a principal's folder, and listing walks only
//! the principal's folder. A write goes to `.tmp` first and is renamed into
//! place (sidecar first, then the bytes), so a reader never sees half a file.
//!
//! One process owns the folder: a read/write lock makes each write (sidecar
//! plus bytes) appear at once to this process's readers. Listing walks the
//! principal's whole folder per page, which is fine for the small collections
//! this backend is for. A folder cannot also be a file here (`a` and `a/b`
//! cannot both exist), unlike S3; such a write is refused as an invalid path.

use std::{
    fs, io,
    path::{Path, PathBuf},
    time::SystemTime,
};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::RwLock;

use super::{
    Blob, BlobError, BlobMeta, BlobPage, BlobStore, OCTET_STREAM, checked_blob_key, open_cursor,
    page_size, principal_prefix, seal_cursor, validate_blob_key, validate_put,
};
use crate::{principal::Principal, store::cursor::CursorCodec};

/// Folder of the content-type sidecars, beside the principals' folders.
const META_DIR: &str = ".meta";
/// Folder of writes in progress.
const TMP_DIR: &str = ".tmp";

/// What the sidecar of a file records.
#[derive(Serialize, Deserialize)]
struct Sidecar {
    #[serde(rename = "contentType")]
    content_type: String,
}

/// Files in a local folder.
pub struct LocalBlobs {
    root: PathBuf,
    cursors: CursorCodec,
    /// Writers exclusive, readers shared: a write's sidecar and bytes appear together.
    lock: RwLock<()>,
}

impl LocalBlobs {
    /// Files under `root`; folders are created as needed on the first write.
    pub fn new(root: PathBuf, cursors: CursorCodec) -> Self {
        Self {
            root,
            cursors,
            lock: RwLock::new(()),
        }
    }

    /// The root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn data_dir(&self, principal: &Principal) -> PathBuf {
        self.root.join(principal_prefix(principal))
    }

    fn meta_dir(&self, principal: &Principal) -> PathBuf {
        self.root.join(META_DIR).join(principal_prefix(principal))
    }
}

/// Runs blocking filesystem work off the async threads.
async fn blocking<T: Send + 'static>(
    operation: &'static str,
    work: impl FnOnce() -> Result<T, BlobError> + Send + 'static,
) -> Result<T, BlobError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| BlobError::backend(operation, error.to_string(), false))?
}

fn io_error(operation: &'static str, path: &Path, error: &io::Error) -> BlobError {
    BlobError::backend(operation, format!("{}: {error}", path.display()), false)
}

/// Whether an error means "nothing is there" (including a file where a folder was expected).
fn is_absent(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

fn to_utc(time: io::Result<SystemTime>) -> DateTime<Utc> {
    time.map(DateTime::<Utc>::from)
        .unwrap_or_else(|_| Utc::now())
}

/// Writes `bytes` to `target` through a temporary file in `tmp` and a rename.
fn write_atomically(tmp: &Path, target: &Path, bytes: &[u8]) -> Result<(), BlobError> {
    use std::io::Write;
    let temp = tmp.join(uuid::Uuid::new_v4().simple().to_string());
    let result = (|| {
        let mut file = fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, target)
    })();
    result.map_err(|error| {
        let _ = fs::remove_file(&temp);
        io_error("put", target, &error)
    })
}

/// Refuses a key whose folders are files, or which is itself a folder of other files.
fn check_shape(data_dir: &Path, key: &str) -> Result<(), BlobError> {
    let mut prefix = String::new();
    let segments: Vec<&str> = key.split('/').collect();
    for (index, segment) in segments.iter().enumerate() {
        if index > 0 {
            prefix.push('/');
        }
        prefix.push_str(segment);
        let last = index + 1 == segments.len();
        match fs::metadata(data_dir.join(&prefix)) {
            Ok(meta) if !last && !meta.is_dir() => {
                return Err(BlobError::InvalidKey(format!(
                    "`{prefix}` is a file, so it cannot also be a folder; choose another path"
                )));
            }
            Ok(meta) if last && meta.is_dir() => {
                return Err(BlobError::InvalidKey(format!(
                    "`{prefix}` is a folder of other files; choose another path"
                )));
            }
            Ok(_) => {}
            Err(error) if is_absent(&error) => return Ok(()),
            Err(error) => return Err(io_error("put", &data_dir.join(&prefix), &error)),
        }
    }
    Ok(())
}

fn content_type_of(meta_path: &Path) -> String {
    fs::read(meta_path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Sidecar>(&bytes).ok())
        .map(|sidecar| sidecar.content_type)
        .unwrap_or_else(|| OCTET_STREAM.to_owned())
}

/// The metadata of the file at `key`, if it is one.
fn stat(data_dir: &Path, meta_dir: &Path, key: &str) -> Result<Option<BlobMeta>, BlobError> {
    let path = data_dir.join(key);
    match fs::metadata(&path) {
        Ok(meta) if meta.is_file() => Ok(Some(BlobMeta {
            key: key.to_owned(),
            content_type: content_type_of(&meta_dir.join(key)),
            size: meta.len(),
            updated_at: to_utc(meta.modified()),
        })),
        Ok(_) => Ok(None),
        Err(error) if is_absent(&error) => Ok(None),
        Err(error) => Err(io_error("get", &path, &error)),
    }
}

/// Every file path under `dir`, relative to `base`, in no particular order.
fn walk(base: &Path, dir: &Path, keys: &mut Vec<String>) -> Result<(), BlobError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        // No folder yet: no files. (A root that is a file is an error, not "empty".)
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(io_error("list", dir, &error)),
    };
    for entry in entries {
        let entry = entry.map_err(|error| io_error("list", dir, &error))?;
        let path = entry.path();
        let kind = entry
            .file_type()
            .map_err(|error| io_error("list", &path, &error))?;
        if kind.is_dir() {
            walk(base, &path, keys)?;
        } else if kind.is_file() {
            // Names this store wrote are UTF-8 valid paths; skip anything else.
            let key = path
                .strip_prefix(base)
                .ok()
                .and_then(Path::to_str)
                .map(|key| key.replace(std::path::MAIN_SEPARATOR, "/"));
            if let Some(key) = key.filter(|key| validate_blob_key(key).is_ok()) {
                keys.push(key);
            }
        }
    }
    Ok(())
}

#[async_trait]
impl BlobStore for LocalBlobs {
    async fn put(
        &self,
        principal: &Principal,
        key: &str,
        bytes: Bytes,
        content_type: &str,
    ) -> Result<BlobMeta, BlobError> {
        let key = validate_put(key, &bytes, content_type)?;
        let key = key.as_ref();
        let data_dir = self.data_dir(principal);
        let meta_dir = self.meta_dir(principal);
        let tmp = self.root.join(TMP_DIR);
        let key = key.to_owned();
        let sidecar = serde_json::to_vec(&Sidecar {
            content_type: content_type.to_owned(),
        })
        .map_err(|error| BlobError::backend("put", error.to_string(), false))?;
        let content_type = content_type.to_owned();
        let _guard = self.lock.write().await;
        blocking("put", move || {
            check_shape(&data_dir, &key)?;
            let target = data_dir.join(&key);
            let meta_target = meta_dir.join(&key);
            for dir in [
                tmp.as_path(),
                target.parent().unwrap_or(&data_dir),
                meta_target.parent().unwrap_or(&meta_dir),
            ] {
                fs::create_dir_all(dir).map_err(|error| io_error("put", dir, &error))?;
            }
            write_atomically(&tmp, &meta_target, &sidecar)?;
            write_atomically(&tmp, &target, &bytes)?;
            let written =
                fs::metadata(&target).map_err(|error| io_error("put", &target, &error))?;
            Ok(BlobMeta {
                key,
                content_type,
                size: written.len(),
                updated_at: to_utc(written.modified()),
            })
        })
        .await
    }

    async fn get(&self, principal: &Principal, key: &str) -> Result<Option<Blob>, BlobError> {
        let key = checked_blob_key(key)?;
        let key = key.as_ref();
        let data_dir = self.data_dir(principal);
        let meta_dir = self.meta_dir(principal);
        let key = key.to_owned();
        let _guard = self.lock.read().await;
        blocking("get", move || {
            let Some(meta) = stat(&data_dir, &meta_dir, &key)? else {
                return Ok(None);
            };
            let path = data_dir.join(&key);
            match fs::read(&path) {
                Ok(bytes) => Ok(Some(Blob {
                    meta: BlobMeta {
                        size: bytes.len() as u64,
                        ..meta
                    },
                    bytes: Bytes::from(bytes),
                })),
                Err(error) if is_absent(&error) => Ok(None),
                Err(error) => Err(io_error("get", &path, &error)),
            }
        })
        .await
    }

    async fn list(
        &self,
        principal: &Principal,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<BlobPage, BlobError> {
        let after = open_cursor(&self.cursors, principal, cursor)?;
        let limit = page_size(limit) as usize;
        let data_dir = self.data_dir(principal);
        let meta_dir = self.meta_dir(principal);
        let _guard = self.lock.read().await;
        let (items, more) = blocking("list", move || {
            let mut keys = Vec::new();
            walk(&data_dir, &data_dir, &mut keys)?;
            keys.retain(|key| after.as_ref().is_none_or(|after| key > after));
            keys.sort_unstable();
            let more = keys.len() > limit;
            keys.truncate(limit);
            let mut items = Vec::with_capacity(keys.len());
            for key in &keys {
                if let Some(meta) = stat(&data_dir, &meta_dir, key)? {
                    items.push(meta);
                }
            }
            Ok((items, more))
        })
        .await?;
        let next_cursor = match items.last() {
            Some(last) if more => Some(seal_cursor(&self.cursors, principal, &last.key)),
            _ => None,
        };
        Ok(BlobPage { items, next_cursor })
    }

    async fn ping(&self) -> Result<(), BlobError> {
        let root = self.root.clone();
        blocking("ping", move || {
            fs::create_dir_all(&root).map_err(|error| io_error("ping", &root, &error))?;
            match fs::metadata(&root) {
                Ok(meta) if meta.is_dir() => Ok(()),
                Ok(_) => Err(BlobError::backend(
                    "ping",
                    format!("{} is not a folder", root.display()),
                    false,
                )),
                Err(error) => Err(io_error("ping", &root, &error)),
            }
        })
        .await
    }

    fn backend(&self) -> &'static str {
        "local"
    }
}
