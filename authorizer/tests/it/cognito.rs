//! Cognito access tokens: what the verifier accepts and the exact refusal for each kind of
//! token a Cognito pool (or another one) can issue.

use crate::common;

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use authorizer::{
    AuthError, Verifier, VerifierConfig,
    cognito::{ClientLookup, CognitoRules},
};
use common::{ISSUER, JwksServer, claims, jwks_with, rs256};
use serde_json::{Value, json};

const RESOURCE: &str = "https://api.example.com/prod/mcp";
const STACK_CLIENT: &str = "stackclient1";

/// A Cognito-shaped access token of `client_id` with `scope`, `overrides` on top.
fn access_token(client_id: &str, scope: &str, overrides: Value) -> String {
    let mut claims = claims(json!({
        "aud": null,
        "sub": "3f0e6a1c-user",
        "token_use": "access",
        "client_id": client_id,
        "scope": scope,
        "username": "alice",
    }));
    if let (Some(base), Some(overrides)) = (claims.as_object_mut(), overrides.as_object()) {
        for (key, value) in overrides {
            if value.is_null() {
                base.remove(key);
            } else {
                base.insert(key.clone(), value.clone());
            }
        }
    }
    rs256(Some("rsa-1"), &claims)
}

fn all_scopes() -> String {
    ["mcp:read", "mcp:call", "mcp:write"]
        .map(|scope| format!("{RESOURCE}/{scope}"))
        .join(" ")
}

/// A lookup that says yes to `registered` and counts its calls.
fn lookup(registered: &'static str, calls: Arc<AtomicUsize>) -> ClientLookup {
    Arc::new(move |client_id| {
        calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move { Ok(client_id == registered) })
    })
}

async fn verifier(registered_clients: Option<ClientLookup>) -> (Verifier, JwksServer) {
    let jwks = JwksServer::start(&jwks_with(&["rsa-1"])).await;
    let mut config = VerifierConfig::new(ISSUER, RESOURCE);
    config.jwks_url = Some(jwks.url.clone());
    config.cognito = Some(CognitoRules {
        resource_identifier: RESOURCE.into(),
        client_ids: vec![STACK_CLIENT.into()],
        registered_clients,
    });
    (Verifier::new(config).expect("valid config"), jwks)
}

#[tokio::test]
async fn an_access_token_of_the_stack_client_grants_its_prefixed_scopes() {
    let (verifier, _jwks) = verifier(None).await;
    let scope = format!("openid {} https://other.example/mcp:write", all_scopes());
    let claims = verifier
        .verify(&access_token(STACK_CLIENT, &scope, json!({})))
        .await
        .expect("accepted");
    assert_eq!(claims.sub, "3f0e6a1c-user");
    assert_eq!(claims.scope_string(), "mcp:call mcp:read mcp:write");
}

#[tokio::test]
async fn each_kind_of_foreign_token_gets_its_exact_refusal() {
    let (verifier, _jwks) = verifier(None).await;
    let cases = [
        // An ID token: `aud` is the client, `token_use` is `id`.
        (
            access_token(
                STACK_CLIENT,
                "",
                json!({"token_use": "id", "client_id": null, "aud": STACK_CLIENT}),
            ),
            AuthError::NotAnAccessToken,
        ),
        (
            access_token(STACK_CLIENT, "", json!({"token_use": null})),
            AuthError::MissingClaim {
                claim: "token_use".into(),
            },
        ),
        (
            access_token(
                STACK_CLIENT,
                "",
                json!({"iss": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Other"}),
            ),
            AuthError::WrongIssuer,
        ),
        (
            access_token("someoneelse", &all_scopes(), json!({})),
            AuthError::UnknownClient,
        ),
        (
            access_token(STACK_CLIENT, &all_scopes(), json!({"client_id": null})),
            AuthError::MissingClaim {
                claim: "client_id".into(),
            },
        ),
        (
            access_token(STACK_CLIENT, &all_scopes(), json!({"client_id": "a/b"})),
            AuthError::InvalidClaim {
                claim: "client_id".into(),
            },
        ),
        (
            access_token(
                STACK_CLIENT,
                &all_scopes(),
                json!({"aud": "https://other.example/mcp"}),
            ),
            AuthError::WrongAudience,
        ),
    ];
    for (token, expected) in cases {
        assert_eq!(
            verifier.verify(&token).await,
            Err(expected.clone()),
            "{expected}"
        );
    }
    // A token bound to this resource (managed login with `resource`) is fine.
    let bound = access_token(STACK_CLIENT, &all_scopes(), json!({"aud": RESOURCE}));
    assert!(verifier.verify(&bound).await.is_ok());
}

#[tokio::test]
async fn a_scopeless_access_token_is_valid_but_grants_nothing() {
    let (verifier, _jwks) = verifier(None).await;
    // What a direct sign-in (InitiateAuth) gives: only Cognito's own scope.
    let token = access_token(STACK_CLIENT, "aws.cognito.signin.user.admin", json!({}));
    let claims = verifier.verify(&token).await.expect("valid");
    assert!(claims.scopes.is_empty());
    assert_eq!(
        claims.require("mcp:read"),
        Err(AuthError::InsufficientScope {
            required: "mcp:read".into()
        })
    );
}

#[tokio::test]
async fn registered_clients_are_asked_about_once_and_remembered() {
    let calls = Arc::new(AtomicUsize::new(0));
    let (verifier, _jwks) = verifier(Some(lookup("registered1", calls.clone()))).await;
    for _ in 0..3 {
        verifier
            .verify(&access_token("registered1", &all_scopes(), json!({})))
            .await
            .expect("a registered client");
        assert_eq!(
            verifier
                .verify(&access_token("stranger1", &all_scopes(), json!({})))
                .await,
            Err(AuthError::UnknownClient)
        );
    }
    // The stack's own client is never looked up; each other client once.
    verifier
        .verify(&access_token(STACK_CLIENT, &all_scopes(), json!({})))
        .await
        .expect("the stack client");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_pool_that_cannot_be_asked_is_unavailable_not_a_refusal() {
    let failing: ClientLookup =
        Arc::new(|_| Box::pin(async { Err("connection refused".to_owned()) }));
    let (verifier, _jwks) = verifier(Some(failing)).await;
    assert_eq!(
        verifier
            .verify(&access_token("registered1", &all_scopes(), json!({})))
            .await,
        Err(AuthError::KeysUnavailable)
    );
}

#[test]
fn cognito_refusals_are_401_invalid_token() {
    for error in [AuthError::NotAnAccessToken, AuthError::UnknownClient] {
        assert_eq!(
            (error.status(), error.error_code()),
            (401, Some("invalid_token"))
        );
    }
}
