//! The four rotation steps against Secrets Manager on the emulator at `MCP_TEST_AWS_ENDPOINT`
//! (moto, started by `scripts/test.sh`; without it each test is skipped): each step, each step
//! run again, the single-key shape, the cap on the list, and tokens signed before a rotation
//! verifying after it.

use std::{collections::HashMap, time::Duration};

use authorizer::{
    AuthError, Hs256Key, Verifier, VerifierConfig, hs256_keys_from_secret_json,
    mint::{MintRequest, mint},
};
use aws_sdk_secretsmanager::{Client, error::DisplayErrorContext, types::RotationRulesType};
use rotation::{CURRENT, MAX_KEYS, PENDING, RotationError, RotationEvent, Rotator, Step};
use serde_json::json;

const ISSUER: &str = "mcp-dev";
const AUDIENCE: &str = "https://mcp.example.com/mcp";
const STEPS: [Step; 4] = [
    Step::CreateSecret,
    Step::SetSecret,
    Step::TestSecret,
    Step::FinishSecret,
];

/// A Secrets Manager client for moto, or `None` when the test is skipped without it.
fn client() -> Option<Client> {
    test_support::require_moto().map(|_| test_support::secrets_client())
}

fn secret_of(kid: &str, fill: char) -> String {
    std::iter::repeat_n(fill, 40).collect::<String>() + kid
}

fn list(kids: &[&str]) -> String {
    let keys: Vec<_> = kids
        .iter()
        .map(|kid| json!({"kid": kid, "secret": secret_of(kid, 'k')}))
        .collect();
    json!({ "keys": keys }).to_string()
}

/// What Secrets Manager does before it invokes the function: enables rotation and stages an
/// empty `AWSPENDING` version under a new token. moto stages the version and only then looks for
/// the rotation function, which here does not exist, so it stops before invoking anything.
async fn start_rotation(client: &Client, secret_id: &str) -> String {
    let token = uuid::Uuid::new_v4().to_string();
    let refused = client
        .rotate_secret()
        .secret_id(secret_id)
        .client_request_token(&token)
        .rotation_lambda_arn("arn:aws:lambda:us-east-1:123456789012:function:not-here")
        .rotation_rules(
            RotationRulesType::builder()
                .automatically_after_days(30)
                .build(),
        )
        .send()
        .await
        .expect_err("no function to invoke on the emulator");
    assert!(
        DisplayErrorContext(&refused)
            .to_string()
            .contains("Resource not found for ARN"),
        "{}",
        DisplayErrorContext(&refused)
    );
    assert_eq!(stages(client, secret_id).await[&token], [PENDING]);
    token
}

async fn stages(client: &Client, secret_id: &str) -> HashMap<String, Vec<String>> {
    client
        .describe_secret()
        .secret_id(secret_id)
        .send()
        .await
        .expect("describe_secret")
        .version_ids_to_stages()
        .cloned()
        .unwrap_or_default()
}

async fn value(client: &Client, secret_id: &str, stage: &str) -> String {
    client
        .get_secret_value()
        .secret_id(secret_id)
        .version_stage(stage)
        .send()
        .await
        .unwrap_or_else(|error| panic!("get_secret_value {stage}: {}", DisplayErrorContext(&error)))
        .secret_string()
        .expect("a string")
        .to_owned()
}

fn kids(text: &str) -> Vec<String> {
    hs256_keys_from_secret_json(text)
        .expect("a key list the functions accept")
        .into_iter()
        .map(|key| key.kid)
        .collect()
}

fn event(secret_id: &str, token: &str, step: Step) -> RotationEvent {
    RotationEvent {
        secret_id: secret_id.to_owned(),
        client_request_token: token.to_owned(),
        step,
    }
}

async fn run(rotator: &Rotator, secret_id: &str, token: &str, step: Step) {
    rotator
        .run(&event(secret_id, token, step))
        .await
        .unwrap_or_else(|error| panic!("{step:?}: {error}"));
}

async fn rotate(client: &Client, rotator: &Rotator, secret_id: &str) {
    let token = start_rotation(client, secret_id).await;
    for step in STEPS {
        run(rotator, secret_id, &token, step).await;
    }
}

