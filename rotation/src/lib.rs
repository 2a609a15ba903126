//! Automatic rotation of the signing-key secret: the four steps Secrets Manager asks a rotation
//! function for, over the secret's `AWSPENDING` and `AWSCURRENT` stages.
//!
//! - `createSecret` writes the pending version: a new random key first, then the current keys,
//!   at most [`MAX_KEYS`] in all (the oldest go), so tokens and cursors sealed with the current
//!   key keep verifying after the rotation.
//! - `setSecret` has no other system to update (the functions read the secret themselves); it
//!   checks that the pending version is a key list they accept.
//! - `testSecret` proves it: a token signed with the new key and one signed with the current key
//!   both verify against the pending list, with the authorizer's own verifier.
//! - `finishSecret` moves `AWSCURRENT` to the pending version and takes `AWSPENDING` off it.
//!
//! Secrets Manager retries a failed step, so every step may run again: a rerun finds its work
//! done and changes nothing. The key-list format and its checks are the authorizer's
//! ([`authorizer::hs256_keys_from_secret_json`]), so what this writes is what the functions read.

use std::time::{Duration, SystemTime};

use authorizer::{
    ConfigError, Hs256Key, Verifier, VerifierConfig, hs256_keys_from_secret_json,
    mint::{MintRequest, mint},
};
use aws_sdk_secretsmanager::{
    Client,
    error::DisplayErrorContext,
    primitives::{DateTime, DateTimeFormat},
};
use serde::{Deserialize, Serialize};

/// The most keys the secret holds after a rotation, newest first: the new one and the two before
/// it, as the provisioning script's manual rotation keeps. A token lives for two rotations.
pub const MAX_KEYS: usize = 3;
/// The stage of the version being rotated in.
pub const PENDING: &str = "AWSPENDING";
/// The stage of the version in use.
pub const CURRENT: &str = "AWSCURRENT";
/// Random bytes per new key (written as 64 hex digits, twice the HS256 minimum).
const KEY_BYTES: usize = 32;

/// One of Secrets Manager's rotation steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Step {
    CreateSecret,
    SetSecret,
    TestSecret,
    FinishSecret,
}

/// The event Secrets Manager invokes the function with.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RotationEvent {
    pub secret_id: String,
    pub client_request_token: String,
    pub step: Step,
}

/// Why a step failed. Messages name the secret and the version, never key material.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error("not a Secrets Manager rotation event: {0}")]
    BadEvent(String),
    #[error("secret {secret_id}: automatic rotation is not enabled")]
    NotEnabled { secret_id: String },
    #[error("secret {secret_id}: version {token} is not one of its versions")]
    UnknownVersion { secret_id: String, token: String },
    #[error(
        "secret {secret_id}: version {token} is not staged AWSPENDING, so it is not being rotated in"
    )]
    NotPending { secret_id: String, token: String },
    #[error("secret {secret_id}: no version is staged AWSCURRENT")]
    NoCurrent { secret_id: String },
    #[error("secret {secret_id}: {operation} failed: {message}")]
    Aws {
        secret_id: String,
        operation: &'static str,
        message: String,
    },
    #[error("secret {secret_id}: version {version} has no SecretString")]
    NotAString { secret_id: String, version: String },
    #[error(
        "secret {secret_id}: version {version} is not a key list the functions accept: {source}"
    )]
    Keys {
        secret_id: String,
        version: String,
        #[source]
        source: ConfigError,
    },
    #[error("secret {secret_id}: the pending keys fail their test: {reason}")]
    TestFailed { secret_id: String, reason: String },
    #[error("no new key: {0}")]
    NewKey(String),
}

impl RotationError {
    fn aws(secret_id: &str, operation: &'static str, error: impl std::error::Error) -> Self {
        Self::Aws {
            secret_id: secret_id.to_owned(),
            operation,
            message: DisplayErrorContext(&error).to_string(),
        }
    }
}

impl From<RotationError> for lambda_http::lambda_runtime::Diagnostic {
    fn from(error: RotationError) -> Self {
        let error_type = match &error {
            RotationError::BadEvent(_) => "BadEvent",
            RotationError::TestFailed { .. } => "TestFailed",
            _ => "RotationFailed",
        };
        Self {
            error_type: error_type.into(),
            error_message: error.to_string(),
        }
    }
}

