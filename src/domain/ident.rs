//! Identifiers on a visit: GUIDs from the council's export and the NHS number's check digit.

use std::fmt;

/// A GUID as the council's Commissioned Care Export writes it: `8-4-4-4-12` hex digits in upper
/// case, without braces. The only way to make one is `parse_guid`, so every GUID stored (from a CPLI
/// extract or a provider's file) and written back in the export is one a file may send (issue 11).
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

/// `8-4-4-4-12` hex digits, or the same 32 without hyphens (as SQL Server and some exports write
/// them); braces optional, any case. Kept in the one form the export writes. The variant and version
/// bits are not checked: the council's system issues GUIDs that are not RFC 4122 ones.
pub fn parse_guid(s: &str) -> Option<Guid> {
    let s = s.trim();
    let s = s.strip_prefix('{').and_then(|x| x.strip_suffix('}')).unwrap_or(s);
    let hex = |g: &str| g.bytes().all(|b| b.is_ascii_hexdigit());
    let bare: String = if s.len() == 32 && hex(s) {
        s.to_string()
    } else {
        let groups: Vec<&str> = s.split('-').collect();
        if groups.len() != 5 || groups.iter().zip([8, 4, 4, 4, 12]).any(|(g, len)| g.len() != len || !hex(g)) {
            return None;
        }
        groups.concat()
    };
    let u = bare.to_ascii_uppercase();
    Some(Guid(format!("{}-{}-{}-{}-{}", &u[..8], &u[8..12], &u[12..16], &u[16..20], &u[20..])))
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

/// The number of an id the gateway gives, written as a letter and digits (`C12` a claim, `D3` a
/// dispute): the letter in any case, spaces around ignored.
pub fn parse_numbered(s: &str, letter: char) -> Option<u64> {
    let s = s.trim();
    let digits = s.strip_prefix(letter.to_ascii_uppercase()).or_else(|| s.strip_prefix(letter.to_ascii_lowercase()))?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 18 {
        return None;
    }
    digits.parse().ok()
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
    fn guids_without_hyphens_are_accepted_and_kept_with_them() {
        let g = parse_guid("97d549257210436e8d979727cd416685").unwrap();
        assert_eq!(g.as_str(), "97D54925-7210-436E-8D97-9727CD416685");
        assert_eq!(parse_guid("{97D549257210436E8D979727CD416685}"), Some(g));
    }

    #[test]
    fn a_guid_that_is_not_rfc_4122_is_still_a_guid() {
        // examples/cplis.csv: variant bits 0 and version 9, as the council's system issues them.
        assert!(parse_guid("2217BEAD-DBC4-96CB-0E81-973E0BECD7B0").is_some());
    }

    #[test]
    fn malformed_guids_are_refused() {
        for s in ["", "97D54925", "97D54925-7210-436E-8D97-9727CD41668", "S F54B181-1C7B-469E-B37C-4B93FA9EBE1E",
                  "SF54B181-1C7B-469E-B37C-4B93FA9EBE1E", "97D54925721043 6E8D979727CD416685",
                  "97D549257210436E8D979727CD41668", "97D549257210436E8D979727CD416685A", "97D5-49257210436E8D979727CD416685",
                  "{97D54925-7210-436E-8D97-9727CD416685", "97D54925-7210-436E-8D97-9727CD416685}"] {
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