fn token_of(key: &Hs256Key) -> String {
    let request = MintRequest {
        sub: "alice".into(),
        scope: "mcp:read".into(),
        ttl: Duration::from_secs(3600),
        kid: Some(key.kid.clone()),
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
    };
    mint(&request, &key.secret).expect("minted")
}

/// The verifier the functions build from the secret's current value.
fn verifier_of(text: &str) -> Verifier {
    Verifier::new(VerifierConfig {
        hs256_keys: hs256_keys_from_secret_json(text).expect("keys"),
        ..VerifierConfig::new(ISSUER, AUDIENCE)
    })
    .expect("a verifier")
}

#[tokio::test]
async fn each_step_in_order_rotates_a_new_key_in_first_and_keeps_the_current_ones() {
    let Some(client) = client() else {
        return;
    };
    let rotator = Rotator::new(client.clone());
    let before = list(&["2026-11", "2026-08"]);
    let secret_id = test_support::create_secret(&client, &before).await;
    let token = start_rotation(&client, &secret_id).await;

    run(&rotator, &secret_id, &token, Step::CreateSecret).await;
    let pending = value(&client, &secret_id, PENDING).await;
    let pending_kids = kids(&pending);
    assert_eq!(pending_kids[1..], ["2026-11", "2026-08"]);
    assert_eq!(pending_kids[0].len(), 14, "{pending_kids:?}");
    let new_key = &hs256_keys_from_secret_json(&pending).expect("keys")[0];
    assert_eq!(new_key.secret.len(), 64);
    assert!(new_key.secret.iter().all(u8::is_ascii_hexdigit));
    // Nothing in use changed yet.
    assert_eq!(value(&client, &secret_id, CURRENT).await, before);

    for step in [Step::SetSecret, Step::TestSecret] {
        run(&rotator, &secret_id, &token, step).await;
        assert_eq!(
            value(&client, &secret_id, CURRENT).await,
            before,
            "{step:?}"
        );
    }

    run(&rotator, &secret_id, &token, Step::FinishSecret).await;
    assert_eq!(value(&client, &secret_id, CURRENT).await, pending);
    let staged = stages(&client, &secret_id).await;
    assert_eq!(staged[&token], [CURRENT], "{staged:?}");
    assert_eq!(value(&client, &secret_id, "AWSPREVIOUS").await, before);
}

#[tokio::test]
async fn a_rerun_of_each_step_changes_nothing() {
    let Some(client) = client() else {
        return;
    };
    let rotator = Rotator::new(client.clone());
    let secret_id = test_support::create_secret(&client, &list(&["a-key"])).await;
    let token = start_rotation(&client, &secret_id).await;

    run(&rotator, &secret_id, &token, Step::CreateSecret).await;
    let pending = value(&client, &secret_id, PENDING).await;
    for step in STEPS {
        run(&rotator, &secret_id, &token, step).await;
        run(&rotator, &secret_id, &token, step).await;
        let after_step = stages(&client, &secret_id).await;
        // The key written first stays: a second one could differ from a key already tested.
        if step != Step::FinishSecret {
            assert_eq!(
                value(&client, &secret_id, PENDING).await,
                pending,
                "{step:?}"
            );
        }
        assert_eq!(after_step.len(), 2, "{step:?}: {after_step:?}");
    }
    assert_eq!(value(&client, &secret_id, CURRENT).await, pending);
    let finished = stages(&client, &secret_id).await;

    // Every step retried after the rotation finished finds it done.
    for step in STEPS {
        run(&rotator, &secret_id, &token, step).await;
    }
    assert_eq!(stages(&client, &secret_id).await, finished);
    assert_eq!(value(&client, &secret_id, CURRENT).await, pending);
}

#[tokio::test]
async fn a_secret_in_the_single_key_shape_becomes_a_list_with_the_key_second() {
    let Some(client) = client() else {
        return;
    };
    let rotator = Rotator::new(client.clone());
    // What CloudFormation generates before the first rotation.
    let single = json!({"kid": "initial", "secret": secret_of("initial", 'x')}).to_string();
    let secret_id = test_support::create_secret(&client, &single).await;

    rotate(&client, &rotator, &secret_id).await;
    let current = value(&client, &secret_id, CURRENT).await;
    let document: serde_json::Value = serde_json::from_str(&current).expect("JSON");
    assert_eq!(
        document["keys"].as_array().map(Vec::len),
        Some(2),
        "{current}"
    );
    assert_eq!(
        document["keys"][1],
        json!({"kid": "initial", "secret": secret_of("initial", 'x')})
    );
}

