//! `mcp-token`: mints an HS256 bearer token for a local MCP server and prints it on stdout.

use std::{process::ExitCode, time::Duration};

use authorizer::mint::{self, DEFAULT_AUDIENCE, DEFAULT_ISSUER, DEV_SIGNING_KEY};
use clap::Parser;

/// Mints an HS256 bearer token (key from MCP_SIGNING_KEY, else the development key).
#[derive(Parser)]
#[command(name = "mcp-token", version)]
struct Args {
    /// The subject (caller) the token names.
    #[arg(long)]
    sub: String,
    /// Space-separated scopes, e.g. "mcp:read mcp:call".
    #[arg(long, default_value = "mcp:read")]
    scope: String,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=31_622_400))]
    ttl_secs: u64,
    /// Key id placed in the header. Without it the token has no `kid` and verifiers try their
    /// first (active) key, which is what a single `MCP_SIGNING_KEY` needs.
    #[arg(long)]
    kid: Option<String>,
    /// Issuer (`iss`).
    #[arg(long, default_value = DEFAULT_ISSUER)]
    iss: String,
    /// Audience (`aud`): the MCP endpoint's URL.
    #[arg(long, default_value = DEFAULT_AUDIENCE)]
    aud: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let secret = match std::env::var("MCP_SIGNING_KEY") {
        Ok(key) if !key.is_empty() => key,
        _ => {
            eprintln!(
                "warning: MCP_SIGNING_KEY is not set; signing with the development key (not for production)"
            );
            DEV_SIGNING_KEY.to_owned()
        }
    };
    let request = mint::MintRequest {
        sub: args.sub,
        scope: args.scope,
        ttl: Duration::from_secs(args.ttl_secs),
        kid: args.kid,
        issuer: args.iss,
        audience: args.aud,
    };
    match mint::mint(&request, secret.as_bytes()) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}