#[derive(Serialize)]
struct SecretDocument<'a> {
    keys: Vec<SecretEntry<'a>>,
}

#[derive(Serialize)]
struct SecretEntry<'a> {
    kid: &'a str,
    secret: &'a str,
}

/// Runs rotation steps against one Secrets Manager endpoint.
#[derive(Clone)]
pub struct Rotator {
    client: Client,
}

impl Rotator {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// Parses the invocation's event and runs its step.
    pub async fn handle_event(&self, event: serde_json::Value) -> Result<(), RotationError> {
        let event: RotationEvent = serde_json::from_value(event)
            .map_err(|error| RotationError::BadEvent(error.to_string()))?;
        self.run(&event).await
    }

    /// Runs one step for the version `event.client_request_token`. A version already current is
    /// a rotation that has finished: every step then does nothing.
    pub async fn run(&self, event: &RotationEvent) -> Result<(), RotationError> {
        let secret_id = event.secret_id.as_str();
        let token = event.client_request_token.as_str();
        let described = self
            .client
            .describe_secret()
            .secret_id(secret_id)
            .send()
            .await
            .map_err(|error| RotationError::aws(secret_id, "DescribeSecret", error))?;
        if described.rotation_enabled() != Some(true) {
            return Err(RotationError::NotEnabled {
                secret_id: secret_id.to_owned(),
            });
        }
        let versions = described.version_ids_to_stages();
        let stages = versions
            .and_then(|versions| versions.get(token))
            .ok_or_else(|| RotationError::UnknownVersion {
                secret_id: secret_id.to_owned(),
                token: token.to_owned(),
            })?;
        if stages.iter().any(|stage| stage == CURRENT) {
            tracing::info!(secret_id, token, step = ?event.step, "version already current; nothing to do");
            return Ok(());
        }
        if !stages.iter().any(|stage| stage == PENDING) {
            return Err(RotationError::NotPending {
                secret_id: secret_id.to_owned(),
                token: token.to_owned(),
            });
        }
        match event.step {
            Step::CreateSecret => self.create(secret_id, token).await,
            Step::SetSecret => self.pending_keys(secret_id, token).await.map(drop),
            Step::TestSecret => self.test(secret_id, token).await,
            Step::FinishSecret => {
                let current = versions
                    .into_iter()
                    .flatten()
                    .find(|(_, stages)| stages.iter().any(|stage| stage == CURRENT))
                    .map(|(version, _)| version.clone())
                    .ok_or_else(|| RotationError::NoCurrent {
                        secret_id: secret_id.to_owned(),
                    })?;
                self.finish(secret_id, token, &current).await
            }
        }
    }

    async fn create(&self, secret_id: &str, token: &str) -> Result<(), RotationError> {
        // A retried createSecret finds its value written already; a second key would replace
        // the one a failed later step may already have handed out.
        if self.value(secret_id, Some(token), PENDING).await?.is_some() {
            tracing::info!(secret_id, token, "pending version already written");
            return Ok(());
        }
        let current = self.current_keys(secret_id).await?;
        let kid = new_kid(&current)?;
        let secret = random_secret()?;
        let mut keys = vec![Hs256Key::new(kid, secret.into_bytes()).map_err(|source| {
            RotationError::Keys {
                secret_id: secret_id.to_owned(),
                version: token.to_owned(),
                source,
            }
        })?];
        keys.extend(current.into_iter().take(MAX_KEYS - 1));
        let text = secret_json(secret_id, token, &keys)?;
        self.client
            .put_secret_value()
            .secret_id(secret_id)
            .client_request_token(token)
            .secret_string(text)
            .version_stages(PENDING)
            .send()
            .await
            .map_err(|error| RotationError::aws(secret_id, "PutSecretValue", error))?;
        let kids: Vec<_> = keys.iter().map(|key| key.kid.as_str()).collect();
        tracing::info!(
            secret_id,
            token,
            ?kids,
            "pending version written, new key first"
        );
        Ok(())
    }

