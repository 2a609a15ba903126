//! What the workspace's integration tests share across crates: whether the services a test needs
//! (moto, PostgreSQL) are there, and secrets on moto's Secrets Manager.
//!
//! A test that needs a service asks for it first ([`require_moto`], or [`skip`] with a service it
//! could not reach) and returns when told to: a plain `cargo test` then passes without the
//! service and prints which tests it skipped and why. `scripts/test.sh` starts every service
//! and sets [`REQUIRE_SERVICES`], under which a missing service fails the test instead, so no
//! test is skipped there.

use std::io::Write as _;

use aws_sdk_secretsmanager::{
    Client,
    config::{BehaviorVersion, Credentials, Region},
    error::DisplayErrorContext,
};

/// Set to `1`: a test whose service is missing fails instead of being skipped.
pub const REQUIRE_SERVICES: &str = "MCP_TEST_REQUIRE_SERVICES";

/// The variable naming the AWS emulator (a moto server: DynamoDB, S3, Secrets Manager).
pub const AWS_ENDPOINT: &str = "MCP_TEST_AWS_ENDPOINT";

/// Records that the running test cannot reach `service` (e.g. "PostgreSQL at
/// MCP_TEST_POSTGRES_URL"): prints that it is skipped, on stderr past the test harness's
/// capture so a passing run shows it; under [`REQUIRE_SERVICES`] it panics instead.
pub fn skip(service: &str) {
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    if std::env::var(REQUIRE_SERVICES).is_ok_and(|value| value == "1") {
        panic!("{test} needs {service}, and {REQUIRE_SERVICES}=1 forbids skipping it");
    }
    // Written to the stream itself, not with `eprintln!`, which the harness captures.
    let _ = writeln!(
        std::io::stderr(),
        "skipped: {test}: needs {service} (scripts/test.sh starts one)"
    );
}

fn aws_endpoint() -> Option<String> {
    std::env::var(AWS_ENDPOINT)
        .ok()
        .filter(|endpoint| !endpoint.is_empty())
}

/// The moto endpoint, or `None` once the test is recorded as skipped (see [`skip`]).
pub fn require_moto() -> Option<String> {
    let endpoint = aws_endpoint();
    if endpoint.is_none() {
        skip("moto at MCP_TEST_AWS_ENDPOINT");
    }
    endpoint
}

/// The moto endpoint, for helpers of a test that asked [`require_moto`] first.
pub fn moto_endpoint() -> String {
    aws_endpoint().unwrap_or_else(|| {
        panic!(
            "{AWS_ENDPOINT} is not set: run the tests through scripts/test.sh, or start \
             `moto_server -H 127.0.0.1 -p 5005` and set {AWS_ENDPOINT}=http://127.0.0.1:5005"
        )
    })
}

/// A Secrets Manager client for moto (us-east-1, static test credentials).
pub fn secrets_client() -> Client {
    let config = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(moto_endpoint())
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .build();
    Client::from_conf(config)
}

/// A new secret with a name unique to this run, holding `text`; returns its name.
pub async fn create_secret(client: &Client, text: &str) -> String {
    let name = format!("mcp/test/{}", uuid::Uuid::new_v4().simple());
    client
        .create_secret()
        .name(&name)
        .secret_string(text)
        .send()
        .await
        .unwrap_or_else(|error| panic!("create_secret on moto: {}", DisplayErrorContext(&error)));
    name
}
