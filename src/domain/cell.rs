//! What a text cell may hold, and how a value from a file is quoted back in a message.
//!
//! Issue 9: NUL and other control characters were stored in VisitRef, and a message repeated a 5 MB
//! cell in full (into the result files, the store and the email). A cell is refused if it holds a
//! control character; a value is quoted by its first characters and its length.

use std::fmt;

/// Characters of an offending value a message repeats; the rest is counted, not copied.
pub const QUOTE_CHARS: usize = 60;

/// A value from a file as a message shows it: at most `QUOTE_CHARS` characters, then
/// `… (5,242,880 characters)`; control characters but tab written as `\u{0}` so the message stays
/// one clean line whatever the file held (a tab is kept: it tells a tab-separated header apart).
pub struct Quoted<'a>(pub &'a str);

/// Quotes `value` for a message or a result field (see `Quoted`).
pub fn quote(value: &str) -> Quoted<'_> {
    Quoted(value)
}

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut chars = self.0.chars();
        for c in chars.by_ref().take(QUOTE_CHARS) {
            if c.is_control() && c != '\t' {
                write!(f, "{}", c.escape_unicode())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        if chars.next().is_some() {
            let n = self.0.chars().count();
            write!(f, "… ({} characters)", super::number::thousands(n as u64))?;
        }
        Ok(())
    }
}

/// Which control characters a column may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    /// Free text (Comments, VarianceReason, override reasons): tabs and line breaks are part of what
    /// people type (Excel's Alt+Enter); every other control character is refused.
    Free,
    /// Everything else (references, names, dates, codes): no control character at all, tab included.
    Plain,
}

/// The first control character in `value` that a cell of `kind` may not hold: its position
/// (1-based, in characters) and the character.
pub fn forbidden_control(value: &str, kind: TextKind) -> Option<(usize, char)> {
    // Most cells are plain printable ASCII: one pass over the bytes settles them.
    if value.bytes().all(|b| (0x20..0x7F).contains(&b)) {
        return None;
    }
    value
        .chars()
        .enumerate()
        .find(|(_, c)| c.is_control() && !(kind == TextKind::Free && matches!(c, '\t' | '\n' | '\r')))
        .map(|(i, c)| (i + 1, c))
}

/// A control character as a person reads it: `U+0000 (NUL)`.
pub fn describe_control(c: char) -> String {
    let name = match c {
        '\0' => " (NUL)",
        '\t' => " (tab)",
        '\n' => " (line feed)",
        '\r' => " (carriage return)",
        '\u{1b}' => " (escape)",
        '\u{7f}' => " (delete)",
        _ => "",
    };
    format!("U+{:04X}{name}", c as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_value_is_quoted_by_its_first_60_characters_and_its_length() {
        let big = "x".repeat(5_242_880);
        let q = quote(&big).to_string();
        assert_eq!(q, format!("{}… (5,242,880 characters)", "x".repeat(60)));
        assert_eq!(quote("03/10/2022").to_string(), "03/10/2022");
        assert_eq!(quote(&"é".repeat(60)).to_string(), "é".repeat(60));
        assert_eq!(quote(&"é".repeat(61)).to_string(), format!("{}… (61 characters)", "é".repeat(60)));
    }

    #[test]
    fn control_characters_are_escaped_when_quoted() {
        assert_eq!(quote("V\u{0}1").to_string(), "V\\u{0}1");
        assert_eq!(quote("a\nb").to_string(), "a\\u{a}b");
    }

    #[test]
    fn control_characters_are_refused_except_tabs_and_line_breaks_in_free_text() {
        assert_eq!(forbidden_control("V1", TextKind::Plain), None);
        assert_eq!(forbidden_control("Zoë", TextKind::Plain), None);
        assert_eq!(forbidden_control("V\u{0}1", TextKind::Plain), Some((2, '\0')));
        assert_eq!(forbidden_control("V1\t", TextKind::Plain), Some((3, '\t')));
        assert_eq!(forbidden_control("fell\r\nwaited\tfor GP", TextKind::Free), None);
        assert_eq!(forbidden_control("fell\u{1b}[2J", TextKind::Free), Some((5, '\u{1b}')));
        assert_eq!(forbidden_control("x\u{7f}", TextKind::Free), Some((2, '\u{7f}')));
        assert_eq!(forbidden_control("x\u{85}", TextKind::Free), Some((2, '\u{85}')));
    }

    #[test]
    fn a_control_character_is_named_by_its_code_point() {
        assert_eq!(describe_control('\0'), "U+0000 (NUL)");
        assert_eq!(describe_control('\u{85}'), "U+0085");
    }
}
