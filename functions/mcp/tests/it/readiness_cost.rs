//! What the public readiness probe costs in AWS calls, counted by one SDK interceptor on the
//! DynamoDB, S3 and Secrets Manager clients under the whole HTTP service (moto at
//! `MCP_TEST_AWS_ENDPOINT`): a round of checks is three calls, probes within
//! `MCP_READY_CACHE_SECS` share one round, and a probe never replaces the signing keys when
//! the secret did not change (so the verified-token memory survives it).
//!
//! The counts are printed so they can be quoted (`-- --nocapture`).

use crate::common;

use std::{collections::HashMap, sync::Arc, time::Duration};

use aws_sdk_dynamodb::config::SharedInterceptor;
use axum::{
    Router,
    body::Body,
    http::{Request, StatusCode},
};
use common::{CallLog, TEST_KEY};
use mcp_function::{
    app,
    backends::Backends,
    blob::s3::S3Blobs,
    config::{Config, Flags},
    keys::{Keyring, SecretsManagerKeys},
    store::{Store, cursor::CursorCodec},
};
use serde_json::json;
use tower::ServiceExt;

/// Probes sent at once in each test.
const PROBES: usize = 50;

struct Counted {
    router: Router,
    calls: CallLog,
    keys: Keyring,
    secrets: aws_sdk_secretsmanager::Client,
    secret_id: String,
}

fn key_list(keys: &[(&str, &[u8])]) -> String {
    let keys: Vec<_> = keys
        .iter()
        .map(|(kid, secret)| {
            json!({"kid": kid, "secret": std::str::from_utf8(secret).expect("utf8")})
        })
        .collect();
    json!({ "keys": keys }).to_string()
}

/// The service over a fresh table, bucket and secret on the emulator, every AWS call of its
/// three clients logged in one list; `env` configures it.
async fn counted_service(env: &[(&str, &str)]) -> Counted {
    use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};

    let calls = CallLog::default();
    let interceptor = || SharedInterceptor::new(calls.clone());
    let endpoint = test_support::moto_endpoint();
    let dynamo = common::dynamo_client_with([interceptor()]);
    let store: Arc<dyn Store> = Arc::new(common::dynamo_store_with(dynamo).await);

    let mut s3 = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(&endpoint)
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .force_path_style(true);
    s3.set_interceptors([interceptor()]);
    let s3 = aws_sdk_s3::Client::from_conf(s3.build());
    let bucket = common::s3_test_bucket(&s3).await;

    let mut secrets = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(&endpoint)
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"));
    secrets.set_interceptors([interceptor()]);
    let secrets = aws_sdk_secretsmanager::Client::from_conf(secrets.build());
    let secret_id = format!("mcp/ready-cost/{}", uuid::Uuid::new_v4().simple());
    secrets
        .create_secret()
        .name(&secret_id)
        .secret_string(key_list(&[("k1", TEST_KEY)]))
        .send()
        .await
        .expect("secret");
    let keys = Keyring::load(
        Arc::new(SecretsManagerKeys {
            client: secrets.clone(),
            secret_id: secret_id.clone(),
        }),
        Duration::from_secs(3600),
    )
    .await
    .expect("keys");

    let backends = Backends {
        keys: keys.clone(),
        store,
        store_backend: "dynamodb",
        blobs: Arc::new(S3Blobs::new(
            s3,
            bucket,
            String::new(),
            CursorCodec::new(TEST_KEY),
        )),
        task_invoker: None,
        user_pool: None,
    };
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let config = Config::from_sources(Flags::default(), &env).expect("config");
    let router = app::build(&config, &backends, "server")
        .expect("service builds")
        .router;
    calls.take(); // creating the table, bucket and secret and loading the keys is not a probe
    Counted {
        router,
        calls,
        keys,
        secrets,
        secret_id,
    }
}

/// `count` anonymous `GET /health/ready` at once; every one must answer 200 `ready`.
async fn probes(router: &Router, count: usize) {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..count {
        let router = router.clone();
        tasks.spawn(async move {
            let request = Request::get("/health/ready")
                .body(Body::empty())
                .expect("request");
            let response = router.oneshot(request).await.expect("infallible");
            let status = response.status();
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .expect("body");
            (
                status,
                serde_json::from_slice::<serde_json::Value>(&body).expect("JSON"),
            )
        });
    }
    while let Some(answer) = tasks.join_next().await {
        let (status, body) = answer.expect("task");
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["status"], "ready");
        assert_eq!(body["checks"]["keys"]["status"], "up");
    }
}

fn sorted(mut calls: Vec<String>) -> Vec<String> {
    calls.sort();
    calls
}

const ONE_ROUND: [&str; 3] = ["GetItem", "GetSecretValue", "ListObjectsV2"];

#[tokio::test]
async fn fifty_probes_within_the_cache_window_cost_one_round() {
    let Some(_moto) = test_support::require_moto() else {
        return;
    };
    let service = counted_service(&[]).await; // MCP_READY_CACHE_SECS: the 5 s default
    let keys_before = service.keys.keys();
    probes(&service.router, PROBES).await;
    let calls = sorted(service.calls.take());
    eprintln!(
        "{PROBES} probes, readiness cached: {} AWS calls {calls:?}",
        calls.len()
    );
    assert_eq!(calls, ONE_ROUND);
    // The secret did not change: the key set is the very same, so the token verifier's
    // memory of verified tokens (emptied when the set changes) survives the probes.
    assert!(Arc::ptr_eq(&keys_before, &service.keys.keys()));
}

#[tokio::test]
async fn without_the_cache_every_probe_is_a_round_and_still_keeps_the_keys() {
    let Some(_moto) = test_support::require_moto() else {
        return;
    };
    let service = counted_service(&[("MCP_READY_CACHE_SECS", "0")]).await;
    let keys_before = service.keys.keys();
    probes(&service.router, PROBES).await;
    let calls = service.calls.take();
    eprintln!(
        "{PROBES} probes, no readiness cache: {} AWS calls",
        calls.len()
    );
    assert_eq!(calls.len(), 3 * PROBES);
    assert_eq!(
        calls.iter().filter(|op| *op == "GetSecretValue").count(),
        PROBES
    );
    assert!(Arc::ptr_eq(&keys_before, &service.keys.keys()));
}

#[tokio::test]
async fn a_round_is_reused_only_within_the_window_and_still_sees_a_rotation() {
    let Some(_moto) = test_support::require_moto() else {
        return;
    };
    let service = counted_service(&[("MCP_READY_CACHE_SECS", "1")]).await;
    let keys_before = service.keys.keys();
    probes(&service.router, PROBES).await;
    assert_eq!(sorted(service.calls.take()), ONE_ROUND);

    // The window is over: the next probes make one new round, which reads the rotated secret
    // and hands the new key list to the keyring.
    let rotated: &[u8] = b"rotated-signing-key-with-enough-bytes-0";
    service
        .secrets
        .put_secret_value()
        .secret_id(&service.secret_id)
        .secret_string(key_list(&[("k2", rotated), ("k1", TEST_KEY)]))
        .send()
        .await
        .expect("rotate");
    service.calls.take();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    probes(&service.router, PROBES).await;
    assert_eq!(sorted(service.calls.take()), ONE_ROUND);
    let keys_after = service.keys.keys();
    assert!(!Arc::ptr_eq(&keys_before, &keys_after));
    assert_eq!(keys_after.active().kid, "k2");
}
