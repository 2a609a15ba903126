//! RS256/ES256 public keys from a JWKS URL, cached for as long as the provider says.
//!
//! The set is fetched on first use and kept for its max age: the provider's
//! `Cache-Control: max-age` (less its `Age`), clamped to [`JwksTiming::min_max_age`,
//! `JwksTiming::max_max_age`], or [`JwksTiming::default_max_age`] when it sends none. Then:
//!
//! - **fresh** (younger than the max age): served as is; a token naming an unknown `kid`
//!   fetches the set again, at most once per [`JwksTiming::retry_interval`], so a flood of
//!   tokens with made-up key ids cannot turn into a flood of requests to the key server;
//! - **stale** (between one and two max ages): still served, while one fetch runs in the
//!   background (single-flight: a flood of tokens starts one);
//! - **expired** (two max ages or more, or never fetched): requests wait for one fetch; if it
//!   fails (or failed less than a retry interval ago) they get [`AuthError::KeysUnavailable`]
//!   (503), never the old keys.
//!
//! So a key the provider retired stops verifying at most two max ages after the last fetch
//! that still listed it (default 10 min → 20 min; never more than 2 h), and within about one
//! max age while the provider answers and tokens keep arriving. A provider that is down is
//! covered by the cached keys for at most the same two max ages.

use std::{
    collections::HashMap,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use jsonwebtoken::{
    Algorithm, DecodingKey,
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse},
};

use crate::AuthError;

/// The largest JWKS document accepted.
const MAX_JWKS_BYTES: usize = 256 * 1024;

/// How many max ages a fetched set may be served in all: one fresh, one stale while it is
/// fetched again (or while the provider is down).
const SERVED_FOR_MAX_AGES: u32 = 2;

/// One public key and the only algorithm it verifies.
#[derive(Clone)]
pub(crate) struct PinnedKey {
    pub key: DecodingKey,
    pub alg: Algorithm,
}

/// How long a fetched set is kept, and how often the key server may be asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct JwksTiming {
    /// The shortest time between two fetches (after the first): unknown key ids and
    /// failed fetches are retried at this pace at most.
    pub retry_interval: Duration,
    /// The max age of a set whose response carries no `Cache-Control: max-age`.
    pub default_max_age: Duration,
    /// The shortest max age honoured (`no-cache`, `no-store` and `max-age=0` become this).
    pub min_max_age: Duration,
    /// The longest max age honoured.
    pub max_max_age: Duration,
}

impl JwksTiming {
    /// The max age of a response whose own freshness lifetime is `stated` (if it gave one).
    pub(crate) fn max_age(&self, stated: Option<Duration>) -> Duration {
        stated
            .unwrap_or(self.default_max_age)
            .clamp(self.min_max_age, self.max_max_age)
    }
}

pub(crate) struct JwksCache {
    url: String,
    client: reqwest::Client,
    timing: JwksTiming,
    state: RwLock<State>,
    /// Held while a fetch runs: concurrent requests share one fetch.
    fetching: Arc<tokio::sync::Mutex<()>>,
    /// Counts the changes of the key set (not fetches that brought the same keys).
    generation: AtomicU64,
}

#[derive(Default)]
struct State {
    keys: Arc<HashMap<String, PinnedKey>>,
    /// Each served key's id and JWK text, sorted: tells a changed set from a re-fetched one.
    fingerprint: Vec<(String, String)>,
    /// When the current set was fetched (the request's start), and for how long it is fresh.
    fetched_at: Option<Instant>,
    max_age: Duration,
    /// The last fetch, successful or not.
    attempted_at: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Freshness {
    Fresh,
    Stale,
    Expired,
}

impl State {
    fn freshness(&self, now: Instant) -> Freshness {
        let Some(fetched_at) = self.fetched_at else {
            return Freshness::Expired;
        };
        let age = now.saturating_duration_since(fetched_at);
        if age < self.max_age {
            Freshness::Fresh
        } else if age < self.max_age.saturating_mul(SERVED_FOR_MAX_AGES) {
            Freshness::Stale
        } else {
            Freshness::Expired
        }
    }

