//! How long keys are trusted: a key retired from the JWKS or removed from the secret stops
//! verifying within its bound, a flood of tokens costs a bounded number of fetches, the
//! provider's `Cache-Control` is honoured within its clamp, and a provider that is down is
//! covered by the cached keys for at most two max ages, then 503. The intervals are short
//! (hundreds of milliseconds) so the bounds are observed, not waited for.

use crate::common;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use authorizer::{
    AuthError, ConfigError, Hs256Key, Hs256KeyLoader, Verifier, VerifierConfig, lambda::EnvConfig,
};
use common::*;
use serde_json::json;

const fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// The retry interval of every verifier here.
const RETRY: Duration = ms(100);
/// The max age of the sets in the retirement, flood and outage tests.
const MAX_AGE: Duration = ms(400);

/// A verifier of `server`'s keys whose sets live exactly `max_age` (the clamp is that value).
fn fixed_max_age(server: &JwksServer, max_age: Duration) -> Verifier {
    let mut config = config(Some(server.url.clone()));
    config.jwks_refresh_interval = RETRY;
    config.jwks_max_age = max_age;
    config.jwks_min_max_age = max_age;
    config.jwks_max_max_age = max_age;
    Verifier::new(config).expect("verifier")
}

/// A verifier whose sets live `Cache-Control`'s max age within [150 ms, 1.5 s], else 500 ms.
fn clamped(server: &JwksServer) -> Verifier {
    let mut config = config(Some(server.url.clone()));
    config.jwks_refresh_interval = RETRY;
    config.jwks_max_age = ms(500);
    config.jwks_min_max_age = ms(150);
    config.jwks_max_max_age = ms(1500);
    Verifier::new(config).expect("verifier")
}

fn rsa_token() -> String {
    rs256(Some("rsa-1"), &claims(json!({})))
}

/// Waits (up to 2 s) until `server` has answered `fetches` requests.
async fn fetched(server: &JwksServer, fetches: usize) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while server.fetches() < fetches && Instant::now() < deadline {
        tokio::time::sleep(ms(5)).await;
    }
    assert_eq!(server.fetches(), fetches);
}

/// `count` verifications of `token` at once; their results.
async fn flood(verifier: &Verifier, token: &str, count: usize) -> Vec<Result<(), AuthError>> {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..count {
        let verifier = verifier.clone();
        let token = token.to_owned();
        tasks.spawn(async move { verifier.verify(&token).await.map(|_| ()) });
    }
    let mut results = Vec::with_capacity(count);
    while let Some(result) = tasks.join_next().await {
        results.push(result.expect("task"));
    }
    results
}

// ─── A key retired from the JWKS ────────────────────────────────────────────

#[tokio::test]
async fn a_key_retired_from_the_jwks_stops_verifying_within_two_max_ages() {
    let server = JwksServer::start(JWKS).await;
    let verifier = fixed_max_age(&server, MAX_AGE);
    let old = rsa_token();
    let t0 = Instant::now();
    verifier.verify(&old).await.expect("rsa-1 while published");
    assert_eq!(verifier.jwks_generation(), 1);

    // The provider publishes only ec-1 now; a holder of an rsa-1 token keeps presenting it.
    server.set_document(&jwks_with(&["ec-1"]));
    let refused_at = loop {
        let started = t0.elapsed();
        match verifier.verify(&old).await {
            Ok(_) => assert!(
                started < 2 * MAX_AGE,
                "rsa-1 accepted {started:?} after the fetch that listed it"
            ),
            Err(error) => {
                assert_eq!(
                    error,
                    AuthError::UnknownKey {
                        kid: "rsa-1".into()
                    }
                );
                break t0.elapsed();
            }
        }
        tokio::time::sleep(ms(10)).await;
    };
    // Fresh for one max age; while tokens arrive the stale set is replaced soon after.
    assert!(refused_at >= MAX_AGE, "refused after {refused_at:?}");
    assert!(
        refused_at < 2 * MAX_AGE + ms(50),
        "refused after {refused_at:?}"
    );
    assert_eq!(server.fetches(), 2, "one fetch when the set went stale");
    assert_eq!(verifier.jwks_generation(), 2, "the set changed once");
    let current = es256(Some("ec-1"), &claims(json!({})));
    verifier
        .verify(&current)
        .await
        .expect("ec-1 still verifies");
}