#[tokio::test]
async fn the_list_keeps_at_most_three_keys_dropping_the_oldest() {
    let Some(client) = client() else {
        return;
    };
    let rotator = Rotator::new(client.clone());
    let secret_id = test_support::create_secret(&client, &list(&["c", "b", "a"])).await;

    rotate(&client, &rotator, &secret_id).await;
    let after = kids(&value(&client, &secret_id, CURRENT).await);
    assert_eq!(after.len(), MAX_KEYS);
    assert_eq!(after[1..], ["c", "b"]);
}

#[tokio::test]
async fn a_token_minted_before_the_rotation_still_verifies_after_it() {
    let Some(client) = client() else {
        return;
    };
    let rotator = Rotator::new(client.clone());
    let before = list(&["2026-11"]);
    let secret_id = test_support::create_secret(&client, &before).await;
    let old_key = hs256_keys_from_secret_json(&before)
        .expect("keys")
        .remove(0);
    let old_token = token_of(&old_key);

    rotate(&client, &rotator, &secret_id).await;
    let after = value(&client, &secret_id, CURRENT).await;
    let verifier = verifier_of(&after);
    let claims = verifier
        .verify(&old_token)
        .await
        .expect("the old token verifies");
    assert_eq!(claims.sub, "alice");
    let new_key = hs256_keys_from_secret_json(&after).expect("keys").remove(0);
    verifier
        .verify(&token_of(&new_key))
        .await
        .expect("a token of the new key verifies");

    // Two rotations later the key has left the list, and its tokens with it.
    rotate(&client, &rotator, &secret_id).await;
    rotate(&client, &rotator, &secret_id).await;
    let later = value(&client, &secret_id, CURRENT).await;
    assert!(
        !kids(&later).contains(&"2026-11".to_owned()),
        "{:?}",
        kids(&later)
    );
    assert_eq!(
        verifier_of(&later).verify(&old_token).await,
        Err(AuthError::UnknownKey {
            kid: "2026-11".into()
        })
    );
}

