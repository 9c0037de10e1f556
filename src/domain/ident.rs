//! Identifiers on a visit: GUIDs from the council's export and the NHS number's check digit.

use std::fmt;

/// A GUID as the council's Commissioned Care Export writes it, kept in upper case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Guid(String);

impl Guid {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `8-4-4-4-12` hex digits, braces optional, any case.
pub fn parse_guid(s: &str) -> Option<Guid> {
    let s = s.trim();
    let s = s.strip_prefix('{').and_then(|x| x.strip_suffix('}')).unwrap_or(s);
    let groups: Vec<&str> = s.split('-').collect();
    let lens = [8, 4, 4, 4, 12];
    if groups.len() != 5 {
        return None;
    }
    for (g, len) in groups.iter().zip(lens) {
        if g.len() != len || !g.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
    }
    Some(Guid(s.to_ascii_uppercase()))
}

/// The council's own GUIDs are kept as given (its extracts are the reference, even where they are not hex).
pub fn council_guid(s: &str) -> Option<Guid> {
    let s = s.trim();
    if s.is_empty() { None } else { Some(Guid(s.to_ascii_uppercase())) }
}

/// Ten digits (spaces allowed, as printed on NHS cards) whose tenth is the modulus-11 check digit.
pub fn is_valid_nhs_number(s: &str) -> bool {
    let digits: Vec<u32> = s.chars().filter(|c| *c != ' ').map(|c| c.to_digit(10)).collect::<Option<_>>().unwrap_or_default();
    if digits.len() != 10 {
        return false;
    }
    let sum: u32 = digits[..9].iter().enumerate().map(|(i, d)| d * (10 - i as u32)).sum();
    let check = match 11 - sum % 11 {
        11 => 0,
        10 => return false,
        c => c,
    };
    check == digits[9]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_are_accepted_in_any_case_with_or_without_braces() {
        let g = parse_guid("97d54925-7210-436e-8d97-9727cd416685").unwrap();
        assert_eq!(g.as_str(), "97D54925-7210-436E-8D97-9727CD416685");
        assert_eq!(parse_guid("{97D54925-7210-436E-8D97-9727CD416685}"), Some(g));
    }

    #[test]
    fn malformed_guids_are_refused() {
        for s in ["", "97D54925", "97D54925-7210-436E-8D97-9727CD41668", "S F54B181-1C7B-469E-B37C-4B93FA9EBE1E",
                  "SF54B181-1C7B-469E-B37C-4B93FA9EBE1E", "97D54925721043 6E8D979727CD416685"] {
            assert!(parse_guid(s).is_none(), "{s}");
        }
    }

    #[test]
    fn nhs_number_with_a_valid_check_digit_passes() {
        assert!(is_valid_nhs_number("9434765919"));
        assert!(is_valid_nhs_number("943 476 5919"));
        assert!(is_valid_nhs_number("6224178496"));
    }

    #[test]
    fn nhs_number_with_a_wrong_check_digit_or_length_fails() {
        assert!(!is_valid_nhs_number("9434765918"));
        assert!(!is_valid_nhs_number("458644614")); // the guide's export has a nine-digit one
        assert!(!is_valid_nhs_number("94347659190"));
        assert!(!is_valid_nhs_number("ABCDEFGHIJ"));
    }
}
