//! Refuses every request that did not come through the front door (`MCP_ORIGIN_SECRET_HEADER`
//! and `MCP_ORIGIN_SECRET`).
//!
//! Behind CloudFront the Lambda function URL is public (auth type `NONE`): origin access control
//! would need MCP clients to sign their POST bodies (`x-amz-content-sha256`), which none do. So
//! CloudFront adds a header whose value only it and the function know, and this layer answers
//! 403 to any request without it, before routing: a call that skips CloudFront (and its WAF,
//! its TLS policy, its security headers) reaches neither `/mcp` nor the probes. The value is
//! compared in constant time, by its SHA-256, so the answer's timing tells nothing about it.

use std::{fmt, sync::Arc};

use axum::{
    Json,
    extract::{Request, State},
    http::{HeaderName, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde_json::json;
use sha2::{Digest, Sha256};

/// Shortest value accepted, in bytes: as hard to guess as a signing key.
pub const MIN_SECRET_BYTES: usize = 32;

/// Why an origin-secret setting was refused; `config.rs` names the variable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OriginSecretError {
    #[error("expected a header name of letters, digits and -, not one HTTP or the front door sets")]
    HeaderName,
    #[error("is {0} bytes; at least {MIN_SECRET_BYTES} are required")]
    TooShort(usize),
    #[error("expected visible ASCII characters only (it travels as a header value)")]
    NotVisibleAscii,
}

/// The header the front door adds and the digest of the value it carries.
#[derive(Clone, PartialEq, Eq)]
pub struct OriginSecret {
    header: HeaderName,
    digest: [u8; 32],
}

impl fmt::Debug for OriginSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OriginSecret")
            .field("header", &self.header)
            .field("value", &"<redacted>")
            .finish()
    }
}

/// Headers a front door cannot add as its own (CloudFront refuses them as custom origin
/// headers, or they carry the request itself).
const RESERVED: &[&str] = &[
    "authorization",
    "connection",
    "content-length",
    "content-type",
    "host",
    "mcp-protocol-version",
    "mcp-session-id",
    "transfer-encoding",
    "upgrade",
    "via",
];

impl OriginSecret {
    /// The header name and the value it must carry.
    pub fn new(header: &str, value: &str) -> Result<Self, OriginSecretError> {
        let valid_name = !header.is_empty()
            && header
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !RESERVED.contains(&header.to_ascii_lowercase().as_str())
            && !header.to_ascii_lowercase().starts_with("x-amz-");
        let header = HeaderName::try_from(header)
            .ok()
            .filter(|_| valid_name)
            .ok_or(OriginSecretError::HeaderName)?;
        if !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(OriginSecretError::NotVisibleAscii);
        }
        if value.len() < MIN_SECRET_BYTES {
            return Err(OriginSecretError::TooShort(value.len()));
        }
        Ok(Self {
            header,
            digest: Sha256::digest(value.as_bytes()).into(),
        })
    }

    /// The header the front door adds.
    pub fn header(&self) -> &HeaderName {
        &self.header
    }

    /// Whether `request` carries the value: one header of that name, equal in constant time.
    fn admits(&self, request: &Request) -> bool {
        let mut values = request.headers().get_all(&self.header).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return false;
        };
        let given: [u8; 32] = Sha256::digest(value.as_bytes()).into();
        given
            .iter()
            .zip(self.digest.iter())
            .fold(0u8, |differ, (a, b)| differ | (a ^ b))
            == 0
    }
}

