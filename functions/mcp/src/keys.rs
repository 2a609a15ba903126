//! Signing keys: one active key seals, every listed key still opens.
//!
//! The HMAC keys that seal pagination cursors and 2026-07-28 `requestState`
//! (and, with the auth issue, HS256 tokens) come from one place: a Secrets
//! Manager secret in AWS, or `MCP_SIGNING_KEY` locally. The secret holds a
//! list of keys with ids, newest first:
//!
//! ```json
//! {"keys": [{"kid": "2026-11", "secret": "…at least 32 bytes…"},
//!           {"kid": "2026-08", "secret": "…"}]}
//! ```
//!
//! The first key seals; all of them open. Rotating is therefore: put a new key
//! first, wait one refresh interval plus the longest-lived cursor, drop the old
//! one. A [`Keyring`] is cached per process and refreshed in the background
//! when it is older than the interval, so no request waits on Secrets Manager
//! after the first.

use std::{
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

/// One HMAC key and its id (`Debug` redacts the secret); the JWT authorizer reads the same list.
pub use authorizer::Hs256Key as SigningKey;

/// A non-empty list of keys; the first is the active one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySet {
    keys: Vec<SigningKey>,
}

/// Why a key set could not be loaded. Messages never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The secret's text is not a valid key list (format, empty, short key, bad `kid`).
    #[error(transparent)]
    Invalid(#[from] authorizer::ConfigError),
    #[error("secret `{secret_id}` has no SecretString")]
    NotAString { secret_id: String },
    #[error("reading secret `{secret_id}` from Secrets Manager failed: {message}")]
    Fetch { secret_id: String, message: String },
}

impl KeySet {
    /// A set of one key, as `MCP_SIGNING_KEY` gives.
    pub fn single(kid: &str, secret: &[u8]) -> Self {
        Self {
            keys: vec![SigningKey {
                kid: kid.to_owned(),
                secret: secret.to_vec(),
            }],
        }
    }

    /// Parses and checks the secret's JSON text (the format the authorizer reads too).
    pub fn from_secret_json(text: &str) -> Result<Self, KeyError> {
        Ok(Self {
            keys: authorizer::hs256_keys_from_secret_json(text)?,
        })
    }

    /// The key that seals new values.
    pub fn active(&self) -> &SigningKey {
        // `keys` is never empty: both constructors guarantee it.
        &self.keys[0]
    }

    /// Every key that may open a value, active first.
    pub fn all(&self) -> &[SigningKey] {
        &self.keys
    }
}

/// Loads a [`KeySet`] from wherever it lives.
#[async_trait::async_trait]
pub trait KeySource: Send + Sync + 'static {
    async fn load(&self) -> Result<KeySet, KeyError>;
}

/// A Secrets Manager secret holding the key list.
pub struct SecretsManagerKeys {
    pub client: aws_sdk_secretsmanager::Client,
    pub secret_id: String,
}

#[async_trait::async_trait]
impl KeySource for SecretsManagerKeys {
    async fn load(&self) -> Result<KeySet, KeyError> {
        let output = self
            .client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .send()
            .await
            .map_err(|error| KeyError::Fetch {
                secret_id: self.secret_id.clone(),
                message: aws_sdk_secretsmanager::error::DisplayErrorContext(&error).to_string(),
            })?;
        let text = output.secret_string().ok_or_else(|| KeyError::NotAString {
            secret_id: self.secret_id.clone(),
        })?;
        KeySet::from_secret_json(text)
    }
}

/// The process's cached keys, shared by everything that seals or opens.
#[derive(Clone)]
pub struct Keyring {
    inner: Arc<Inner>,
}

struct Inner {
    cached: RwLock<Cached>,
    source: Option<Arc<dyn KeySource>>,
    refresh_every: Duration,
    refreshing: AtomicBool,
}

struct Cached {
    keys: Arc<KeySet>,
    loaded_at: Instant,
}

impl Keyring {
    /// Keys that never change (`MCP_SIGNING_KEY`, tests).
    pub fn fixed(keys: KeySet) -> Self {
        Self::with(keys, None, Duration::MAX)
    }

    /// Loads the keys once now (failing start if that fails) and refreshes them every `refresh_every`.
    pub async fn load(
        source: Arc<dyn KeySource>,
        refresh_every: Duration,
    ) -> Result<Self, KeyError> {
        let keys = source.load().await?;
        Ok(Self::with(keys, Some(source), refresh_every))
    }

