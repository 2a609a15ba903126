//! The bad-token corpus (and the good tokens beside it), shared by the verifier's own test and
//! the MCP server's, so both refuse or accept exactly the same tokens.

use authorizer::{AuthError, SCOPE_CALL, SCOPE_READ, SCOPE_WRITE};
use serde_json::json;

use super::*;

pub enum Expect {
    /// Refused with this error and status.
    Err(AuthError, u16),
    /// Accepted with this `sub` and these scopes.
    Ok(&'static str, &'static [&'static str]),
    /// Accepted, but lacks this scope: 403.
    Forbidden(&'static str),
}

pub struct Case {
    pub name: &'static str,
    pub header: Option<String>,
    pub expect: Expect,
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

/// The cases, against a verifier configured as [`super::config`] with the fixture JWKS.
pub fn cases() -> Vec<Case> {
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