#[tokio::test]
async fn without_traffic_a_retired_key_is_refused_at_its_first_use_after_two_max_ages() {
    let server = JwksServer::start(JWKS).await;
    let verifier = fixed_max_age(&server, MAX_AGE);
    let old = rsa_token();
    verifier.verify(&old).await.expect("rsa-1 while published");
    server.set_document(&jwks_with(&["ec-1"]));
    tokio::time::sleep(2 * MAX_AGE).await;
    // The set has expired: this request waits for the new one instead of using the old.
    assert_eq!(
        verifier.verify(&old).await,
        Err(AuthError::UnknownKey {
            kid: "rsa-1".into()
        })
    );
    assert_eq!(server.fetches(), 2);
}

// ─── Fetches under a flood ──────────────────────────────────────────────────

#[tokio::test]
async fn a_flood_of_tokens_costs_one_fetch_per_refresh() {
    let server = JwksServer::start(JWKS).await;
    let verifier = fixed_max_age(&server, MAX_AGE);
    let token = rsa_token();
    verifier.verify(&token).await.expect("first use fetches");
    assert_eq!(server.fetches(), 1);

    // Fresh: served from the cache.
    assert!(
        flood(&verifier, &token, 200)
            .await
            .iter()
            .all(Result::is_ok)
    );
    assert_eq!(server.fetches(), 1);

    // Stale: every request is served at once, one fetch runs in the background.
    tokio::time::sleep(MAX_AGE + ms(50)).await;
    assert!(
        flood(&verifier, &token, 200)
            .await
            .iter()
            .all(Result::is_ok)
    );
    fetched(&server, 2).await;

    // Expired (no traffic for two max ages): the requests wait for one shared fetch.
    tokio::time::sleep(2 * MAX_AGE + ms(50)).await;
    assert!(
        flood(&verifier, &token, 200)
            .await
            .iter()
            .all(Result::is_ok)
    );
    assert_eq!(server.fetches(), 3);
    assert_eq!(
        verifier.jwks_generation(),
        1,
        "same keys: the set did not change"
    );

    // Made-up key ids: at most one fetch per retry interval, however many arrive.
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < ms(600) {
        for _ in 0..20 {
            n += 1;
            let made_up = rs256(Some(&format!("made-up-{n}")), &claims(json!({})));
            assert!(matches!(
                verifier.verify(&made_up).await,
                Err(AuthError::UnknownKey { .. })
            ));
        }
        tokio::time::sleep(ms(10)).await;
    }
    let allowed = 1 + start.elapsed().as_millis() / RETRY.as_millis();
    let extra = server.fetches() - 3;
    assert!(
        extra as u128 <= allowed,
        "{n} made-up key ids cost {extra} fetches (at most {allowed})"
    );
}

// ─── Cache-Control ──────────────────────────────────────────────────────────

#[tokio::test]
async fn cache_control_max_age_is_honoured() {
    let server = JwksServer::start_with(JWKS, Some("public, max-age=1")).await;
    let verifier = clamped(&server);
    let token = rsa_token();
    let t0 = Instant::now();
    verifier.verify(&token).await.expect("verifies");
    // Past the 500 ms default, inside the provider's 1 s: still fresh.
    tokio::time::sleep(ms(750).saturating_sub(t0.elapsed())).await;
    verifier.verify(&token).await.expect("verifies");
    assert_eq!(server.fetches(), 1);
    // Past 1 s: stale, fetched again.
    tokio::time::sleep(ms(1100).saturating_sub(t0.elapsed())).await;
    verifier.verify(&token).await.expect("verifies");
    fetched(&server, 2).await;
}

