//! Names compared the way the council's portal compares them, and folder names made from them.

/// A service, service level or organisation name reduced for comparison: case, runs of spaces and the
/// kind of dash do not matter ("Home Support – Urgent Care" = "home support - urgent care"); anything
/// else does, as the guide insists on "the same naming convention as that recorded on the CPLI".
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NameKey(String);

impl NameKey {
    pub fn new(s: &str) -> NameKey {
        let mut out = String::with_capacity(s.len());
        for word in s.split_whitespace() {
            if !out.is_empty() {
                out.push(' ');
            }
            for c in word.chars() {
                match c {
                    '\u{2010}'..='\u{2015}' | '\u{2212}' => out.push('-'),
                    c => out.extend(c.to_lowercase()),
                }
            }
        }
        NameKey(out)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The folder name of an organisation: `Pearl Carers Ltd` -> `pearl-carers-ltd`.
pub fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    if out.is_empty() { "org".into() } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_ignoring_case_spaces_and_dash_kind() {
        assert_eq!(NameKey::new("Home Support – Urgent Care"), NameKey::new(" home  support - urgent CARE "));
        assert_ne!(NameKey::new("Pearl Carers - Zone 6 - Oxford"), NameKey::new("Pearl Carers - Zone 7 - Oxford"));
    }

    #[test]
    fn organisation_folder_names_are_lowercase_words_joined_by_dashes() {
        assert_eq!(slug("Pearl Carers Ltd"), "pearl-carers-ltd");
        assert_eq!(slug("  A & B (Care) Ltd. "), "a-b-care-ltd");
        assert_eq!(slug("../.."), "org");
    }
}
