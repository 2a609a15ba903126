//! Opens what the service runs on, once per process: AWS clients, signing keys, the store,
//! files, and the Lambda client that starts task runs.
//!
//! Both hosts call [`open`] before serving, outside any request, so a Lambda
//! instance pays for SDK clients, the secret read and store connections in its
//! init phase only. A wrong setting fails here, at start, with its cause.

use std::sync::Arc;

use aws_config::{BehaviorVersion, Region, SdkConfig};

use crate::{
    blob::{BlobStore, local::LocalBlobs, s3::S3Blobs},
    config::{Config, FilesTarget, KeysTarget, StoreTarget, TaskRuns},
    keys::{KeyError, KeySet, Keyring, SecretsManagerKeys},
    store::{Store, StoreError, cursor::CursorCodec, dynamo::DynamoStore, sql::SqlStore},
    tasks::LambdaInvoker,
};

/// Everything [`crate::app::build`] serves over.
#[derive(Clone)]
pub struct Backends {
    pub keys: Keyring,
    pub store: Arc<dyn Store>,
    /// Store backend name for health output ("sqlite", "postgres", "dynamodb").
    pub store_backend: &'static str,
    /// The callers' files: a local folder or S3.
    pub blobs: Arc<dyn BlobStore>,
    /// Starts task runs as asynchronous invocations (Lambda); `None` runs them in process.
    pub task_invoker: Option<Arc<LambdaInvoker>>,
    /// The Cognito user pool's API, where MCP clients register themselves
    /// (`MCP_OAUTH_REGISTRATION=on`); `None` otherwise.
    pub user_pool: Option<aws_sdk_cognitoidentityprovider::Client>,
}

/// Why a backend could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot load the signing keys: {0}")]
    Keys(#[from] KeyError),
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
}

/// Opens the keys and the store named by `config`.
pub async fn open(config: &Config) -> Result<Backends, OpenError> {
    let aws = AwsClients::new(config);
    let keys = open_keys(config, &aws).await?;
    let (store, store_backend): (Arc<dyn Store>, &'static str) = match &config.store {
        StoreTarget::Sql { url } => {
            let store =
                SqlStore::connect_with(url, CursorCodec::from_keyring(keys.clone())).await?;
            let backend = store.backend().name();
            (Arc::new(store), backend)
        }
        StoreTarget::DynamoDb { table } => {
            let client = aws_sdk_dynamodb::Client::new(aws.sdk().await);
            let store = DynamoStore::new(
                client,
                table.clone(),
                CursorCodec::from_keyring(keys.clone()),
            );
            (Arc::new(store), "dynamodb")
        }
    };
    let cursors = CursorCodec::from_keyring(keys.clone());
    let blobs: Arc<dyn BlobStore> = match &config.files {
        FilesTarget::Local { root } => Arc::new(LocalBlobs::new(root.clone(), cursors)),
        FilesTarget::S3 { bucket, prefix } => {
            // Emulators (moto, MinIO) serve buckets by path, not by virtual host.
            let s3_config = aws_sdk_s3::config::Builder::from(aws.sdk().await)
                .force_path_style(config.aws_endpoint_url.is_some())
                .build();
            let client = aws_sdk_s3::Client::from_conf(s3_config);
            Arc::new(S3Blobs::new(
                client,
                bucket.clone(),
                prefix.clone(),
                cursors,
            ))
        }
    };
    let task_invoker = match &config.tasks.runs {
        TaskRuns::InProcess => None,
        TaskRuns::Invoke {
            function,
            endpoint_url,
        } => {
            let mut lambda_config = aws_sdk_lambda::config::Builder::from(aws.sdk().await);
            if let Some(endpoint) = endpoint_url {
                lambda_config = lambda_config.endpoint_url(endpoint);
            }
            let client = aws_sdk_lambda::Client::from_conf(lambda_config.build());
            Some(Arc::new(LambdaInvoker::new(client, function.clone())))
        }
    };
    let user_pool = match config.oauth.as_ref().and_then(|front| front.registration) {
        Some(_) => Some(aws_sdk_cognitoidentityprovider::Client::new(
            aws.sdk().await,
        )),
        None => None,
    };
    Ok(Backends {
        keys,
        store,
        store_backend,
        blobs,
        task_invoker,
        user_pool,
    })
}

async fn open_keys(config: &Config, aws: &AwsClients) -> Result<Keyring, KeyError> {
    match &config.keys {
        KeysTarget::Env { key, .. } => Ok(Keyring::fixed(KeySet::single("env", key))),
        KeysTarget::SecretsManager { secret_id, refresh } => {
            let source = SecretsManagerKeys {
                client: aws_sdk_secretsmanager::Client::new(aws.sdk().await),
                secret_id: secret_id.clone(),
            };
            Keyring::load(Arc::new(source), *refresh).await
        }
    }
}

/// The shared AWS SDK configuration, loaded at most once and only if some backend needs it.
struct AwsClients {
    region: Option<String>,
    endpoint: Option<String>,
    sdk: tokio::sync::OnceCell<SdkConfig>,
}

impl AwsClients {
    fn new(config: &Config) -> Self {
        Self {
            region: config.aws_region.clone(),
            endpoint: config.aws_endpoint_url.clone(),
            sdk: tokio::sync::OnceCell::new(),
        }
    }

    async fn sdk(&self) -> &SdkConfig {
        self.sdk
            .get_or_init(|| async {
                let mut loader = aws_config::defaults(BehaviorVersion::latest());
                if let Some(region) = &self.region {
                    loader = loader.region(Region::new(region.clone()));
                }
                if let Some(endpoint) = &self.endpoint {
                    loader = loader.endpoint_url(endpoint);
                }
                loader.load().await
            })
            .await
    }
}