#[tokio::test]
async fn a_long_max_age_is_clamped_to_the_longest_allowed() {
    let server = JwksServer::start_with(JWKS, Some("max-age=86400")).await;
    let verifier = clamped(&server);
    let token = rsa_token();
    let t0 = Instant::now();
    verifier.verify(&token).await.expect("verifies");
    // A day was asked for; 1.5 s is the most honoured.
    tokio::time::sleep(ms(1600).saturating_sub(t0.elapsed())).await;
    verifier.verify(&token).await.expect("verifies");
    fetched(&server, 2).await;
}

#[tokio::test]
async fn no_cache_and_a_zero_max_age_are_raised_to_the_shortest_allowed() {
    for cache_control in ["no-store", "no-cache", "max-age=0"] {
        let server = JwksServer::start_with(JWKS, Some(cache_control)).await;
        let verifier = clamped(&server);
        let token = rsa_token();
        // A flood right after the fetch: the set is fresh for 150 ms, not refetched per request.
        verifier.verify(&token).await.expect("verifies");
        assert!(flood(&verifier, &token, 50).await.iter().all(Result::is_ok));
        assert_eq!(server.fetches(), 1, "{cache_control}");
        // Past 150 ms (well inside the 500 ms default): fetched again.
        tokio::time::sleep(ms(200)).await;
        verifier.verify(&token).await.expect("verifies");
        fetched(&server, 2).await;
    }
}

#[tokio::test]
async fn without_cache_control_the_default_max_age_applies() {
    let server = JwksServer::start(JWKS).await;
    let verifier = clamped(&server);
    let token = rsa_token();
    let t0 = Instant::now();
    verifier.verify(&token).await.expect("verifies");
    tokio::time::sleep(ms(250).saturating_sub(t0.elapsed())).await;
    verifier.verify(&token).await.expect("verifies");
    assert_eq!(server.fetches(), 1);
    tokio::time::sleep(ms(550).saturating_sub(t0.elapsed())).await;
    verifier.verify(&token).await.expect("verifies");
    fetched(&server, 2).await;
}

// ─── The provider down ──────────────────────────────────────────────────────

#[tokio::test]
async fn a_provider_that_is_down_is_covered_for_two_max_ages_then_503() {
    let server = JwksServer::start(JWKS).await;
    let verifier = fixed_max_age(&server, MAX_AGE);
    let token = rsa_token();
    let t0 = Instant::now();
    verifier.verify(&token).await.expect("first fetch");
    server.set_down(true);

    let mut served_stale = 0;
    let mut refused = 0;
    while t0.elapsed() < 2 * MAX_AGE + ms(300) {
        let started = t0.elapsed();
        let result = verifier.verify(&token).await;
        let ended = t0.elapsed();
        match result {
            Ok(_) => {
                assert!(
                    started < 2 * MAX_AGE,
                    "cached key used {started:?} after its fetch"
                );
                if started >= MAX_AGE {
                    served_stale += 1;
                }
            }
            Err(error) => {
                assert_eq!(error, AuthError::KeysUnavailable);
                assert_eq!(error.status(), 503);
                assert!(ended >= 2 * MAX_AGE, "refused {ended:?} after the fetch");
                refused += 1;
            }
        }
        tokio::time::sleep(ms(10)).await;
    }
    assert!(
        served_stale > 0,
        "the outage was covered by the cached keys"
    );
    assert!(refused > 0, "then the keys were unavailable");
    // One attempt when the set went stale, then at most one per retry interval.
    let attempts = server.fetches() - 1;
    let allowed = 1 + t0.elapsed().as_millis() / RETRY.as_millis();
    assert!(
        attempts as u128 <= allowed,
        "{attempts} attempts (at most {allowed})"
    );

    // The provider is back: the next attempt (a retry interval on) restores the keys.
    server.set_down(false);
    tokio::time::sleep(RETRY).await;
    verifier.verify(&token).await.expect("keys back");
}

// ─── HS256 keys removed from the secret ─────────────────────────────────────

/// A secret the test edits, loaded through the verifier's reload hook; counts the loads.
struct Secret {
    keys: Arc<Mutex<Vec<Hs256Key>>>,
    loads: Arc<AtomicUsize>,
    unreadable: Arc<AtomicBool>,
}

