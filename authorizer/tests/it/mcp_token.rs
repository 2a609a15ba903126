//! The `mcp-token` command: minted tokens verify; bad flags and short keys exit 2.

use crate::common;

use std::process::Command;

use authorizer::{Hs256Key, SCOPE_CALL, SCOPE_READ, Verifier, VerifierConfig, mint};

fn mcp_token() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mcp-token"));
    command.env_remove("MCP_SIGNING_KEY");
    command
}

#[tokio::test]
async fn minted_token_verifies_with_the_dev_key() {
    let output = mcp_token()
        .args([
            "--sub",
            "alice",
            "--scope",
            "mcp:read mcp:call",
            "--ttl-secs",
            "60",
        ])
        .output()
        .expect("run");
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("development key"));
    let token = String::from_utf8(output.stdout).expect("utf-8");
    let token = token.trim();

    let mut config = VerifierConfig::new(mint::DEFAULT_ISSUER, mint::DEFAULT_AUDIENCE);
    config.hs256_keys = vec![Hs256Key::new("env", mint::DEV_SIGNING_KEY.as_bytes()).expect("key")];
    let claims = Verifier::new(config)
        .expect("verifier")
        .verify(token)
        .await
        .expect("valid");
    assert_eq!(claims.sub, "alice");
    assert!(claims.scopes.contains(SCOPE_READ) && claims.scopes.contains(SCOPE_CALL));
    assert!(claims.exp <= common::now() + 60);
}

#[tokio::test]
async fn kid_iss_aud_and_key_from_the_environment() {
    let output = mcp_token()
        .env("MCP_SIGNING_KEY", common::K1)
        .args([
            "--sub",
            "bob",
            "--kid",
            "k1",
            "--iss",
            common::ISSUER,
            "--aud",
            common::AUDIENCE,
        ])
        .output()
        .expect("run");
    assert!(output.status.success());
    assert!(output.stderr.is_empty());
    let token = String::from_utf8(output.stdout).expect("utf-8");
    let verifier = Verifier::new(common::config(None)).expect("verifier");
    let claims = verifier.verify(token.trim()).await.expect("valid");
    assert_eq!(claims.sub, "bob");
    assert_eq!(claims.scope_string(), "mcp:read");
}

#[test]
fn bad_flags_and_short_keys_exit_2() {
    let status = |command: &mut Command| command.output().expect("run").status.code();
    assert_eq!(status(mcp_token().args(["--sub", "a", "--bogus"])), Some(2));
    assert_eq!(status(mcp_token().args(["--scope", "mcp:read"])), Some(2));
    assert_eq!(
        status(mcp_token().args(["--sub", "a", "--ttl-secs", "0"])),
        Some(2)
    );
    let output = mcp_token()
        .env("MCP_SIGNING_KEY", "short")
        .args(["--sub", "a"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
    assert!(String::from_utf8_lossy(&output.stderr).contains("at least 32"));
}