/// The middleware: 403 with a JSON error for a request without the front door's header.
pub async fn require(
    State(secret): State<Arc<OriginSecret>>,
    request: Request,
    next: Next,
) -> Response {
    if secret.admits(&request) {
        return next.run(request).await;
    }
    // Debug, not warn: anyone may call the public URL, and each refusal must stay cheap.
    tracing::debug!(header = %secret.header, "request without the front door's header refused");
    (
        StatusCode::FORBIDDEN,
        Json(json!({
            "error": "forbidden",
            "error_description": "this endpoint is served only through its front door",
        })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use axum::{Router, body::Body, middleware, routing::get};
    use tower::ServiceExt;

    use super::*;
    use crate::config::{Config, Flags, Profile};

    const VALUE: &str = "0123456789abcdefghijklmnopqrstuvwxyzABCD";

    fn lambda(extra: &[(&str, &str)]) -> Result<Config, crate::config::ConfigError> {
        let env: HashMap<String, String> = [
            ("AWS_LAMBDA_FUNCTION_NAME", "mcp-dev"),
            ("MCP_STORE_URL", "dynamodb://mcp-dev"),
            ("MCP_FILES_URL", "s3://mcp-dev-files"),
            ("MCP_SECRET_ID", "mcp/dev/keys"),
            ("AWS_REGION", "eu-west-1"),
            ("MCP_AUTH_ISSUER", "https://auth.example.com"),
            ("MCP_RESOURCE_URL", "https://mcp.example.com/mcp"),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Config::for_profile(Profile::Lambda, Flags::default(), &env)
    }

    #[test]
    fn both_variables_together_switch_it_on() {
        assert_eq!(lambda(&[]).expect("off").origin_secret, None);
        let on = lambda(&[
            ("MCP_ORIGIN_SECRET_HEADER", "X-Origin-Verify"),
            ("MCP_ORIGIN_SECRET", VALUE),
        ])
        .expect("on");
        let secret = on.origin_secret.expect("configured");
        assert_eq!(secret.header().as_str(), "x-origin-verify");
        assert!(
            !format!("{secret:?}").contains(VALUE),
            "the value is never printed"
        );
    }

    #[test]
    fn malformed_or_half_settings_stop_the_start_naming_the_variable() {
        let short = "too-short-a-value";
        // The variables set, then the variable, value and reason of the refusal.
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str, &'a str);
        let cases: [Case; 7] = [
            (
                &[("MCP_ORIGIN_SECRET_HEADER", "X-Origin-Verify")],
                "MCP_ORIGIN_SECRET",
                "",
                "is required with MCP_ORIGIN_SECRET_HEADER: the value the front door sends",
            ),
            (
                &[
                    ("MCP_ORIGIN_SECRET_HEADER", "X-Origin-Verify"),
                    ("MCP_ORIGIN_SECRET", ""),
                ],
                "MCP_ORIGIN_SECRET",
                "",
                "is required with MCP_ORIGIN_SECRET_HEADER: the value the front door sends",
            ),
            (
                &[("MCP_ORIGIN_SECRET", VALUE)],
                "MCP_ORIGIN_SECRET_HEADER",
                "",
                "is required with MCP_ORIGIN_SECRET: the header the front door adds",
            ),
            (
                &[
                    ("MCP_ORIGIN_SECRET_HEADER", "X Origin"),
                    ("MCP_ORIGIN_SECRET", VALUE),
                ],
                "MCP_ORIGIN_SECRET_HEADER",
                "X Origin",
                "expected a header name of letters, digits and -, not one HTTP or the front door sets",
            ),
            (
                &[
                    ("MCP_ORIGIN_SECRET_HEADER", "Authorization"),
                    ("MCP_ORIGIN_SECRET", VALUE),
                ],
                "MCP_ORIGIN_SECRET_HEADER",
                "Authorization",
                "expected a header name of letters, digits and -, not one HTTP or the front door sets",
            ),
            (
                &[
                    ("MCP_ORIGIN_SECRET_HEADER", "X-Origin-Verify"),
                    ("MCP_ORIGIN_SECRET", short),
                ],
                "MCP_ORIGIN_SECRET",
                "<redacted>",
                "is 17 bytes; at least 32 are required",
            ),
            (
                &[
                    ("MCP_ORIGIN_SECRET_HEADER", "X-Origin-Verify"),
                    ("MCP_ORIGIN_SECRET", "0123456789 abcdefghijklmnopqrstuvwxyz"),
                ],
                "MCP_ORIGIN_SECRET",
                "<redacted>",
                "expected visible ASCII characters only (it travels as a header value)",
            ),
        ];
        for (vars, var, value, reason) in cases {
            let error = lambda(vars).expect_err(var);
            assert_eq!(
                (error.var, error.value.as_str(), error.reason.as_str()),
                (var, value, reason)
            );
            assert!(!error.to_string().contains(short));
        }
        let error = lambda(&[
            ("MCP_ORIGIN_SECRET_HEADER", "x-amz-cf-id"),
            ("MCP_ORIGIN_SECRET", VALUE),
        ])
        .expect_err("an x-amz- header");
        assert_eq!(error.var, "MCP_ORIGIN_SECRET_HEADER");
    }

    async fn status(headers: &[(&str, &str)]) -> (StatusCode, String) {
        let secret = Arc::new(OriginSecret::new("X-Origin-Verify", VALUE).expect("valid"));
        let router = Router::new()
            .route("/health/live", get(|| async { "alive" }))
            .layer(middleware::from_fn_with_state(secret, require));
        let mut request = axum::http::Request::get("/health/live");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = router
            .oneshot(request.body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn only_the_exact_value_in_one_header_passes() {
        assert_eq!(
            status(&[("x-origin-verify", VALUE)]).await,
            (StatusCode::OK, "alive".to_owned())
        );
        let refused = (
            StatusCode::FORBIDDEN,
            r#"{"error":"forbidden","error_description":"this endpoint is served only through its front door"}"#
                .to_owned(),
        );
        let longer = format!("{VALUE}x");
        for headers in [
            vec![],
            vec![("x-origin-verify", "")],
            vec![("x-origin-verify", &VALUE[..VALUE.len() - 1])],
            vec![("x-origin-verify", longer.as_str())],
            vec![(
                "x-origin-verify",
                "0123456789abcdefghijklmnopqrstuvwxyzABCE",
            )],
            vec![("x-other-header", VALUE)],
            // A second copy makes the request ambiguous: refused, whichever comes first.
            vec![("x-origin-verify", VALUE), ("x-origin-verify", "spoofed")],
        ] {
            assert_eq!(status(&headers).await, refused, "{headers:?}");
        }
    }
}