impl Secret {
    fn new(keys: Vec<Hs256Key>) -> Self {
        Self {
            keys: Arc::new(Mutex::new(keys)),
            loads: Arc::new(AtomicUsize::new(0)),
            unreadable: Arc::new(AtomicBool::new(false)),
        }
    }

    fn loader(&self) -> Hs256KeyLoader {
        let keys = self.keys.clone();
        let loads = self.loads.clone();
        let unreadable = self.unreadable.clone();
        Arc::new(move || {
            loads.fetch_add(1, Ordering::SeqCst);
            let result = if unreadable.load(Ordering::SeqCst) {
                Err(ConfigError::SecretFetch {
                    secret_id: "test".into(),
                    message: "unreachable".into(),
                })
            } else {
                Ok(keys.lock().expect("keys").clone())
            };
            Box::pin(async move { result })
        })
    }

    fn set(&self, keys: Vec<Hs256Key>) {
        *self.keys.lock().expect("keys") = keys;
    }

    fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }
}

fn hs_verifier(secret: &Secret) -> Verifier {
    let mut config = config(None);
    config.jwks_refresh_interval = RETRY;
    config.hs256_max_age = Some(MAX_AGE);
    Verifier::with_hs256_reload(config, secret.loader()).expect("verifier")
}

fn k2_only() -> Vec<Hs256Key> {
    vec![Hs256Key::new("k2", K2.as_bytes()).expect("k2")]
}

#[tokio::test]
async fn a_key_removed_from_the_secret_stops_verifying_within_two_max_ages() {
    let secret = Secret::new(hs_keys());
    let t0 = Instant::now();
    let verifier = hs_verifier(&secret);
    let old = hs256(Some("k1"), K1.as_bytes(), &claims(json!({})));
    verifier.verify(&old).await.expect("k1 while listed");

    secret.set(k2_only());
    let refused_at = loop {
        let started = t0.elapsed();
        match verifier.verify(&old).await {
            Ok(_) => assert!(
                started < 2 * MAX_AGE,
                "k1 accepted {started:?} after the keys were loaded"
            ),
            Err(error) => {
                assert_eq!(error, AuthError::UnknownKey { kid: "k1".into() });
                break t0.elapsed();
            }
        }
        tokio::time::sleep(ms(10)).await;
    };
    assert!(refused_at >= MAX_AGE, "refused after {refused_at:?}");
    assert!(
        refused_at < 2 * MAX_AGE + ms(50),
        "refused after {refused_at:?}"
    );
    assert!(
        (1..=2).contains(&secret.loads()),
        "{} loads",
        secret.loads()
    );
    let current = hs256(Some("k2"), K2.as_bytes(), &claims(json!({})));
    verifier.verify(&current).await.expect("k2 still verifies");
}

#[tokio::test]
async fn hs256_keys_are_reloaded_once_per_max_age_under_a_flood() {
    let secret = Secret::new(hs_keys());
    let verifier = hs_verifier(&secret);
    let token = hs256(Some("k2"), K2.as_bytes(), &claims(json!({})));
    assert!(
        flood(&verifier, &token, 200)
            .await
            .iter()
            .all(Result::is_ok)
    );
    assert_eq!(secret.loads(), 0, "the keys given at start are fresh");
    tokio::time::sleep(MAX_AGE + ms(50)).await;
    assert!(
        flood(&verifier, &token, 200)
            .await
            .iter()
            .all(Result::is_ok)
    );
    let deadline = Instant::now() + Duration::from_secs(2);
    while secret.loads() < 1 && Instant::now() < deadline {
        tokio::time::sleep(ms(5)).await;
    }
    assert_eq!(secret.loads(), 1, "one background reload");
    // Without traffic for two max ages: the flood waits for one shared reload.
    tokio::time::sleep(2 * MAX_AGE + ms(50)).await;
    assert!(
        flood(&verifier, &token, 200)
            .await
            .iter()
            .all(Result::is_ok)
    );
    assert_eq!(secret.loads(), 2);
}