    async fn test(&self, secret_id: &str, token: &str) -> Result<(), RotationError> {
        let pending = self.pending_keys(secret_id, token).await?;
        let current = self.current_keys(secret_id).await?;
        let failed = |reason: String| RotationError::TestFailed {
            secret_id: secret_id.to_owned(),
            reason,
        };
        if pending.len() > MAX_KEYS {
            return Err(failed(format!(
                "{} keys, more than {MAX_KEYS}",
                pending.len()
            )));
        }
        let newest = &pending[0];
        if current.iter().any(|key| key.kid == newest.kid) {
            return Err(failed(format!(
                "its first key {} is already in the current version",
                newest.kid
            )));
        }
        let in_use = &current[0];
        if !pending.contains(in_use) {
            return Err(failed(format!(
                "key {} that signs today's tokens is missing, so they would stop verifying",
                in_use.kid
            )));
        }
        let verifier = Verifier::new(VerifierConfig {
            hs256_keys: pending.clone(),
            ..VerifierConfig::new(TEST_ISSUER, TEST_AUDIENCE)
        })
        .map_err(|error| failed(error.to_string()))?;
        for key in [newest, in_use] {
            let token = mint(&test_token_request(&key.kid), &key.secret)
                .map_err(|error| failed(format!("signing with key {}: {error}", key.kid)))?;
            verifier
                .verify(&token)
                .await
                .map_err(|error| failed(format!("a token of key {}: {error}", key.kid)))?;
        }
        Ok(())
    }

    async fn finish(
        &self,
        secret_id: &str,
        token: &str,
        current: &str,
    ) -> Result<(), RotationError> {
        self.client
            .update_secret_version_stage()
            .secret_id(secret_id)
            .version_stage(CURRENT)
            .move_to_version_id(token)
            .remove_from_version_id(current)
            .send()
            .await
            .map_err(|error| RotationError::aws(secret_id, "UpdateSecretVersionStage", error))?;
        tracing::info!(
            secret_id,
            token,
            previous = current,
            "AWSCURRENT moved to the new version"
        );
        // Secrets Manager accepts either end state; with no version left pending, the next
        // rotation can never be taken for this one still under way.
        self.client
            .update_secret_version_stage()
            .secret_id(secret_id)
            .version_stage(PENDING)
            .remove_from_version_id(token)
            .send()
            .await
            .map_err(|error| RotationError::aws(secret_id, "UpdateSecretVersionStage", error))?;
        Ok(())
    }

    async fn current_keys(&self, secret_id: &str) -> Result<Vec<Hs256Key>, RotationError> {
        let text = self.value(secret_id, None, CURRENT).await?.ok_or_else(|| {
            RotationError::NoCurrent {
                secret_id: secret_id.to_owned(),
            }
        })?;
        parse(secret_id, CURRENT, &text)
    }

    async fn pending_keys(
        &self,
        secret_id: &str,
        token: &str,
    ) -> Result<Vec<Hs256Key>, RotationError> {
        let text = self
            .value(secret_id, Some(token), PENDING)
            .await?
            .ok_or_else(|| RotationError::NotAString {
                secret_id: secret_id.to_owned(),
                version: token.to_owned(),
            })?;
        parse(secret_id, token, &text)
    }

    /// The text of the version `version_id` (or the one staged `stage`); `None` when it has no
    /// value yet (Secrets Manager stages the pending version before `createSecret` fills it).
    async fn value(
        &self,
        secret_id: &str,
        version_id: Option<&str>,
        stage: &str,
    ) -> Result<Option<String>, RotationError> {
        let result = self
            .client
            .get_secret_value()
            .secret_id(secret_id)
            .set_version_id(version_id.map(str::to_owned))
            .version_stage(stage)
            .send()
            .await;
        match result {
            Ok(output) => output
                .secret_string()
                .map(|text| Some(text.to_owned()))
                .ok_or_else(|| RotationError::NotAString {
                    secret_id: secret_id.to_owned(),
                    version: version_id.unwrap_or(stage).to_owned(),
                }),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|error| error.is_resource_not_found_exception()) =>
            {
                Ok(None)
            }
            Err(error) => Err(RotationError::aws(secret_id, "GetSecretValue", error)),
        }
    }
}

