//! The one spelling rule for names callers choose: state keys and file paths.
//!
//! A name is stored and compared in Unicode normalization form C (NFC), so the composed and
//! decomposed spellings of `café` are one key and one file, never two that look alike. A name
//! may not hold invisible formatting characters (general category Cf: zero-width spaces and
//! joiners, the soft hyphen, the byte-order mark, tags) nor bidirectional text controls (the
//! embeddings, overrides and isolates of U+202A–U+202E and U+2066–U+2069, U+200E, U+200F,
//! U+061C), which can make the name `a\u{202E}txt.exe` display as `aexe.txt`. They are
//! refused, not stripped, so what a caller sees in a listing is what is stored. A file path
//! may not hold characters that look like its separators either: look-alike dots (U+2024 ONE
//! DOT LEADER, U+FF0E FULLWIDTH FULL STOP, U+3002 IDEOGRAPHIC FULL STOP, …) and slashes
//! (U+2215 DIVISION SLASH, U+FF0F FULLWIDTH SOLIDUS, …), which would spell segments that read
//! as `.`, `..` or a folder boundary without being one.
//!
//! [`crate::store`] applies [`canonical`] to every key and listing prefix, [`crate::blob`]
//! applies [`canonical_path`] to every path, on every backend, so every tool, resource read
//! and task follows the same rule.

use std::borrow::Cow;

use unicode_general_category::{GeneralCategory, get_general_category};
use unicode_normalization::{UnicodeNormalization, is_nfc};

/// Why a name was refused; the text completes "key …" or "it …".
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error(
        "contains {}, a bidirectional text control that can make a name display differently \
         from how it is stored; remove it",
        code_point(*.0)
    )]
    Bidi(char),
    #[error("contains {}, an invisible formatting character; remove it", code_point(*.0))]
    Invisible(char),
    #[error(
        "contains {}, which looks like `{}` but is another character; use `{}` itself or a \
         different character",
        code_point(*.found),
        .looks_like,
        .looks_like
    )]
    LookAlike { found: char, looks_like: char },
}

/// `U+XXXX`, how a refused character is named (it may not display at all).
fn code_point(character: char) -> String {
    format!("U+{:04X}", u32::from(character))
}

/// Whether `character` controls the direction text is displayed in.
pub fn is_bidi_control(character: char) -> bool {
    matches!(
        character,
        '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}'
    )
}

/// Whether `character` is an invisible formatting character (general category Cf).
pub fn is_invisible_format(character: char) -> bool {
    get_general_category(character) == GeneralCategory::Format
}

/// `name` in NFC, or why it cannot be a name: it holds a bidirectional text control or another
/// invisible formatting character. Borrowed when `name` is already in its stored form.
pub fn canonical(name: &str) -> Result<Cow<'_, str>, NameError> {
    for character in name.chars() {
        if is_bidi_control(character) {
            return Err(NameError::Bidi(character));
        }
        if is_invisible_format(character) {
            return Err(NameError::Invisible(character));
        }
    }
    Ok(if is_nfc(name) {
        Cow::Borrowed(name)
    } else {
        Cow::Owned(name.nfc().collect())
    })
}

/// [`canonical`] for a file path, which also may not hold a look-alike of `.`, `/` or `\`.
pub fn canonical_path(path: &str) -> Result<Cow<'_, str>, NameError> {
    let path = canonical(path)?;
    if let Some((found, looks_like)) = path
        .chars()
        .find_map(|found| look_alike(found).map(|looks_like| (found, looks_like)))
    {
        return Err(NameError::LookAlike { found, looks_like });
    }
    Ok(path)
}

