//! Signing keys from Secrets Manager (moto at `MCP_TEST_AWS_ENDPOINT`): load, rotate, refuse bad secrets.

use std::{sync::Arc, time::Duration};

use mcp_function::{
    keys::{KeySource, Keyring, SecretsManagerKeys},
    principal::Principal,
    store::cursor::CursorCodec,
};

const KEY_A: &str = "first-signing-key-with-enough-bytes-000";
const KEY_B: &str = "second-signing-key-with-enough-bytes-00";

fn key_list(keys: &[(&str, &str)]) -> String {
    let keys: Vec<_> = keys
        .iter()
        .map(|(kid, secret)| serde_json::json!({"kid": kid, "secret": secret}))
        .collect();
    serde_json::json!({ "keys": keys }).to_string()
}

fn source(client: &aws_sdk_secretsmanager::Client, secret_id: &str) -> Arc<SecretsManagerKeys> {
    Arc::new(SecretsManagerKeys {
        client: client.clone(),
        secret_id: secret_id.to_owned(),
    })
}

#[tokio::test]
async fn keys_rotate_without_breaking_cursors() {
    let Some(_moto) = test_support::require_moto() else {
        return;
    };
    let client = test_support::secrets_client();
    let id = test_support::create_secret(&client, &key_list(&[("a", KEY_A)])).await;
    let ring = Keyring::load(source(&client, &id), Duration::from_secs(3600))
        .await
        .expect("keys load");
    assert_eq!(ring.keys().active().kid, "a");
    let alice = Principal::new("alice").expect("principal");
    let codec = CursorCodec::from_keyring(ring.clone());
    let old_cursor = codec.seal(&alice, "", "notes/1");

    // Rotate: the new key goes first, the old one stays to open what it sealed.
    client
        .put_secret_value()
        .secret_id(&id)
        .secret_string(key_list(&[("b", KEY_B), ("a", KEY_A)]))
        .send()
        .await
        .expect("rotate");
    ring.refresh().await.expect("refresh");
    assert_eq!(ring.keys().active().kid, "b");
    assert_eq!(
        codec.open(&alice, "", &old_cursor).ok(),
        Some("notes/1".into())
    );
    let new_cursor = codec.seal(&alice, "", "notes/2");
    assert!(
        CursorCodec::new(KEY_B.as_bytes())
            .open(&alice, "", &new_cursor)
            .is_ok()
    );

    // Retire the old key: its cursors stop opening, nothing else changes.
    client
        .put_secret_value()
        .secret_id(&id)
        .secret_string(key_list(&[("b", KEY_B)]))
        .send()
        .await
        .expect("retire");
    ring.refresh().await.expect("refresh");
    assert!(codec.open(&alice, "", &old_cursor).is_err());
    assert!(codec.open(&alice, "", &new_cursor).is_ok());
}

#[tokio::test]
async fn a_bad_secret_keeps_the_last_good_keys() {
    let Some(_moto) = test_support::require_moto() else {
        return;
    };
    let client = test_support::secrets_client();
    let id = test_support::create_secret(&client, &key_list(&[("a", KEY_A)])).await;
    let ring = Keyring::load(source(&client, &id), Duration::from_secs(3600))
        .await
        .expect("keys load");
    client
        .put_secret_value()
        .secret_id(&id)
        .secret_string(r#"{"keys":[{"kid":"short","secret":"too-short"}]}"#)
        .send()
        .await
        .expect("update");
    let error = ring.refresh().await.expect_err("refused");
    assert_eq!(
        error.to_string(),
        "key `short` is 9 bytes; at least 32 are required"
    );
    assert_eq!(ring.keys().active().kid, "a", "the cached keys stay in use");
}

#[tokio::test]
async fn missing_or_malformed_secrets_fail_with_their_cause() {
    let Some(_moto) = test_support::require_moto() else {
        return;
    };
    let client = test_support::secrets_client();
    let missing = source(&client, "mcp/test/does-not-exist")
        .load()
        .await
        .expect_err("missing");
    let message = missing.to_string();
    assert!(
        message
            .starts_with("reading secret `mcp/test/does-not-exist` from Secrets Manager failed: "),
        "{message}"
    );
    assert!(message.contains("ResourceNotFound"), "{message}");

    let not_json = test_support::create_secret(&client, "plain text, not a key list").await;
    let error = source(&client, &not_json)
        .load()
        .await
        .expect_err("not JSON");
    assert!(
        error
            .to_string()
            .starts_with("secret is not the expected JSON"),
        "{error}"
    );
    assert!(
        !error.to_string().contains("plain text"),
        "secret text never echoed"
    );
}
