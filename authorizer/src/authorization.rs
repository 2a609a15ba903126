//! Where a bearer token may come from: the `Authorization` request header, `Bearer <token>`
//! per RFC 6750 section 2.1, and nowhere else.

use crate::AuthError;

/// Returns the token of a `Bearer <token>` header.
///
/// The scheme is case-insensitive (`bearer` is accepted), it is followed by exactly one space,
/// and the token is non-empty and contains no whitespace. Every other shape is a specific
/// [`AuthError`].
pub fn parse_authorization(header: Option<&str>) -> Result<&str, AuthError> {
    let header = header.ok_or(AuthError::MissingAuthorization)?;
    if header.trim().is_empty() {
        return Err(AuthError::MissingAuthorization);
    }
    let (scheme, rest) = match header.split_once(' ') {
        Some(parts) => parts,
        None if header.eq_ignore_ascii_case("bearer") => return Err(AuthError::EmptyToken),
        None => return Err(AuthError::WrongScheme),
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::WrongScheme);
    }
    if rest.is_empty() {
        return Err(AuthError::EmptyToken);
    }
    // Tokens are ASCII, so the byte check is the one that runs; it says the same as the
    // character check (ASCII whitespace other than the space is a control character).
    let malformed = if rest.is_ascii() {
        rest.bytes().any(|b| b == b' ' || b.is_ascii_control())
    } else {
        rest.chars().any(|c| c.is_whitespace() || c.is_control())
    };
    if malformed {
        return Err(AuthError::MalformedAuthorization);
    }
    Ok(rest)
}

/// Refuses a request whose query string carries `access_token` (RFC 6750 section 2.3).
///
/// URLs end up in access logs, browser history and `Referer` headers, so a token sent there is
/// refused outright rather than ignored, and the caller learns why.
pub fn reject_query_token(query: Option<&str>) -> Result<(), AuthError> {
    let carries_token = query.is_some_and(|query| {
        query
            .split('&')
            .any(|pair| pair.split('=').next() == Some("access_token"))
    });
    if carries_token {
        Err(AuthError::TokenInQuery)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_byte_check_refuses_exactly_the_ascii_the_character_check_refuses() {
        for byte in 0_u8..=127 {
            let c = char::from(byte);
            assert_eq!(
                byte == b' ' || byte.is_ascii_control(),
                c.is_whitespace() || c.is_control(),
                "byte {byte}"
            );
        }
    }
}
