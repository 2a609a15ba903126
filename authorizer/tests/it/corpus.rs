//! The bad-token corpus (and the good tokens beside it): each case asserts the exact
//! [`AuthError`] variant and HTTP status, or the verified claims.

use crate::common;

use std::time::Duration;

use authorizer::{AuthError, Verifier};
use common::{corpus::*, *};
use serde_json::json;

#[tokio::test]
async fn corpus() {
    let server = JwksServer::start(JWKS).await;
    let verifier = Verifier::new(config(Some(server.url.clone()))).expect("verifier");
    let cases = cases();
    assert!(cases.len() >= 25);
    let mut failures = Vec::new();
    for case in &cases {
        let result = verifier.verify_authorization(case.header.as_deref()).await;
        let ok = match (&case.expect, &result) {
            (Expect::Err(expected, status), Err(actual)) => {
                actual == expected && actual.status() == *status
            }
            (Expect::Ok(sub, scopes), Ok(claims)) => {
                claims.sub == *sub
                    && claims.scopes.iter().map(String::as_str).collect::<Vec<_>>() == *scopes
            }
            (Expect::Forbidden(scope), Ok(claims)) => {
                let refused = claims.require(scope);
                matches!(&refused, Err(AuthError::InsufficientScope { required }) if required == scope)
                    && refused.as_ref().err().map(AuthError::status) == Some(403)
            }
            _ => false,
        };
        if !ok {
            failures.push(format!("{}: got {result:?}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "failed cases:\n{}",
        failures.join("\n")
    );
    // The descriptions are safe to show: they never contain the token.
    for case in &cases {
        if let (Err(error), Some(header)) = (
            verifier.verify_authorization(case.header.as_deref()).await,
            &case.header,
        ) && let Some(token) = header.split(' ').nth(1)
            && token.len() > 8
        {
            assert!(!error.error_description().contains(token), "{}", case.name);
        }
    }
}

#[tokio::test]
async fn unknown_kid_refreshes_the_jwks_at_most_once_per_interval() {
    // The key server starts with the RSA key only; the EC key is "rotated in" later.
    let server = JwksServer::start(&jwks_with(&["rsa-1"])).await;
    let mut config = config(Some(server.url.clone()));
    config.jwks_refresh_interval = Duration::from_millis(300);
    let verifier = Verifier::new(config).expect("verifier");
    let valid = claims(json!({}));

    // Fetched once on first use, then cached.
    for _ in 0..3 {
        verifier
            .verify(&rs256(Some("rsa-1"), &valid))
            .await
            .expect("RS256");
    }
    assert_eq!(server.fetches(), 1);

    // An unknown kid right after a fetch: rate-limited, no fetch.
    let unknown = es256(Some("ec-1"), &valid);
    assert_eq!(
        verifier.verify(&unknown).await,
        Err(AuthError::UnknownKey { kid: "ec-1".into() })
    );
    assert_eq!(server.fetches(), 1);

    // After the interval: exactly one extra fetch, still unknown, then rate-limited again.
    tokio::time::sleep(Duration::from_millis(350)).await;
    for _ in 0..5 {
        assert_eq!(
            verifier.verify(&unknown).await,
            Err(AuthError::UnknownKey { kid: "ec-1".into() })
        );
    }
    assert_eq!(server.fetches(), 2);

    // The EC key is published: after the interval the refetch picks it up.
    server.set_document(JWKS);
    tokio::time::sleep(Duration::from_millis(350)).await;
    let claims = verifier
        .verify(&unknown)
        .await
        .expect("ES256 after rotation");
    assert_eq!(claims.sub, "alice");
    assert_eq!(server.fetches(), 3);
}

#[tokio::test]
async fn default_interval_rate_limits_unknown_kids() {
    let server = JwksServer::start(JWKS).await;
    let verifier = Verifier::new(config(Some(server.url.clone()))).expect("verifier");
    let valid = claims(json!({}));
    verifier
        .verify(&rs256(Some("rsa-1"), &valid))
        .await
        .expect("RS256");
    for n in 0..20 {
        let token = rs256(Some(&format!("made-up-{n}")), &valid);
        assert!(matches!(
            verifier.verify(&token).await,
            Err(AuthError::UnknownKey { .. })
        ));
    }
    assert_eq!(server.fetches(), 1);
}

#[tokio::test]
async fn unreachable_jwks_is_503_not_401() {
    // Bind and drop a listener: nothing answers on that port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let mut config = config(Some(format!("http://127.0.0.1:{port}/jwks.json")));
    config.hs256_keys.clear();
    let verifier = Verifier::new(config).expect("verifier");
    let error = verifier
        .verify(&rs256(Some("rsa-1"), &claims(json!({}))))
        .await
        .expect_err("no keys");
    assert_eq!(error, AuthError::KeysUnavailable);
    assert_eq!(error.status(), 503);
}

#[test]
fn verifier_config_is_checked() {
    use authorizer::{ConfigError, VerifierConfig};
    assert!(matches!(
        Verifier::new(VerifierConfig::new(ISSUER, AUDIENCE)),
        Err(ConfigError::NoKeys)
    ));
    assert!(matches!(
        Verifier::new(VerifierConfig::new("", AUDIENCE)),
        Err(ConfigError::Invalid { name: "issuer", .. })
    ));
    let mut bad_url = config(Some("ftp://x".into()));
    bad_url.hs256_keys.clear();
    assert!(matches!(
        Verifier::new(bad_url),
        Err(ConfigError::Invalid {
            name: "jwks_url",
            ..
        })
    ));
}

#[tokio::test]
async fn hs256_keys_reload_on_unknown_kid_at_most_once_per_interval() {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    use authorizer::{Hs256Key, Hs256KeyLoader};

    let loads = Arc::new(AtomicUsize::new(0));
    let load: Hs256KeyLoader = {
        let loads = loads.clone();
        Arc::new(move || {
            loads.fetch_add(1, Ordering::SeqCst);
            // The secret now lists the new key k2 first.
            Box::pin(async { Ok(hs_keys()) })
        })
    };
    let mut config = config(None);
    config.hs256_keys = vec![Hs256Key::new("k1", K1.as_bytes()).expect("k1")];
    config.jwks_refresh_interval = Duration::from_millis(300);
    let verifier = Verifier::with_hs256_reload(config, load).expect("verifier");
    let valid = claims(json!({}));

    verifier
        .verify(&hs256(Some("k1"), K1.as_bytes(), &valid))
        .await
        .expect("k1");
    assert_eq!(loads.load(Ordering::SeqCst), 0);
    // k2 is unknown: one reload, then accepted.
    verifier
        .verify(&hs256(Some("k2"), K2.as_bytes(), &valid))
        .await
        .expect("k2 after reload");
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    // Made-up kids within the interval: no further reloads.
    for _ in 0..5 {
        assert_eq!(
            verifier
                .verify(&hs256(Some("zz"), K1.as_bytes(), &valid))
                .await,
            Err(AuthError::UnknownKey { kid: "zz".into() })
        );
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    // A control character or quote in a kid never reaches the description.
    let error = verifier
        .verify(&hs256(Some("a\"b\u{7}"), K1.as_bytes(), &valid))
        .await
        .expect_err("unknown");
    assert_eq!(error, AuthError::UnknownKey { kid: "a?b?".into() });
}

/// jsonwebtoken 10 panics at run time without a crypto backend feature: this fails loudly if
/// `aws_lc_rs` is ever dropped from the workspace dependency.
#[tokio::test]
async fn crypto_backend_verifies_hs256_rs256_and_es256_end_to_end() {
    let server = JwksServer::start(JWKS).await;
    let verifier = Verifier::new(config(Some(server.url.clone()))).expect("verifier");
    let valid = claims(json!({}));
    for token in [
        hs256(Some("k1"), K1.as_bytes(), &valid),
        rs256(Some("rsa-1"), &valid),
        es256(Some("ec-1"), &valid),
    ] {
        let claims = verifier.verify(&token).await.expect("verifies");
        assert_eq!(claims.sub, "alice");
    }
}
