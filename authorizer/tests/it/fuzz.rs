//! Property tests: arbitrary headers and mutated valid tokens never panic the parser or the
//! verifier, and a mutated token is never accepted.

use crate::common;

use authorizer::{Verifier, parse_authorization};
use common::*;
use proptest::prelude::*;
use serde_json::json;

const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn verifier() -> Verifier {
    Verifier::new(config(None)).expect("verifier")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_headers_never_panic(header in prop_oneof![
        any::<String>(),
        "[Bb][Ee][Aa][Rr][Ee][Rr] [A-Za-z0-9._~+/=-]{0,300}",
        "Bearer [A-Za-z0-9_-]{0,40}\\.[A-Za-z0-9_-]{0,80}\\.[A-Za-z0-9_-]{0,60}",
    ]) {
        let rt = runtime();
        let v = verifier();
        if let Ok(token) = parse_authorization(Some(&header)) {
            prop_assert!(!token.is_empty());
            // Nothing random is a valid signed token.
            prop_assert!(rt.block_on(v.verify(token)).is_err());
        }
        prop_assert!(rt.block_on(v.verify(&header)).is_err());
    }

    #[test]
    fn mutated_tokens_are_never_accepted(
        kid in prop_oneof![Just(Some("k1")), Just(Some("k2")), Just(None)],
        position in any::<prop::sample::Index>(),
        replacement in any::<prop::sample::Index>(),
    ) {
        let secret = match kid { Some("k1") => K1, _ => K2 };
        let token = hs256(kid, secret.as_bytes(), &claims(json!({})));
        let rt = runtime();
        let v = verifier();
        prop_assert!(rt.block_on(v.verify(&token)).is_ok());

        let mut bytes = token.into_bytes();
        let at = position.index(bytes.len());
        let mut with = B64URL[replacement.index(B64URL.len())];
        if with == bytes[at] {
            with = if with == b'A' { b'B' } else { b'A' };
        }
        bytes[at] = with;
        let mutated = String::from_utf8(bytes).expect("ascii");
        let header = format!("Bearer {mutated}");
        let result = rt.block_on(v.verify_authorization(Some(&header)));
        prop_assert!(result.is_err(), "mutated token accepted: {mutated}");
    }
}
