//! Who a request acts for.
//!
//! Every store call takes a [`Principal`], so tenant isolation is a property of
//! the store interface rather than of each tool. Until bearer-token auth is in
//! place every request runs as [`Principal::anonymous`]; the auth layer will
//! insert the token's subject instead, and nothing below it has to change.

use std::{fmt, sync::Arc};

/// The longest subject accepted, in bytes; longer ones are rejected, not cut.
pub const MAX_SUBJECT_BYTES: usize = 256;

/// The subject a request acts for (a JWT `sub`, or `anonymous`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Principal(Arc<str>);

/// Why a subject cannot be a principal.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PrincipalError {
    #[error("the subject is empty")]
    Empty,
    #[error("the subject is {0} bytes; at most {MAX_SUBJECT_BYTES} are allowed")]
    TooLong(usize),
    #[error("the subject contains a control character")]
    ControlCharacter,
}

impl Principal {
    /// The principal of unauthenticated local use.
    pub fn anonymous() -> Self {
        Self(Arc::from("anonymous"))
    }

    /// A principal for `subject`, checked so it is safe as a store key part.
    pub fn new(subject: &str) -> Result<Self, PrincipalError> {
        if subject.is_empty() {
            return Err(PrincipalError::Empty);
        }
        if subject.len() > MAX_SUBJECT_BYTES {
            return Err(PrincipalError::TooLong(subject.len()));
        }
        if subject.chars().any(char::is_control) {
            return Err(PrincipalError::ControlCharacter);
        }
        Ok(Self(Arc::from(subject)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Principal({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_checked() {
        assert_eq!(
            Principal::new("alice").map(|p| p.to_string()),
            Ok("alice".into())
        );
        assert_eq!(Principal::new(""), Err(PrincipalError::Empty));
        assert_eq!(
            Principal::new(&"x".repeat(257)),
            Err(PrincipalError::TooLong(257))
        );
        assert_eq!(
            Principal::new("a\u{0}b"),
            Err(PrincipalError::ControlCharacter)
        );
    }
}