#[tokio::test]
async fn test_secret_refuses_pending_keys_that_would_drop_todays_key_or_do_not_parse() {
    let Some(client) = client() else {
        return;
    };
    let rotator = Rotator::new(client.clone());
    let secret_id = test_support::create_secret(&client, &list(&["today"])).await;
    let token = start_rotation(&client, &secret_id).await;
    client
        .put_secret_value()
        .secret_id(&secret_id)
        .client_request_token(&token)
        .secret_string(list(&["tomorrow"]))
        .version_stages(PENDING)
        .send()
        .await
        .expect("put_secret_value");
    let error = rotator
        .run(&event(&secret_id, &token, Step::TestSecret))
        .await
        .expect_err("refused");
    assert_eq!(
        error.to_string(),
        format!(
            "secret {secret_id}: the pending keys fail their test: key today that signs today's \
             tokens is missing, so they would stop verifying"
        )
    );
    // finishSecret is what Secrets Manager runs next only after a passing test: the current
    // version is untouched until then.
    assert_eq!(value(&client, &secret_id, CURRENT).await, list(&["today"]));

    let other = test_support::create_secret(&client, &list(&["today"])).await;
    let token = start_rotation(&client, &other).await;
    client
        .put_secret_value()
        .secret_id(&other)
        .client_request_token(&token)
        .secret_string(r#"{"keys":[{"kid":"short","secret":"too short"}]}"#)
        .version_stages(PENDING)
        .send()
        .await
        .expect("put_secret_value");
    let error = rotator
        .run(&event(&other, &token, Step::SetSecret))
        .await
        .expect_err("refused");
    assert_eq!(
        error.to_string(),
        format!(
            "secret {other}: version {token} is not a key list the functions accept: key `short` \
             is 9 bytes; at least 32 are required"
        )
    );
}

#[tokio::test]
async fn a_malformed_current_secret_is_left_alone() {
    let Some(client) = client() else {
        return;
    };
    let rotator = Rotator::new(client.clone());
    let secret_id = test_support::create_secret(&client, "not json").await;
    let token = start_rotation(&client, &secret_id).await;
    let error = rotator
        .run(&event(&secret_id, &token, Step::CreateSecret))
        .await
        .expect_err("refused");
    assert!(
        error.to_string().starts_with(&format!(
            "secret {secret_id}: version AWSCURRENT is not a key list the functions accept: secret \
             is not the expected JSON"
        )),
        "{error}"
    );
    assert!(matches!(error, RotationError::Keys { .. }));
    assert_eq!(stages(&client, &secret_id).await[&token], [PENDING]);
    let pending = client
        .get_secret_value()
        .secret_id(&secret_id)
        .version_stage(PENDING)
        .send()
        .await;
    assert!(pending.is_err(), "no pending value may be written");
}

#[tokio::test]
async fn a_version_not_being_rotated_in_or_a_secret_without_rotation_is_refused() {
    let Some(client) = client() else {
        return;
    };
    let rotator = Rotator::new(client.clone());
    let secret_id = test_support::create_secret(&client, &list(&["a"])).await;

    // Rotation is not on yet: nothing is touched.
    let error = rotator
        .run(&event(
            &secret_id,
            "00000000-0000-4000-8000-000000000000",
            Step::CreateSecret,
        ))
        .await
        .expect_err("refused");
    assert_eq!(
        error.to_string(),
        format!("secret {secret_id}: automatic rotation is not enabled")
    );

    let token = start_rotation(&client, &secret_id).await;
    let unknown = "00000000-0000-4000-8000-000000000000";
    let error = rotator
        .run(&event(&secret_id, unknown, Step::CreateSecret))
        .await
        .expect_err("refused");
    assert_eq!(
        error.to_string(),
        format!("secret {secret_id}: version {unknown} is not one of its versions")
    );

    for step in STEPS {
        run(&rotator, &secret_id, &token, step).await;
    }
    // The version that was current before is AWSPREVIOUS now: not something to rotate in.
    let previous = stages(&client, &secret_id)
        .await
        .into_iter()
        .find(|(_, stages)| stages.contains(&"AWSPREVIOUS".to_owned()))
        .map(|(version, _)| version)
        .expect("a previous version");
    let error = rotator
        .run(&event(&secret_id, &previous, Step::FinishSecret))
        .await
        .expect_err("refused");
    assert_eq!(
        error.to_string(),
        format!(
            "secret {secret_id}: version {previous} is not staged AWSPENDING, so it is not being \
             rotated in"
        )
    );
}

#[tokio::test]
async fn malformed_events_are_refused_naming_what_is_wrong() {
    let Some(client) = client() else {
        return;
    };
    let rotator = Rotator::new(client);
    let token = "00000000-0000-4000-8000-000000000000";
    let cases = [
        (
            json!("createSecret"),
            "invalid type: string \"createSecret\", expected struct RotationEvent",
        ),
        (
            json!({"SecretId": "s", "Step": "createSecret"}),
            "missing field `ClientRequestToken`",
        ),
        (
            json!({"SecretId": "s", "ClientRequestToken": token, "Step": "rotate"}),
            "unknown variant `rotate`, expected one of `createSecret`, `setSecret`, `testSecret`, \
             `finishSecret`",
        ),
        (
            json!({"SecretId": 7, "ClientRequestToken": token, "Step": "setSecret"}),
            "invalid type: integer `7`, expected a string",
        ),
    ];
    for (event, message) in cases {
        let error = rotator
            .handle_event(event.clone())
            .await
            .expect_err("refused");
        assert_eq!(
            error.to_string(),
            format!("not a Secrets Manager rotation event: {message}"),
            "{event}"
        );
    }
}

#[tokio::test]
async fn the_event_secrets_manager_sends_runs_its_step() {
    let Some(client) = client() else {
        return;
    };
    let rotator = Rotator::new(client.clone());
    let secret_id = test_support::create_secret(&client, &list(&["a"])).await;
    let token = start_rotation(&client, &secret_id).await;
    for step in ["createSecret", "setSecret", "testSecret", "finishSecret"] {
        rotator
            .handle_event(json!({
                "SecretId": secret_id,
                "ClientRequestToken": token,
                "Step": step,
                "RotationToken": "ignored",
            }))
            .await
            .unwrap_or_else(|error| panic!("{step}: {error}"));
    }
    assert_eq!(kids(&value(&client, &secret_id, CURRENT).await)[1..], ["a"]);
}
