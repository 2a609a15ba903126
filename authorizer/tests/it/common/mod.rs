//! Shared test fixtures: keys, token builders and a tiny JWKS server on 127.0.0.1.
#![allow(dead_code)]

pub mod corpus;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{SystemTime, UNIX_EPOCH},
};

use authorizer::{Hs256Key, VerifierConfig};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

pub const ISSUER: &str = "https://issuer.example.com";
pub const AUDIENCE: &str = "https://api.example.com/mcp";
pub const K1: &str = "k1-secret-0123456789abcdef0123456789abcdef";
pub const K2: &str = "k2-secret-0123456789abcdef0123456789abcdef";
/// A key that was rotated out: no verifier lists it.
pub const K0: &str = "k0-secret-0123456789abcdef0123456789abcdef";

// The signing keys are DER (RSA as PKCS#1, EC as PKCS#8), not PEM: jsonwebtoken's `use_pem`
// would give the test build `time` features the product build does not have, and every crate
// above `time` (the AWS SDK among them) would be compiled once for each.
pub const RSA_PRIVATE_DER: &[u8] = include_bytes!("../../data/rsa_private.der");
pub const RSA_PUBLIC: &str = include_str!("../../data/rsa_public.pem");
pub const EC_PRIVATE_DER: &[u8] = include_bytes!("../../data/ec_private.der");
pub const JWKS: &str = include_str!("../../data/jwks.json");

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Valid claims, with `overrides` applied (a `null` override removes the claim).
pub fn claims(overrides: Value) -> Value {
    let now = now();
    let mut base = json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "iat": now,
        "exp": now + 600,
        "scope": "mcp:read",
    });
    if let (Some(base), Some(overrides)) = (base.as_object_mut(), overrides.as_object()) {
        for (key, value) in overrides {
            if value.is_null() {
                base.remove(key);
            } else {
                base.insert(key.clone(), value.clone());
            }
        }
    }
    base
}

pub fn header(alg: Algorithm, kid: Option<&str>) -> Header {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    header
}

pub fn hs256(kid: Option<&str>, secret: &[u8], claims: &Value) -> String {
    jsonwebtoken::encode(
        &header(Algorithm::HS256, kid),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("HS256 signs")
}

pub fn rs256(kid: Option<&str>, claims: &Value) -> String {
    let key = EncodingKey::from_rsa_der(RSA_PRIVATE_DER);
    jsonwebtoken::encode(&header(Algorithm::RS256, kid), claims, &key).expect("RS256 signs")
}

pub fn es256(kid: Option<&str>, claims: &Value) -> String {
    let key = EncodingKey::from_ec_der(EC_PRIVATE_DER);
    jsonwebtoken::encode(&header(Algorithm::ES256, kid), claims, &key).expect("ES256 signs")
}

pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A token assembled by hand: any header, any payload, any signature.
pub fn raw_token(header: &Value, payload: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        b64(header.to_string().as_bytes()),
        b64(payload.to_string().as_bytes())
    )
}

/// A JWKS server: serves `document` at `/jwks.json` with an optional `Cache-Control`
/// header, or 503 while it is down, and counts requests (answered or not).
pub struct JwksServer {
    pub url: String,
    pub fetches: Arc<AtomicUsize>,
    pub document: Arc<Mutex<String>>,
    pub cache_control: Arc<Mutex<Option<String>>>,
    pub down: Arc<AtomicBool>,
}

impl JwksServer {
    pub async fn start(document: &str) -> Self {
        Self::start_with(document, None).await
    }

    /// A server whose answers carry `Cache-Control: <cache_control>`.
    pub async fn start_with(document: &str, cache_control: Option<&str>) -> Self {
        let fetches = Arc::new(AtomicUsize::new(0));
        let document = Arc::new(Mutex::new(document.to_owned()));
        let cache_control = Arc::new(Mutex::new(cache_control.map(str::to_owned)));
        let down = Arc::new(AtomicBool::new(false));
        let app = {
            let fetches = fetches.clone();
            let document = document.clone();
            let cache_control = cache_control.clone();
            let down = down.clone();
            axum::Router::new().route(
                "/jwks.json",
                axum::routing::get(move || {
                    let fetches = fetches.clone();
                    let document = document.clone();
                    let cache_control = cache_control.clone();
                    let down = down.clone();
                    async move {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        let mut response = axum::http::Response::builder()
                            .header("content-type", "application/json");
                        if down.load(Ordering::SeqCst) {
                            response = response.status(503);
                        }
                        if let Some(value) = cache_control.lock().ok().and_then(|c| c.clone()) {
                            response = response.header("cache-control", value);
                        }
                        let body = document.lock().map(|d| d.clone()).unwrap_or_default();
                        response
                            .body(axum::body::Body::from(body))
                            .expect("response")
                    }
                }),
            )
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url: format!("http://{addr}/jwks.json"),
            fetches,
            document,
            cache_control,
            down,
        }
    }

    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    pub fn set_document(&self, document: &str) {
        if let Ok(mut d) = self.document.lock() {
            *d = document.to_owned();
        }
    }

    /// The `Cache-Control` value of the next answers (`None`: no header).
    pub fn set_cache_control(&self, value: Option<&str>) {
        if let Ok(mut c) = self.cache_control.lock() {
            *c = value.map(str::to_owned);
        }
    }

    /// While down, every request is answered 503 (and still counted).
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }
}

/// HS256 keys `k2` (newest, first) and `k1`.
pub fn hs_keys() -> Vec<Hs256Key> {
    vec![
        Hs256Key::new("k2", K2.as_bytes()).expect("k2"),
        Hs256Key::new("k1", K1.as_bytes()).expect("k1"),
    ]
}

pub fn config(jwks_url: Option<String>) -> VerifierConfig {
    let mut config = VerifierConfig::new(ISSUER, AUDIENCE);
    config.hs256_keys = hs_keys();
    config.jwks_url = jwks_url;
    config
}

/// The JWKS document with only the keys whose `kid` is listed.
pub fn jwks_with(kids: &[&str]) -> String {
    let mut doc: Value = serde_json::from_str(JWKS).expect("fixture JWKS");
    if let Some(keys) = doc.get_mut("keys").and_then(Value::as_array_mut) {
        keys.retain(|k| {
            k.get("kid")
                .and_then(Value::as_str)
                .is_some_and(|kid| kids.contains(&kid))
        });
    }
    doc.to_string()
}
