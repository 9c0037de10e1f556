//! An organisation's slug: the name of its folders under `--data` and its key in the store (issue 11).

use std::fmt;

/// `pearl-carers-ltd`: lower-case ASCII letters and digits in words joined by single dashes. Made
/// from an organisation's name, or parsed (a folder name, a login's record); past that, a slug is
/// never a bare string, so a name cannot be taken for a folder by mistake.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct Slug(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{given}' is not an organisation's folder name (lower-case letters and digits in words joined by single dashes, e.g. pearl-carers-ltd)")]
pub struct SlugError {
    pub given: String,
}

impl Slug {
    /// The folder name of an organisation: `Pearl Carers Ltd` -> `pearl-carers-ltd`; a name with no
    /// letter or digit gets `org`.
    pub fn from_name(name: &str) -> Slug {
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
        if out.is_empty() { Slug("org".into()) } else { Slug(out) }
    }

    /// A slug as written (a folder name, a stored record): refused unless `from_name` could have made it.
    pub fn parse(s: &str) -> Result<Slug, SlugError> {
        let valid = !s.is_empty()
            && s.split('-').all(|word| !word.is_empty() && word.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
        if valid { Ok(Slug(s.to_string())) } else { Err(SlugError { given: s.to_string() }) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The slug as a store key part.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Slug {
    type Err = SlugError;
    fn from_str(s: &str) -> Result<Slug, SlugError> {
        Slug::parse(s)
    }
}

impl TryFrom<String> for Slug {
    type Error = SlugError;
    fn try_from(s: String) -> Result<Slug, SlugError> {
        Slug::parse(&s)
    }
}

impl AsRef<str> for Slug {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl AsRef<std::path::Path> for Slug {
    fn as_ref(&self) -> &std::path::Path {
        std::path::Path::new(&self.0)
    }
}

impl PartialEq<str> for Slug {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

/// A plain JSON string, as the store and the users' files have always held it.
impl serde::Serialize for Slug {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn organisation_folder_names_are_lowercase_words_joined_by_dashes() {
        assert_eq!(Slug::from_name("Pearl Carers Ltd").as_str(), "pearl-carers-ltd");
        assert_eq!(Slug::from_name("  A & B (Care) Ltd. ").as_str(), "a-b-care-ltd");
        assert_eq!(Slug::from_name("Siân's Care").as_str(), "si-n-s-care");
        assert_eq!(Slug::from_name("../..").as_str(), "org");
    }

    #[test]
    fn a_slug_is_parsed_only_as_a_name_would_make_it() {
        for good in ["pearl-carers-ltd", "org", "a1-2b", "x"] {
            assert_eq!(Slug::parse(good).map(|s| s.to_string()), Ok(good.to_string()), "{good}");
        }
        for bad in ["", "Pearl-Carers", "pearl carers", "-pearl", "pearl-", "pearl--carers", "..", "a/b", "café", "a_b", "a\0b"] {
            assert_eq!(Slug::parse(bad), Err(SlugError { given: bad.into() }), "{bad:?}");
        }
    }

    #[test]
    fn a_slug_made_from_any_name_parses_back() {
        for name in ["Pearl Carers Ltd", "  A & B (Care) Ltd. ", "Siân's Care", "../..", "", "--x--"] {
            let slug = Slug::from_name(name);
            assert_eq!(Slug::parse(slug.as_str()), Ok(slug.clone()), "{name:?}");
        }
    }

    #[test]
    fn a_slug_is_a_plain_json_string_and_an_invalid_one_is_refused() {
        let slug = Slug::from_name("Pearl Carers Ltd");
        assert_eq!(serde_json::to_string(&slug).unwrap(), "\"pearl-carers-ltd\"");
        assert_eq!(serde_json::from_str::<Slug>("\"pearl-carers-ltd\"").unwrap(), slug);
        assert!(serde_json::from_str::<Slug>("\"../etc\"").is_err());
    }
}
