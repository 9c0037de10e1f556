//! Names compared the way the council's portal compares them.

/// A service, service level or organisation name reduced for comparison: case, runs of spaces and the
/// kind of dash do not matter ("Home Support – Urgent Care" = "home support - urgent care"); anything
/// else does, as the guide insists on "the same naming convention as that recorded on the CPLI".
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NameKey(std::sync::Arc<str>);

impl NameKey {
    pub fn new(s: &str) -> NameKey {
        // Nearly every name is ASCII: lower-case it byte by byte, collapsing runs of spaces.
        if s.is_ascii() {
            let mut out = String::with_capacity(s.len());
            for word in s.split_ascii_whitespace() {
                if !out.is_empty() {
                    out.push(' ');
                }
                out.extend(word.bytes().map(|b| b.to_ascii_lowercase() as char));
            }
            return NameKey(out.into());
        }
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
        NameKey(out.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Name keys already made in this file: a file names the same few services on every row.
#[derive(Default)]
pub struct NameKeys {
    names: hashbrown::HashMap<String, NameKey>,
    upper: hashbrown::HashMap<String, std::sync::Arc<str>>,
}

impl NameKeys {
    pub fn get(&mut self, name: &str) -> NameKey {
        memo(&mut self.names, name, NameKey::new)
    }

    /// `s` in upper case (an SSRef as a client key).
    pub fn upper(&mut self, s: &str) -> std::sync::Arc<str> {
        memo(&mut self.upper, s, |s| s.to_uppercase().into())
    }

    pub fn as_str(key: &NameKey) -> std::sync::Arc<str> {
        key.0.clone()
    }
}

/// Looks `raw` up, making and remembering its value the first time (bounded: a file with very many
/// distinct values just starts again).
fn memo<V: Clone>(map: &mut hashbrown::HashMap<String, V>, raw: &str, make: impl Fn(&str) -> V) -> V {
    if let Some(v) = map.get(raw) {
        return v.clone();
    }
    if map.len() > 10_000 {
        map.clear();
    }
    let v = make(raw);
    map.insert(raw.to_string(), v.clone());
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_ignoring_case_spaces_and_dash_kind() {
        assert_eq!(NameKey::new("Home Support – Urgent Care"), NameKey::new(" home  support - urgent CARE "));
        assert_ne!(NameKey::new("Pearl Carers - Zone 6 - Oxford"), NameKey::new("Pearl Carers - Zone 7 - Oxford"));
    }
}
