//! Text from outside made safe to print: one line, no terminal control.
//!
//! Anything a caller sends (an apply's `source`, a name, an error message
//! quoting its input) can reach the audit log, the system journal and a
//! terminal. [`escape`] replaces every character that could end a line,
//! move the cursor, recolour or retitle a terminal, or reorder what is shown
//! with a visible escape: C0 and C1 controls and DEL (`\n`, `\t`, `\x1b`,
//! `\u{9b}`), the Unicode line and paragraph separators, and the
//! bidirectional controls that make text display in another order than it is
//! stored ("Trojan Source", CVE-2021-42574). Everything else passes
//! unchanged, a backslash included, so escaping twice gives what escaping
//! once gives: the daemon escapes where text enters a log or the audit trail,
//! and bulwarkctl escapes again where it prints, without doubling anything.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` must not reach a log line or a terminal as it is.
pub fn is_unsafe(c: char) -> bool {
    // `is_control` is Unicode's Cc: U+0000-U+001F, U+007F-U+009F.
    c.is_control()
        || matches!(
            c,
            // Line and paragraph separators: line breaks to some viewers.
            '\u{2028}' | '\u{2029}'
            // Bidirectional marks, embeddings, overrides and isolates.
            | '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// `text` with every [unsafe](is_unsafe) character written as an escape;
/// borrowed when there is nothing to escape.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_ascii() && is_unsafe(c) => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if is_unsafe(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn controls_become_visible_escapes() {
        assert_eq!(escape("a\nb\r\tc"), "a\\nb\\r\\tc");
        assert_eq!(escape("\u{1b}[31mred\u{1b}[0m"), "\\x1b[31mred\\x1b[0m");
        assert_eq!(escape("nul\0 del\u{7f}"), "nul\\x00 del\\x7f");
        assert_eq!(escape("csi\u{9b}2J"), "csi\\u{9b}2J");
        assert_eq!(escape("ab\u{202e}cd\u{2066}"), "ab\\u{202e}cd\\u{2066}");
        assert_eq!(escape("line\u{2028}sep"), "line\\u{2028}sep");
    }

    #[test]
    fn ordinary_text_is_borrowed_unchanged() {
        for s in ["", "profiles/vps-k3s.toml", "C:\\path \\n literal", "grüße 日本 🙂"] {
            assert!(matches!(escape(s), Cow::Borrowed(b) if b == s), "{s:?}");
        }
    }

    proptest! {
        #[test]
        fn escaped_text_is_one_safe_line_and_escaping_is_idempotent(s in any::<String>()) {
            let once = escape(&s).into_owned();
            prop_assert!(!once.chars().any(is_unsafe), "{once:?}");
            prop_assert_eq!(escape(&once), once.as_str());
        }
    }
}
