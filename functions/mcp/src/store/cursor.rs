//! Opaque, tamper-checked pagination cursors.
//!
//! A cursor carries the last key of the page it ends, sealed with an HMAC over
//! the principal and the listing's prefix. A client can only hand back a cursor
//! the server issued for the same principal and listing; anything else is
//! [`StoreError::BadCursor`]. Every backend uses this one codec, so cursors
//! mean the same thing everywhere. Cursors are sealed with the keyring's active
//! key and open with any key it lists, so rotating keys breaks no listing.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::StoreError;
use crate::{
    keys::{KeySet, Keyring},
    principal::Principal,
};

type HmacSha256 = Hmac<Sha256>;

/// Bytes of the HMAC kept in a cursor: enough to make forgery hopeless, short enough for URLs.
const TAG_BYTES: usize = 16;

/// Seals and opens cursors with the server's signing keys.
#[derive(Clone)]
pub struct CursorCodec {
    keys: Keyring,
}

impl CursorCodec {
    /// A codec over one fixed key.
    pub fn new(key: &[u8]) -> Self {
        Self::from_keyring(Keyring::fixed(KeySet::single("fixed", key)))
    }

    pub fn from_keyring(keys: Keyring) -> Self {
        Self { keys }
    }

    /// The MAC over one listing position; parts are length-prefixed so they cannot run together.
    fn mac(key: &[u8], principal: &Principal, prefix: &str, last_key: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
        for part in [principal.as_str(), prefix, last_key] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        mac
    }

    /// The cursor that resumes a listing after `last_key`.
    pub fn seal(&self, principal: &Principal, prefix: &str, last_key: &str) -> String {
        let keys = self.keys.keys();
        let tag = &Self::mac(&keys.active().secret, principal, prefix, last_key)
            .finalize()
            .into_bytes()[..TAG_BYTES];
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(last_key),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// The last key a cursor resumes after, if this server issued it for this listing.
    pub fn open(
        &self,
        principal: &Principal,
        prefix: &str,
        cursor: &str,
    ) -> Result<String, StoreError> {
        let (key_part, tag_part) = cursor.split_once('.').ok_or(StoreError::BadCursor)?;
        let key_bytes = URL_SAFE_NO_PAD
            .decode(key_part)
            .map_err(|_| StoreError::BadCursor)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag_part)
            .map_err(|_| StoreError::BadCursor)?;
        if tag.len() != TAG_BYTES {
            return Err(StoreError::BadCursor);
        }
        let last_key = String::from_utf8(key_bytes).map_err(|_| StoreError::BadCursor)?;
        let keys = self.keys.keys();
        let genuine = keys.all().iter().any(|key| {
            Self::mac(&key.secret, principal, prefix, &last_key)
                .verify_truncated_left(&tag)
                .is_ok()
        });
        if genuine {
            Ok(last_key)
        } else {
            Err(StoreError::BadCursor)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Principal {
        Principal::new("alice").expect("valid subject")
    }

    #[test]
    fn a_cursor_opens_only_for_its_own_listing() {
        let codec = CursorCodec::new(b"k");
        let cursor = codec.seal(&alice(), "notes/", "notes/7");
        assert_eq!(
            codec.open(&alice(), "notes/", &cursor).ok(),
            Some("notes/7".into())
        );
        let bob = Principal::new("bob").expect("valid subject");
        assert!(matches!(
            codec.open(&bob, "notes/", &cursor),
            Err(StoreError::BadCursor)
        ));
        assert!(matches!(
            codec.open(&alice(), "", &cursor),
            Err(StoreError::BadCursor)
        ));
        assert!(matches!(
            CursorCodec::new(b"other").open(&alice(), "notes/", &cursor),
            Err(StoreError::BadCursor)
        ));
    }

    #[test]
    fn cursors_survive_key_rotation() {
        let old = b"old-key-old-key-old-key-old-key-old-key";
        let new = b"new-key-new-key-new-key-new-key-new-key";
        let cursor = CursorCodec::new(old).seal(&alice(), "", "a");
        let rotated = KeySet::from_secret_json(&format!(
            r#"{{"keys":[{{"kid":"new","secret":"{}"}},{{"kid":"old","secret":"{}"}}]}}"#,
            String::from_utf8_lossy(new),
            String::from_utf8_lossy(old)
        ))
        .expect("valid key list");
        let codec = CursorCodec::from_keyring(Keyring::fixed(rotated));
        assert_eq!(codec.open(&alice(), "", &cursor).ok(), Some("a".into()));
        let resealed = codec.seal(&alice(), "", "a");
        assert!(CursorCodec::new(new).open(&alice(), "", &resealed).is_ok());
        assert!(CursorCodec::new(old).open(&alice(), "", &resealed).is_err());
    }

    #[test]
    fn tampered_cursors_are_rejected() {
        let codec = CursorCodec::new(b"k");
        let cursor = codec.seal(&alice(), "", "a");
        let forged = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode("z"),
            cursor.split_once('.').map(|(_, t)| t).unwrap_or("")
        );
        for bad in [forged.as_str(), "", "no-dot", "!!!.???", "YQ.", "YQ.AAAA"] {
            assert!(
                matches!(codec.open(&alice(), "", bad), Err(StoreError::BadCursor)),
                "{bad}"
            );
        }
    }
}