#[tokio::test]
async fn an_unreadable_secret_keeps_the_keys_and_is_retried_once_per_interval() {
    // The secret is ours: a key is retired by writing it, which needs it readable. So, as in
    // the function's keyring, a failed read keeps the keys in use and both accept the same
    // tokens.
    let secret = Secret::new(hs_keys());
    let verifier = hs_verifier(&secret);
    secret.unreadable.store(true, Ordering::SeqCst);
    let token = hs256(Some("k1"), K1.as_bytes(), &claims(json!({})));
    let t0 = Instant::now();
    while t0.elapsed() < 3 * MAX_AGE {
        verifier.verify(&token).await.expect("kept keys verify");
        tokio::time::sleep(ms(10)).await;
    }
    let allowed = 1 + t0.elapsed().as_millis() / RETRY.as_millis();
    assert!(secret.loads() >= 1);
    assert!(
        secret.loads() as u128 <= allowed,
        "{} loads (at most {allowed})",
        secret.loads()
    );
}

// ─── Settings ───────────────────────────────────────────────────────────────

#[test]
fn key_lifetimes_are_checked() {
    let invalid = |config: VerifierConfig| match Verifier::new(config) {
        Err(ConfigError::Invalid { name, .. }) => name,
        other => panic!("expected an invalid setting, got {other:?}"),
    };
    let jwks = || config(Some("https://issuer.example.com/jwks.json".into()));
    let mut slow_retry = jwks();
    slow_retry.jwks_refresh_interval = slow_retry.jwks_min_max_age + ms(1);
    assert_eq!(invalid(slow_retry), "jwks_refresh_interval");
    let mut inverted = jwks();
    inverted.jwks_max_max_age = inverted.jwks_min_max_age - ms(1);
    assert_eq!(invalid(inverted), "jwks_max_max_age");
    let mut zero = jwks();
    zero.jwks_min_max_age = Duration::ZERO;
    assert_eq!(invalid(zero), "jwks_min_max_age");

    let mut config = config(None);
    config.hs256_max_age = Some(Duration::ZERO);
    let load: Hs256KeyLoader = Arc::new(|| Box::pin(async { Ok(hs_keys()) }));
    assert!(matches!(
        Verifier::with_hs256_reload(config, load),
        Err(ConfigError::Invalid {
            name: "hs256_max_age",
            ..
        })
    ));

    let defaults = VerifierConfig::new(ISSUER, AUDIENCE);
    assert_eq!(defaults.jwks_max_age, Duration::from_secs(600));
    assert_eq!(defaults.jwks_min_max_age, Duration::from_secs(60));
    assert_eq!(defaults.jwks_max_max_age, Duration::from_secs(3600));
    assert_eq!(defaults.hs256_max_age, Some(Duration::from_secs(300)));
}

#[test]
fn the_authorizer_reads_the_secret_again_every_mcp_secret_refresh_secs() {
    let with = |refresh: Option<&str>| {
        EnvConfig::from_lookup(|name| match name {
            "MCP_AUTH_ISSUER" => Some(ISSUER.to_owned()),
            "MCP_AUTH_AUDIENCE" => Some(AUDIENCE.to_owned()),
            "MCP_SECRET_ID" => Some("mcp/signing-keys".to_owned()),
            "MCP_SECRET_REFRESH_SECS" => refresh.map(str::to_owned),
            _ => None,
        })
    };
    let default = with(None).expect("config");
    assert_eq!(default.secret_refresh, Duration::from_secs(300));
    let set = with(Some("60")).expect("config");
    assert_eq!(set.secret_refresh, Duration::from_secs(60));
    for bad in ["5", "soon", "-1"] {
        match with(Some(bad)) {
            Err(error @ ConfigError::Invalid { .. }) => assert_eq!(
                error.to_string(),
                "MCP_SECRET_REFRESH_SECS is invalid: is not a number of seconds between 10 and \
                 31536000"
            ),
            other => panic!("{bad}: expected an invalid setting, got {other:?}"),
        }
    }
}