    fn may_fetch(&self, now: Instant, retry_interval: Duration) -> bool {
        self.attempted_at
            .is_none_or(|at| now.saturating_duration_since(at) >= retry_interval)
    }
}

/// A fetched and parsed document: its keys, their fingerprint and the stated max age.
struct Fetched {
    keys: HashMap<String, PinnedKey>,
    fingerprint: Vec<(String, String)>,
    max_age: Option<Duration>,
}

impl JwksCache {
    pub(crate) fn new(url: String, timing: JwksTiming) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(3))
            .build()?;
        Ok(Self {
            url,
            client,
            timing,
            state: RwLock::new(State::default()),
            fetching: Arc::new(tokio::sync::Mutex::new(())),
            generation: AtomicU64::new(0),
        })
    }

    /// How many times the key set changed since start (a fetch that brings the same keys does
    /// not count): lets a caller drop what it concluded from the old keys.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The key with id `kid` (`None`: not in the set), fetching the set as the module
    /// documentation says.
    pub(crate) async fn get(self: &Arc<Self>, kid: &str) -> Result<Option<PinnedKey>, AuthError> {
        let now = Instant::now();
        let (key, freshness, may_fetch) = {
            let state = self.read();
            (
                state.keys.get(kid).cloned(),
                state.freshness(now),
                state.may_fetch(now, self.timing.retry_interval),
            )
        };
        match (freshness, key) {
            (Freshness::Fresh, Some(key)) => Ok(Some(key)),
            (Freshness::Stale, Some(key)) => {
                if may_fetch {
                    self.refresh_in_background();
                }
                Ok(Some(key))
            }
            (Freshness::Fresh | Freshness::Stale, None) => {
                if may_fetch {
                    self.refresh().await;
                }
                let state = self.read();
                if state.freshness(Instant::now()) == Freshness::Expired {
                    return Err(AuthError::KeysUnavailable);
                }
                Ok(state.keys.get(kid).cloned())
            }
            (Freshness::Expired, _) => {
                self.refresh().await;
                let state = self.read();
                if state.freshness(Instant::now()) == Freshness::Expired {
                    return Err(AuthError::KeysUnavailable);
                }
                Ok(state.keys.get(kid).cloned())
            }
        }
    }

    /// Fetches the set unless a fetch is under way (then waits for it) or the last one is
    /// more recent than the retry interval.
    async fn refresh(&self) {
        let _fetching = self.fetching.lock().await;
        self.fetch_while_locked().await;
    }

    /// Starts [`JwksCache::refresh`] on the runtime unless a fetch is already under way.
    fn refresh_in_background(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Ok(fetching) = self.fetching.clone().try_lock_owned() else {
            return;
        };
        let cache = self.clone();
        runtime.spawn(async move {
            let _fetching = fetching;
            cache.fetch_while_locked().await;
        });
    }

    /// One fetch, unless another ended less than a retry interval ago. The caller holds
    /// `fetching`. A failure keeps the current set, which expires on its own schedule.
    async fn fetch_while_locked(&self) {
        let started = Instant::now();
        {
            let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
            if !state.may_fetch(started, self.timing.retry_interval) {
                return;
            }
            // Failures count too: a dead key server is asked once per interval, not per request.
            state.attempted_at = Some(started);
        }
        match self.fetch().await {
            Ok(fetched) => {
                let max_age = self.timing.max_age(fetched.max_age);
                let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
                if state.fetched_at.is_none() || state.fingerprint != fetched.fingerprint {
                    self.generation.fetch_add(1, Ordering::AcqRel);
                }
                state.keys = Arc::new(fetched.keys);
                state.fingerprint = fetched.fingerprint;
                state.fetched_at = Some(started);
                state.max_age = max_age;
            }
            Err(message) => {
                tracing::warn!(url = %self.url, %message, "fetching the JWKS failed");
            }
        }
    }

    async fn fetch(&self) -> Result<Fetched, String> {
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
        let header = |name| {
            response
                .headers()
                .get_all(name)
                .iter()
                .filter_map(|value| value.to_str().ok())
                .collect::<Vec<_>>()
                .join(",")
        };
        let max_age = freshness_lifetime(&header("cache-control"), &header("age"));
        let body = response.bytes().await.map_err(|e| e.to_string())?;
        if body.len() > MAX_JWKS_BYTES {
            return Err(format!("document is larger than {MAX_JWKS_BYTES} bytes"));
        }
        let (keys, fingerprint) = parse_document(&body)?;
        Ok(Fetched {
            keys,
            fingerprint,
            max_age,
        })
    }
}