/// The issuer and audience of the tokens `testSecret` signs and verifies itself; never sent.
const TEST_ISSUER: &str = "mcp-rotation-test";
const TEST_AUDIENCE: &str = "mcp-rotation-test";

fn test_token_request(kid: &str) -> MintRequest {
    MintRequest {
        sub: "rotation-test".into(),
        scope: String::new(),
        ttl: Duration::from_secs(60),
        kid: Some(kid.to_owned()),
        issuer: TEST_ISSUER.into(),
        audience: TEST_AUDIENCE.into(),
    }
}

fn parse(secret_id: &str, version: &str, text: &str) -> Result<Vec<Hs256Key>, RotationError> {
    hs256_keys_from_secret_json(text).map_err(|source| RotationError::Keys {
        secret_id: secret_id.to_owned(),
        version: version.to_owned(),
        source,
    })
}

/// The list form the functions read, newest first.
fn secret_json(secret_id: &str, version: &str, keys: &[Hs256Key]) -> Result<String, RotationError> {
    let mut entries = Vec::with_capacity(keys.len());
    for key in keys {
        // Every key came from JSON text or from hex digits, so it is UTF-8.
        let secret = std::str::from_utf8(&key.secret).map_err(|_| RotationError::Keys {
            secret_id: secret_id.to_owned(),
            version: version.to_owned(),
            source: ConfigError::SecretFormat(format!("key {} is not text", key.kid)),
        })?;
        entries.push(SecretEntry {
            kid: &key.kid,
            secret,
        });
    }
    serde_json::to_string(&SecretDocument { keys: entries })
        .map_err(|error| RotationError::NewKey(error.to_string()))
}

/// The new key's id: the UTC time to the second (`YYYYmmddHHMMSS`), as the provisioning script
/// names the keys it adds, with `-2`, `-3`… when two rotations share a second.
fn new_kid(current: &[Hs256Key]) -> Result<String, RotationError> {
    let now = DateTime::from(SystemTime::now())
        .fmt(DateTimeFormat::DateTime)
        .map_err(|error| RotationError::NewKey(format!("the clock: {error}")))?;
    let base: String = now.chars().filter(char::is_ascii_digit).take(14).collect();
    let taken = |kid: &str| current.iter().any(|key| key.kid == kid);
    let mut kid = base.clone();
    let mut n = 1;
    while taken(&kid) {
        n += 1;
        kid = format!("{base}-{n}");
    }
    Ok(kid)
}

/// A new key: [`KEY_BYTES`] bytes from the system's secure random generator, as hex digits.
fn random_secret() -> Result<String, RotationError> {
    let mut bytes = [0u8; KEY_BYTES];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| RotationError::NewKey("the system's random generator failed".into()))?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kid: &str) -> Hs256Key {
        Hs256Key::new(kid, vec![b'k'; 32]).expect("valid")
    }

    #[test]
    fn a_new_kid_is_the_time_and_never_repeats_one_in_use() {
        let first = new_kid(&[]).expect("a kid");
        assert_eq!(first.len(), 14);
        assert!(first.bytes().all(|b| b.is_ascii_digit()), "{first}");
        let again = new_kid(&[key(&first)]).expect("a kid");
        // Same second, or the next one: either way not the kid in use.
        assert_ne!(again, first);
    }

    #[test]
    fn a_new_secret_is_64_hex_digits_and_differs_each_time() {
        let one = random_secret().expect("random");
        let two = random_secret().expect("random");
        assert_eq!(one.len(), 64);
        assert!(one.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(one, two);
    }

    #[test]
    fn the_list_is_written_in_the_shape_the_functions_read() {
        let keys = [key("b"), key("a")];
        let text = secret_json("s", "v", &keys).expect("json");
        assert_eq!(
            hs256_keys_from_secret_json(&text).expect("parses"),
            keys.to_vec()
        );
        assert!(text.starts_with(r#"{"keys":[{"kid":"b","#), "{text}");
    }
}
