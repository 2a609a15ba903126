//! HS256 keys from the Secrets Manager secret text shared with the MCP function:
//! `{"keys": [{"kid": "…", "secret": "…at least 32 bytes…"}]}`, newest first, or one key
//! alone, `{"kid": "…", "secret": "…"}` — the shape CloudFormation's generated secret has
//! before the first rotation turns it into a list.

use serde::Deserialize;

use crate::ConfigError;

/// The shortest HS256 secret accepted (RFC 7518 section 3.2: at least the hash size).
pub const MIN_HS256_KEY_BYTES: usize = 32;

/// One HS256 key and its id. `Debug` redacts the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Hs256Key {
    pub kid: String,
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for Hs256Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hs256Key")
            .field("kid", &self.kid)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl Hs256Key {
    /// Checks the key id (printable ASCII, 1–64 bytes) and the secret length.
    pub fn new(kid: impl Into<String>, secret: impl Into<Vec<u8>>) -> Result<Self, ConfigError> {
        let kid = kid.into();
        let secret = secret.into();
        if !kid_is_valid(&kid) {
            return Err(ConfigError::BadKid(kid));
        }
        if secret.len() < MIN_HS256_KEY_BYTES {
            return Err(ConfigError::KeyTooShort {
                kid,
                len: secret.len(),
                min: MIN_HS256_KEY_BYTES,
            });
        }
        Ok(Self { kid, secret })
    }
}

fn kid_is_valid(kid: &str) -> bool {
    !kid.is_empty() && kid.len() <= 64 && kid.bytes().all(|b| b.is_ascii_graphic())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretDocument {
    keys: Vec<SecretEntry>,
}

impl SecretDocument {
    fn parse(text: &str) -> Result<Self, ConfigError> {
        let list_error = match serde_json::from_str::<SecretDocument>(text) {
            Ok(document) => return Ok(document),
            Err(error) => error,
        };
        match serde_json::from_str::<SecretEntry>(text) {
            Ok(single) => Ok(SecretDocument { keys: vec![single] }),
            Err(_) => Err(ConfigError::SecretFormat(format!(
                "expected {{\"keys\":[{{\"kid\":…,\"secret\":…}},…]}} or one {{\"kid\":…,\"secret\":…}}: {list_error}"
            ))),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretEntry {
    kid: String,
    secret: String,
}

/// Parses the secret's JSON text into keys, newest first; rejects an empty list, repeated or
/// unprintable key ids and secrets shorter than [`MIN_HS256_KEY_BYTES`].
pub fn hs256_keys_from_secret_json(text: &str) -> Result<Vec<Hs256Key>, ConfigError> {
    let document = SecretDocument::parse(text)?;
    if document.keys.is_empty() {
        return Err(ConfigError::NoKeys);
    }
    let mut keys: Vec<Hs256Key> = Vec::with_capacity(document.keys.len());
    for entry in document.keys {
        if keys.iter().any(|key| key.kid == entry.kid) {
            return Err(ConfigError::BadKid(entry.kid));
        }
        keys.push(Hs256Key::new(entry.kid, entry.secret.into_bytes())?);
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_checks_the_secret() {
        let long = "k".repeat(32);
        let text = format!(
            r#"{{"keys":[{{"kid":"a","secret":"{long}"}},{{"kid":"b","secret":"{long}"}}]}}"#
        );
        let keys = hs256_keys_from_secret_json(&text).expect("valid");
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].kid, "a");
        assert!(!format!("{keys:?}").contains(&long));

        assert!(matches!(
            hs256_keys_from_secret_json(r#"{"keys":[]}"#),
            Err(ConfigError::NoKeys)
        ));
        assert!(matches!(
            hs256_keys_from_secret_json(r#"{"keys":[{"kid":"a","secret":"short"}]}"#),
            Err(ConfigError::KeyTooShort { len: 5, .. })
        ));
        let dup = format!(
            r#"{{"keys":[{{"kid":"a","secret":"{long}"}},{{"kid":"a","secret":"{long}"}}]}}"#
        );
        assert!(matches!(
            hs256_keys_from_secret_json(&dup),
            Err(ConfigError::BadKid(_))
        ));
        assert!(matches!(
            hs256_keys_from_secret_json("nope"),
            Err(ConfigError::SecretFormat(_))
        ));
    }

    #[test]
    fn one_key_alone_is_a_list_of_one() {
        let long = "k".repeat(32);
        let keys =
            hs256_keys_from_secret_json(&format!(r#"{{"kid":"initial","secret":"{long}"}}"#))
                .expect("valid");
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid, "initial");

        let Err(ConfigError::SecretFormat(message)) =
            hs256_keys_from_secret_json(r#"{"kid":"initial","secret":"x","extra":1}"#)
        else {
            panic!("an unknown field must be refused");
        };
        assert!(
            message.contains(r#"{"keys":[{"kid":…,"secret":…},…]}"#),
            "{message}"
        );
        assert!(matches!(
            hs256_keys_from_secret_json(r#"{"kid":"initial","secret":"short"}"#),
            Err(ConfigError::KeyTooShort { len: 5, .. })
        ));
    }
}
