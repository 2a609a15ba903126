//! The bad-token corpus (and the good tokens beside it): each case asserts the exact
//! [`AuthError`] variant and HTTP status, or the verified claims.

mod common;

use std::time::Duration;

use authorizer::{AuthError, SCOPE_CALL, SCOPE_READ, SCOPE_WRITE, Verifier};
use common::*;
use serde_json::json;

enum Expect {
    /// Refused with this error and status.
    Err(AuthError, u16),
    /// Accepted with this `sub` and these scopes.
    Ok(&'static str, &'static [&'static str]),
    /// Accepted, but lacks this scope: 403.
    Forbidden(&'static str),
}

struct Case {
    name: &'static str,
    header: Option<String>,
    expect: Expect,
}

fn bearer(token: &str) -> Option<String> {
    Some(format!("Bearer {token}"))
}

fn err(error: AuthError) -> Expect {
    let status = error.status();
    assert_eq!(
        status,
        if matches!(error, AuthError::KeysUnavailable) {
            503
        } else {
            401
        },
        "{error:?}"
    );
    Expect::Err(error, status)
}

fn claim(name: &str) -> String {
    name.to_owned()
}

fn cases() -> Vec<Case> {
    let now = now();
    let valid = claims(json!({}));
    let k1 = |c: &serde_json::Value| hs256(Some("k1"), K1.as_bytes(), c);
    let mut tampered = k1(&valid);
    {
        // Swap the payload for one naming another subject; keep header and signature.
        let parts: Vec<&str> = tampered.split('.').collect();
        let payload = b64(claims(json!({"sub": "mallory"})).to_string().as_bytes());
        tampered = format!("{}.{payload}.{}", parts[0], parts[2]);
    }
    let oversize = k1(&claims(json!({"pad": "x".repeat(9000)})));
    vec![
        Case {
            name: "missing header",
            header: None,
            expect: err(AuthError::MissingAuthorization),
        },
        Case {
            name: "blank header",
            header: Some("   ".into()),
            expect: err(AuthError::MissingAuthorization),
        },
        Case {
            name: "Basic scheme",
            header: Some("Basic YWxpY2U6cHc=".into()),
            expect: err(AuthError::WrongScheme),
        },
        Case {
            name: "token without scheme",
            header: Some(k1(&valid)),
            expect: err(AuthError::WrongScheme),
        },
        Case {
            name: "Bearer with empty token",
            header: Some("Bearer ".into()),
            expect: err(AuthError::EmptyToken),
        },
        Case {
            name: "Bearer alone",
            header: Some("Bearer".into()),
            expect: err(AuthError::EmptyToken),
        },
        Case {
            name: "two spaces",
            header: Some(format!("Bearer  {}", k1(&valid))),
            expect: err(AuthError::MalformedAuthorization),
        },
        Case {
            name: "trailing junk after token",
            header: Some(format!("Bearer {} x", k1(&valid))),
            expect: err(AuthError::MalformedAuthorization),
        },
        Case {
            name: "garbage",
            header: bearer("garbage"),
            expect: err(AuthError::Malformed),
        },
        Case {
            name: "three dots",
            header: bearer("..."),
            expect: err(AuthError::Malformed),
        },
        Case {
            name: "two dots, empty segments",
            header: bearer(".."),
            expect: err(AuthError::BadEncoding),
        },
        Case {
            name: "bad base64 header segment",
            header: bearer("!!!.e30.c2ln"),
            expect: err(AuthError::BadEncoding),
        },
        Case {
            name: "bad base64 signature segment",
            header: bearer(&format!("{}!!", k1(&valid))),
            expect: err(AuthError::BadEncoding),
        },
        Case {
            name: "alg none",
            header: bearer(&raw_token(
                &json!({"alg": "none", "typ": "JWT"}),
                &valid,
                "",
            )),
            expect: err(AuthError::UnsupportedAlgorithm { alg: "none".into() }),
        },
        Case {
            name: "alg HS384",
            header: bearer(&raw_token(
                &json!({"alg": "HS384", "kid": "k1"}),
                &valid,
                "c2ln",
            )),
            expect: err(AuthError::UnsupportedAlgorithm {
                alg: "HS384".into(),
            }),
        },
        Case {
            name: "HS/RS confusion: HS256 keyed with the RSA public key, kid of the RSA key",
            header: bearer(&hs256(Some("rsa-1"), RSA_PUBLIC.as_bytes(), &valid)),
            expect: err(AuthError::AlgorithmMismatch),
        },
        Case {
            name: "HS/RS confusion without kid: tried against the first HS key only",
            header: bearer(&hs256(None, RSA_PUBLIC.as_bytes(), &valid)),
            expect: err(AuthError::BadSignature),
        },
        Case {
            name: "RS256 header naming an HS key",
            header: bearer(&rs256(Some("k1"), &valid)),
            expect: err(AuthError::AlgorithmMismatch),
        },
        Case {
            name: "ES256 header naming the RSA key",
            header: bearer(&es256(Some("rsa-1"), &valid)),
            expect: err(AuthError::AlgorithmMismatch),
        },
        Case {
            name: "RS256 without kid",
            header: bearer(&rs256(None, &valid)),
            expect: err(AuthError::MissingKeyId),
        },
        Case {
            name: "wrong signature",
            header: bearer(&hs256(
                Some("k1"),
                b"another-secret-0123456789abcdef0123456789",
                &valid,
            )),
            expect: err(AuthError::BadSignature),
        },
        Case {
            name: "tampered payload",
            header: bearer(&tampered),
            expect: err(AuthError::BadSignature),
        },
        Case {
            name: "expired",
            header: bearer(&k1(&claims(json!({"exp": now - 120})))),
            expect: err(AuthError::Expired),
        },
        Case {
            name: "not yet valid (nbf)",
            header: bearer(&k1(&claims(json!({"nbf": now + 120})))),
            expect: err(AuthError::NotYetValid),
        },
        Case {
            name: "exp within leeway accepted",
            header: bearer(&k1(&claims(json!({"exp": now - 10})))),
            expect: Expect::Ok("alice", &[SCOPE_READ]),
        },
        Case {
            name: "nbf within leeway accepted",
            header: bearer(&k1(&claims(json!({"nbf": now + 10})))),
            expect: Expect::Ok("alice", &[SCOPE_READ]),
        },
        Case {
            name: "wrong iss",
            header: bearer(&k1(&claims(json!({"iss": "https://evil.example.com"})))),
            expect: err(AuthError::WrongIssuer),
        },
        Case {
            name: "missing iss",
            header: bearer(&k1(&claims(json!({"iss": null})))),
            expect: err(AuthError::MissingClaim {
                claim: claim("iss"),
            }),
        },
        Case {
            name: "wrong aud",
            header: bearer(&k1(&claims(
                json!({"aud": "https://other.example.com/mcp"}),
            ))),
            expect: err(AuthError::WrongAudience),
        },
        Case {
            name: "missing aud",
            header: bearer(&k1(&claims(json!({"aud": null})))),
            expect: err(AuthError::MissingClaim {
                claim: claim("aud"),
            }),
        },
        Case {
            name: "aud array containing this resource accepted",
            header: bearer(&k1(&claims(
                json!({"aud": [AUDIENCE, "https://other.example.com"]}),
            ))),
            expect: Expect::Ok("alice", &[SCOPE_READ]),
        },
        Case {
            name: "missing sub",
            header: bearer(&k1(&claims(json!({"sub": null})))),
            expect: err(AuthError::MissingClaim {
                claim: claim("sub"),
            }),
        },
        Case {
            name: "empty sub",
            header: bearer(&k1(&claims(json!({"sub": ""})))),
            expect: err(AuthError::InvalidClaim {
                claim: claim("sub"),
            }),
        },
        Case {
            name: "sub with a control character",
            header: bearer(&k1(&claims(json!({"sub": "ali\nce"})))),
            expect: err(AuthError::InvalidClaim {
                claim: claim("sub"),
            }),
        },
        Case {
            name: "sub longer than 256 bytes",
            header: bearer(&k1(&claims(json!({"sub": "a".repeat(257)})))),
            expect: err(AuthError::InvalidClaim {
                claim: claim("sub"),
            }),
        },
        Case {
            name: "missing exp",
            header: bearer(&k1(&claims(json!({"exp": null})))),
            expect: err(AuthError::MissingClaim {
                claim: claim("exp"),
            }),
        },
        Case {
            // jsonwebtoken treats a non-numeric `exp` as absent.
            name: "exp not a number",
            header: bearer(&k1(&claims(json!({"exp": "soon"})))),
            expect: err(AuthError::MissingClaim {
                claim: claim("exp"),
            }),
        },
        Case {
            name: "scope not a string",
            header: bearer(&k1(&claims(json!({"scope": 7})))),
            expect: err(AuthError::InvalidClaim {
                claim: claim("scope"),
            }),
        },
        Case {
            name: "unknown kid",
            header: bearer(&hs256(Some("nope"), K1.as_bytes(), &valid)),
            expect: err(AuthError::UnknownKey { kid: "nope".into() }),
        },
        Case {
            name: "rotated-out key",
            header: bearer(&hs256(Some("k0"), K0.as_bytes(), &valid)),
            expect: err(AuthError::UnknownKey { kid: "k0".into() }),
        },
        Case {
            name: "rotated-out key without kid (not the first key)",
            header: bearer(&hs256(None, K1.as_bytes(), &valid)),
            expect: err(AuthError::BadSignature),
        },
        Case {
            name: "oversize token",
            header: bearer(&oversize),
            expect: err(AuthError::TokenTooLarge { max: 8 * 1024 }),
        },
        Case {
            name: "lowercase bearer accepted",
            header: Some(format!("bearer {}", k1(&valid))),
            expect: Expect::Ok("alice", &[SCOPE_READ]),
        },
        Case {
            name: "BEARER accepted",
            header: Some(format!("BEARER {}", k1(&valid))),
            expect: Expect::Ok("alice", &[SCOPE_READ]),
        },
        Case {
            name: "rotation: old key k1 accepted",
            header: bearer(&k1(&claims(json!({"scope": "mcp:read mcp:call"})))),
            expect: Expect::Ok("alice", &[SCOPE_CALL, SCOPE_READ]),
        },
        Case {
            name: "rotation: new key k2 accepted",
            header: bearer(&hs256(Some("k2"), K2.as_bytes(), &valid)),
            expect: Expect::Ok("alice", &[SCOPE_READ]),
        },
        Case {
            name: "no kid: first key (k2) accepted",
            header: bearer(&hs256(None, K2.as_bytes(), &valid)),
            expect: Expect::Ok("alice", &[SCOPE_READ]),
        },
        Case {
            name: "RS256 via JWKS accepted",
            header: bearer(&rs256(Some("rsa-1"), &claims(json!({"sub": "bob"})))),
            expect: Expect::Ok("bob", &[SCOPE_READ]),
        },
        Case {
            name: "ES256 via JWKS accepted",
            header: bearer(&es256(Some("ec-1"), &claims(json!({"sub": "carol"})))),
            expect: Expect::Ok("carol", &[SCOPE_READ]),
        },
        Case {
            name: "scp array form accepted",
            header: bearer(&k1(&claims(
                json!({"scope": null, "scp": ["mcp:read", "mcp:write"]}),
            ))),
            expect: Expect::Ok("alice", &[SCOPE_READ, SCOPE_WRITE]),
        },
        Case {
            name: "read-only token calling a tool: 403",
            header: bearer(&k1(&valid)),
            expect: Expect::Forbidden(SCOPE_CALL),
        },
        Case {
            name: "read-only token writing: 403",
            header: bearer(&k1(&valid)),
            expect: Expect::Forbidden(SCOPE_WRITE),
        },
        Case {
            name: "no scope at all: 403 for read",
            header: bearer(&k1(&claims(json!({"scope": null})))),
            expect: Expect::Forbidden(SCOPE_READ),
        },
    ]
}

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