    fn with(keys: KeySet, source: Option<Arc<dyn KeySource>>, refresh_every: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                cached: RwLock::new(Cached {
                    keys: Arc::new(keys),
                    loaded_at: Instant::now(),
                }),
                source,
                refresh_every,
                refreshing: AtomicBool::new(false),
            }),
        }
    }

    /// The current keys; starts a background refresh when they are stale.
    pub fn keys(&self) -> Arc<KeySet> {
        let (keys, stale) = {
            let cached = self
                .inner
                .cached
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            (
                cached.keys.clone(),
                cached.loaded_at.elapsed() >= self.inner.refresh_every,
            )
        };
        if stale {
            self.spawn_refresh();
        }
        keys
    }

    /// Reloads now; on failure the old keys stay in use and the error is returned. Keys from
    /// the environment have nothing to reload. Readiness calls this as its secret check.
    ///
    /// A secret that lists the same keys keeps the same [`KeySet`] (the same `Arc`): whoever
    /// compares it by pointer to learn of a rotation (the token verifier, which then forgets
    /// the tokens it verified) sees no change.
    pub async fn refresh(&self) -> Result<(), KeyError> {
        let Some(source) = &self.inner.source else {
            return Ok(());
        };
        let keys = source.load().await?;
        let mut cached = self
            .inner
            .cached
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if *cached.keys != keys {
            cached.keys = Arc::new(keys);
        }
        cached.loaded_at = Instant::now();
        Ok(())
    }

    /// Where the keys come from, for health output: "secretsmanager" or "env".
    pub fn backend(&self) -> &'static str {
        if self.inner.source.is_some() {
            "secretsmanager"
        } else {
            "env"
        }
    }

    fn spawn_refresh(&self) {
        if self.inner.source.is_none()
            || self.inner.refreshing.swap(true, Ordering::AcqRel)
            || tokio::runtime::Handle::try_current().is_err()
        {
            return;
        }
        let ring = self.clone();
        tokio::spawn(async move {
            if let Err(error) = ring.refresh().await {
                // Keep serving with the keys we have; the next stale read tries again.
                tracing::warn!(%error, "signing key refresh failed; keeping the cached keys");
                ring.mark_attempted();
            }
            ring.inner.refreshing.store(false, Ordering::Release);
        });
    }

    /// Counts a failed refresh as a load, so a broken secret is retried once per interval, not per request.
    fn mark_attempted(&self) {
        let mut cached = self
            .inner
            .cached
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        cached.loaded_at = Instant::now();
    }
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<String> = self.keys().all().iter().map(|k| k.kid.clone()).collect();
        f.debug_struct("Keyring").field("kids", &kids).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    const LONG_A: &str = "a-secret-that-is-long-enough-0000000";
    const LONG_B: &str = "b-secret-that-is-long-enough-0000000";

    #[test]
    fn a_secret_lists_keys_newest_first() {
        let text = format!(
            r#"{{"keys":[{{"kid":"new","secret":"{LONG_A}"}},{{"kid":"old","secret":"{LONG_B}"}}]}}"#
        );
        let keys = KeySet::from_secret_json(&text).expect("valid secret");
        assert_eq!(keys.active().kid, "new");
        let kids: Vec<&str> = keys.all().iter().map(|key| key.kid.as_str()).collect();
        assert_eq!(kids, ["new", "old"]);
        assert_eq!(keys.all()[1].secret, LONG_B.as_bytes());
    }

    #[test]
    fn malformed_secrets_are_refused_without_echoing_keys() {
        let cases = [
            ("not json", "secret is not the expected JSON"),
            (r#"{"keys":[]}"#, "secret lists no keys"),
            (r#"{"key":"x"}"#, "secret is not the expected JSON"),
            (
                r#"{"keys":[{"kid":"k","secret":"short-secret"}]}"#,
                "key `k` is 12 bytes; at least 32 are required",
            ),
            (
                &format!(r#"{{"keys":[{{"kid":"","secret":"{LONG_A}"}}]}}"#),
                "key id `` is empty, repeated or not printable ASCII",
            ),
            (
                &format!(
                    r#"{{"keys":[{{"kid":"k","secret":"{LONG_A}"}},{{"kid":"k","secret":"{LONG_B}"}}]}}"#
                ),
                "key id `k` is empty, repeated or not printable ASCII",
            ),
        ];
        for (text, expected) in cases {
            let error = KeySet::from_secret_json(text).expect_err(text).to_string();
            assert!(error.starts_with(expected), "{text}: {error}");
            assert!(!error.contains("short-secret"));
        }
    }

    struct Rotating {
        loads: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl KeySource for Rotating {
        async fn load(&self) -> Result<KeySet, KeyError> {
            let n = self.loads.fetch_add(1, Ordering::SeqCst);
            Ok(KeySet::single(&format!("k{n}"), LONG_A.as_bytes()))
        }
    }

    #[tokio::test]
    async fn stale_keys_refresh_in_the_background() {
        let source = Arc::new(Rotating {
            loads: AtomicUsize::new(0),
        });
        let ring = Keyring::load(source.clone(), Duration::ZERO)
            .await
            .expect("first load");
        assert_eq!(ring.keys().active().kid, "k0");
        for _ in 0..100 {
            if ring.keys().active().kid != "k0" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_ne!(ring.keys().active().kid, "k0");
    }

    /// Always the same key list, counting its loads.
    struct Unchanged {
        loads: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl KeySource for Unchanged {
        async fn load(&self) -> Result<KeySet, KeyError> {
            self.loads.fetch_add(1, Ordering::SeqCst);
            Ok(KeySet::single("k", LONG_A.as_bytes()))
        }
    }

    #[tokio::test]
    async fn an_unchanged_secret_keeps_the_same_key_set() {
        let source = Arc::new(Unchanged {
            loads: AtomicUsize::new(0),
        });
        let ring = Keyring::load(source.clone(), Duration::from_secs(3600))
            .await
            .expect("first load");
        let before = ring.keys();
        ring.refresh().await.expect("refresh");
        assert_eq!(source.loads.load(Ordering::SeqCst), 2);
        assert!(Arc::ptr_eq(&before, &ring.keys()), "same keys, same set");

        let rotating = Keyring::load(
            Arc::new(Rotating {
                loads: AtomicUsize::new(0),
            }),
            Duration::from_secs(3600),
        )
        .await
        .expect("first load");
        let before = rotating.keys();
        rotating.refresh().await.expect("refresh");
        assert!(!Arc::ptr_eq(&before, &rotating.keys()), "new keys, new set");
    }

    #[tokio::test]
    async fn fixed_keys_never_reload() {
        let ring = Keyring::fixed(KeySet::single("env", LONG_A.as_bytes()));
        assert_eq!(ring.keys().active().kid, "env");
        assert!(ring.refresh().await.is_ok());
    }
}