/// The freshness lifetime a response states (RFC 9111 §4.2.1, §4.2.3): its `Cache-Control`
/// `max-age` less its `Age`; zero for `no-cache`, `no-store` or a `max-age` that is not a
/// number; `None` when it states none. Several `max-age`s: the smallest.
pub(crate) fn freshness_lifetime(cache_control: &str, age: &str) -> Option<Duration> {
    let mut lifetime: Option<u64> = None;
    for directive in cache_control.split(',').map(str::trim) {
        let (name, value) = directive.split_once('=').unwrap_or((directive, ""));
        let name = name.trim();
        let seconds =
            if name.eq_ignore_ascii_case("no-cache") || name.eq_ignore_ascii_case("no-store") {
                0
            } else if name.eq_ignore_ascii_case("max-age") {
                value.trim().trim_matches('"').parse::<u64>().unwrap_or(0)
            } else {
                continue;
            };
        lifetime = Some(lifetime.map_or(seconds, |known| known.min(seconds)));
    }
    let age = age
        .split(',')
        .next()
        .and_then(|first| first.trim().parse::<u64>().ok())
        .unwrap_or(0);
    lifetime.map(|seconds| Duration::from_secs(seconds.saturating_sub(age)))
}

/// The RSA and P-256 signature keys of a JWKS document that carry a `kid`, and the set's
/// fingerprint. Keys of other types (or malformed ones) are skipped so one odd key does not
/// hide the rest.
type Parsed = (HashMap<String, PinnedKey>, Vec<(String, String)>);

fn parse_document(body: &[u8]) -> Result<Parsed, String> {
    #[derive(serde::Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    let document: Document = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let mut keys = HashMap::new();
    let mut fingerprint = Vec::new();
    for value in document.keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(value.clone()) else {
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
        fingerprint.push((kid.clone(), value.to_string()));
        keys.insert(kid, PinnedKey { key, alg });
    }
    fingerprint.sort();
    Ok((keys, fingerprint))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn the_stated_lifetime_is_max_age_less_age() {
        let cases = [
            ("", "", None),
            ("public", "", None),
            ("public, max-age=300", "", Some(300)),
            ("Max-Age=\"120\"", "", Some(120)),
            ("max-age=300, must-revalidate", "100", Some(200)),
            ("max-age=300", "900", Some(0)),
            ("max-age=300,max-age=60", "", Some(60)),
            ("max-age=soon", "", Some(0)),
            ("no-cache", "", Some(0)),
            ("public, no-store, max-age=600", "", Some(0)),
            ("s-maxage=600", "", None),
        ];
        for (cache_control, age, expected) in cases {
            assert_eq!(
                freshness_lifetime(cache_control, age),
                expected.map(Duration::from_secs),
                "{cache_control:?} age {age:?}"
            );
        }
    }

    #[test]
    fn the_max_age_is_clamped_and_defaults_when_unstated() {
        let timing = JwksTiming {
            retry_interval: 60 * SECOND,
            default_max_age: 600 * SECOND,
            min_max_age: 60 * SECOND,
            max_max_age: 3600 * SECOND,
        };
        assert_eq!(timing.max_age(None), 600 * SECOND);
        assert_eq!(timing.max_age(Some(300 * SECOND)), 300 * SECOND);
        assert_eq!(timing.max_age(Some(Duration::ZERO)), 60 * SECOND);
        assert_eq!(timing.max_age(Some(86_400 * SECOND)), 3600 * SECOND);
    }

    #[test]
    fn a_set_is_fresh_for_one_max_age_then_stale_for_another() {
        let start = Instant::now();
        let state = State {
            fetched_at: Some(start),
            max_age: 10 * SECOND,
            attempted_at: Some(start),
            ..State::default()
        };
        assert_eq!(state.freshness(start), Freshness::Fresh);
        assert_eq!(state.freshness(start + 9 * SECOND), Freshness::Fresh);
        assert_eq!(state.freshness(start + 10 * SECOND), Freshness::Stale);
        assert_eq!(state.freshness(start + 19 * SECOND), Freshness::Stale);
        assert_eq!(state.freshness(start + 20 * SECOND), Freshness::Expired);
        assert_eq!(State::default().freshness(start), Freshness::Expired);
        assert!(!state.may_fetch(start + 5 * SECOND, 6 * SECOND));
        assert!(state.may_fetch(start + 6 * SECOND, 6 * SECOND));
    }
}
