//! RS256/ES256 public keys from a JWKS URL: fetched on first use, cached, and fetched again
//! when a token names an unknown `kid` — at most once per refresh interval, so a flood of
//! tokens with made-up key ids cannot turn into a flood of requests to the key server.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use jsonwebtoken::{
    Algorithm, DecodingKey,
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse},
};

use crate::AuthError;

/// The largest JWKS document accepted.
const MAX_JWKS_BYTES: usize = 256 * 1024;

/// One public key and the only algorithm it verifies.
#[derive(Clone)]
pub(crate) struct PinnedKey {
    pub key: DecodingKey,
    pub alg: Algorithm,
}

pub(crate) struct JwksCache {
    url: String,
    client: reqwest::Client,
    refresh_interval: Duration,
    state: tokio::sync::Mutex<State>,
}

#[derive(Default)]
struct State {
    keys: HashMap<String, PinnedKey>,
    attempted_at: Option<Instant>,
    loaded: bool,
}

impl JwksCache {
    pub(crate) fn new(url: String, refresh_interval: Duration) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(3))
            .build()?;
        Ok(Self {
            url,
            client,
            refresh_interval,
            state: tokio::sync::Mutex::new(State::default()),
        })
    }

    /// The key with id `kid`, fetching the set if it was never fetched or if the id is unknown
    /// and the last fetch is older than the refresh interval.
    pub(crate) async fn get(&self, kid: &str) -> Result<Option<PinnedKey>, AuthError> {
        let mut state = self.state.lock().await;
        if let Some(key) = state.keys.get(kid) {
            return Ok(Some(key.clone()));
        }
        let due = state
            .attempted_at
            .is_none_or(|at| at.elapsed() >= self.refresh_interval);
        if due {
            // Failures count too: a dead key server is asked once per interval, not per request.
            state.attempted_at = Some(Instant::now());
            match self.fetch().await {
                Ok(keys) => {
                    state.keys = keys;
                    state.loaded = true;
                }
                Err(message) => {
                    tracing::warn!(url = %self.url, %message, "fetching the JWKS failed");
                }
            }
        }
        if !state.loaded {
            return Err(AuthError::KeysUnavailable);
        }
        Ok(state.keys.get(kid).cloned())
    }

    async fn fetch(&self) -> Result<HashMap<String, PinnedKey>, String> {
        let response = self
            .client
            .get(&self.url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("status {}", response.status()));
        }
        let body = response.bytes().await.map_err(|e| e.to_string())?;
        if body.len() > MAX_JWKS_BYTES {
            return Err(format!("document is larger than {MAX_JWKS_BYTES} bytes"));
        }
        parse_jwks(&body)
    }
}

/// Parses a JWKS document, keeping the RSA and P-256 signature keys that carry a `kid`.
/// Keys of other types (or malformed ones) are skipped so one odd key does not hide the rest.
pub(crate) fn parse_jwks(body: &[u8]) -> Result<HashMap<String, PinnedKey>, String> {
    #[derive(serde::Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    let document: Document = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let mut keys = HashMap::new();
    for value in document.keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
            continue;
        };
        let Some(kid) = jwk.common.key_id.clone() else {
            continue;
        };
        if matches!(&jwk.common.public_key_use, Some(usage) if *usage != PublicKeyUse::Signature) {
            continue;
        }
        let (alg, declared) = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => (Algorithm::RS256, KeyAlgorithm::RS256),
            AlgorithmParameters::EllipticCurve(params) if params.curve == EllipticCurve::P256 => {
                (Algorithm::ES256, KeyAlgorithm::ES256)
            }
            _ => continue,
        };
        if matches!(&jwk.common.key_algorithm, Some(stated) if *stated != declared) {
            continue;
        }
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            continue;
        };
        keys.insert(kid, PinnedKey { key, alg });
    }
    Ok(keys)
}