/// The path character `character` passes itself off as, if any: one whose compatibility form
/// (NFKC) holds a `.`, an ideographic full stop, a `/` or a `\`, and the few dots and slashes
/// without a compatibility form.
fn look_alike(character: char) -> Option<char> {
    if character.is_ascii() {
        return None;
    }
    match character {
        '\u{3002}' => return Some('.'),
        '\u{2215}' | '\u{2044}' | '\u{29F8}' => return Some('/'),
        '\u{2216}' | '\u{29F9}' => return Some('\\'),
        _ => {}
    }
    std::iter::once(character)
        .nfkc()
        .find_map(|part| match part {
            '.' | '\u{3002}' => Some('.'),
            '/' => Some('/'),
            '\\' => Some('\\'),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_name_are_one_name() {
        assert_eq!(
            canonical("caf\u{0065}\u{0301}"),
            Ok(Cow::Owned("caf\u{00E9}".into()))
        );
        assert!(matches!(
            canonical("caf\u{00E9}"),
            Ok(Cow::Borrowed("caf\u{00E9}"))
        ));
        // Hangul syllables compose too.
        assert_eq!(canonical("\u{1100}\u{1161}").as_deref(), Ok("\u{AC00}"));
        // Compatibility forms are not folded: `ﬁ` stays a ligature, `①` a circled digit.
        assert_eq!(
            canonical("\u{FB01}\u{2460}").as_deref(),
            Ok("\u{FB01}\u{2460}")
        );
    }

    #[test]
    fn bidi_controls_are_named_as_such() {
        for control in [
            '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}',
            '\u{2068}', '\u{2069}', '\u{200E}', '\u{200F}', '\u{061C}',
        ] {
            assert_eq!(
                canonical(&format!("a{control}b")),
                Err(NameError::Bidi(control))
            );
        }
        assert_eq!(
            canonical("a\u{202E}txt.exe")
                .map_err(|error| error.to_string())
                .err()
                .as_deref(),
            Some(
                "contains U+202E, a bidirectional text control that can make a name display \
                 differently from how it is stored; remove it"
            )
        );
    }

    #[test]
    fn invisible_formatting_characters_are_refused() {
        for invisible in [
            '\u{200B}',
            '\u{200C}',
            '\u{200D}',
            '\u{2060}',
            '\u{FEFF}',
            '\u{00AD}',
            '\u{180E}',
            '\u{2064}',
            '\u{E0041}',
            '\u{FFF9}',
        ] {
            assert_eq!(
                canonical(&format!("a{invisible}b")),
                Err(NameError::Invisible(invisible)),
                "U+{:04X}",
                u32::from(invisible)
            );
        }
        assert_eq!(
            NameError::Invisible('\u{200D}').to_string(),
            "contains U+200D, an invisible formatting character; remove it"
        );
        // Visible text, spaces and combining marks are names.
        for name in ["a b", "notes – draft", "e\u{0301}", "日本語", "👨\u{1F3FB}"] {
            assert!(canonical(name).is_ok(), "{name:?}");
        }
    }

    #[test]
    fn look_alike_dots_and_slashes_are_refused_in_paths() {
        let cases = [
            ("..\u{2024}/x", '\u{2024}', '.'),
            ("\u{FF0E}\u{FF0E}/etc", '\u{FF0E}', '.'),
            ("a\u{2025}b", '\u{2025}', '.'),
            ("a\u{2026}", '\u{2026}', '.'),
            ("x\u{3002}y", '\u{3002}', '.'),
            ("x\u{FF61}y", '\u{FF61}', '.'),
            ("x\u{FE52}y", '\u{FE52}', '.'),
            ("a\u{2215}b", '\u{2215}', '/'),
            ("a\u{FF0F}b", '\u{FF0F}', '/'),
            ("a\u{2044}b", '\u{2044}', '/'),
            ("a\u{FF3C}b", '\u{FF3C}', '\\'),
        ];
        for (path, found, looks_like) in cases {
            assert_eq!(
                canonical_path(path),
                Err(NameError::LookAlike { found, looks_like }),
                "{path:?}"
            );
        }
        assert_eq!(
            canonical_path("..\u{2024}/x")
                .map_err(|error| error.to_string())
                .err()
                .as_deref(),
            Some(
                "contains U+2024, which looks like `.` but is another character; use `.` \
                 itself or a different character"
            )
        );
        // Keys are not paths: a dot leader is just a character there.
        assert!(canonical("..\u{2024}").is_ok());
        for path in [
            "notes/a.b.txt",
            "...",
            "dir/ümlaut – ok.md",
            "a·b",
            "日本/語.txt",
        ] {
            assert!(canonical_path(path).is_ok(), "{path:?}");
        }
    }
}
