//! Quantities and money read from a file: bounded at the edge, and arithmetic on them that cannot panic.
//!
//! rust_decimal's `+ - * /` panic past ~7.9e28; a provider's `Actual` of 79228162514264337593543950335
//! exited 101 in `validate` and a CPLI with a unit cost of 7.9e28 crashed a report (issue 9). Values are
//! bounded where they are read (`parse_bounded`), and every sum or product of them goes through the
//! checked helpers here, so an out-of-range figure is an answer, never a panic.

use std::str::FromStr;

use rust_decimal::Decimal;

/// The largest quantity (hours, nights, weeks, visits) or unit cost a file may hold. A week has 168
/// hours and no package of care costs a million pounds a unit, so anything above is a typing error;
/// products of two such values (1e12) and sums of millions of them stay far inside Decimal's range.
pub const MAX_AMOUNT: u32 = 1_000_000;
/// Decimal places a quantity may have (a quarter of an hour is 0.25; minutes as hours need no more).
pub const QUANTITY_DECIMALS: u32 = 4;
/// Decimal places a unit cost may have: the council's extract keeps costs such as 23.226, and SPEC 1
/// says to keep every decimal it gives, so costs get a little more room than quantities.
pub const UNIT_COST_DECIMALS: u32 = 6;

/// Why a cell is not an acceptable amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("is not a number")]
    NotANumber,
    #[error("is negative")]
    Negative,
    #[error("is too large")]
    TooLarge,
    #[error("has more than {0} decimal places")]
    TooPrecise(u32),
}

impl AmountError {
    /// Not a number at all (`BAD_NUMBER`), rather than a number out of range (`BAD_QUANTITY`).
    pub fn is_not_a_number(&self) -> bool {
        matches!(self, AmountError::NotANumber)
    }
}

/// `1,234.50` -> `1234.50`; `None` when a comma is not between groups of three digits before the
/// point (`23,77` is a decimal comma, read as 2377 when every comma was dropped).
pub fn without_thousands_commas(text: &str) -> Option<std::borrow::Cow<'_, str>> {
    if !text.contains(',') {
        return Some(text.into());
    }
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.contains(',') {
        return None;
    }
    let mut groups = whole.split(',');
    let first = groups.next()?;
    let digits = |g: &str| g.bytes().all(|b| b.is_ascii_digit());
    let grouped = (1..=3).contains(&first.len()) && digits(first) && groups.all(|g| g.len() == 3 && digits(g));
    grouped.then(|| text.replace(',', "").into())
}

/// A number from 0 to `MAX_AMOUNT` with at most `decimals` decimal places (`3.25`). A string of
/// digits too long for Decimal is too large, not "not a number".
pub fn parse_bounded(text: &str, decimals: u32) -> Result<Decimal, AmountError> {
    let t = text.trim();
    let digits_only = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    // Plain notation only: `Decimal` also reads `1e2` as 100 and `1_000` as 1000, which a cell
    // mangled by a spreadsheet may hold and no one writes meaning a number (since 2026-12-03).
    if !digits_only(t.strip_prefix(['-', '+']).unwrap_or(t)) {
        return Err(AmountError::NotANumber);
    }
    let d = match Decimal::from_str(t) {
        Ok(d) => d,
        Err(_) if digits_only(t) => return Err(AmountError::TooLarge),
        Err(_) if t.strip_prefix('-').is_some_and(digits_only) => return Err(AmountError::Negative),
        Err(_) => return Err(AmountError::NotANumber),
    };
    if d.is_sign_negative() && !d.is_zero() {
        return Err(AmountError::Negative);
    }
    if d > Decimal::from(MAX_AMOUNT) {
        return Err(AmountError::TooLarge);
    }
    // `3.2500` is 3.25: trailing zeros do not count as precision. Counted in the text as well:
    // past 28 decimals `Decimal` rounds (0.00...01 would be read as 0).
    let written = t.split_once('.').map_or(0, |(_, f)| f.trim_end_matches('0').len());
    if d.normalize().scale() > decimals || written > decimals as usize {
        return Err(AmountError::TooPrecise(decimals));
    }
    Ok(d.abs())
}

/// `1000000` -> `1,000,000`, for messages.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Checked sum: `None` on overflow instead of a panic.
pub fn sum(values: impl IntoIterator<Item = Decimal>) -> Option<Decimal> {
    values.into_iter().try_fold(Decimal::ZERO, Decimal::checked_add)
}

/// `minutes` x `rate` / `per`, exact where it fits (multiplying first keeps 183 min x 23.226 / 60 =
/// 70.8393 exact); `None` on overflow or a zero `per`.
pub fn minutes_times(minutes: i64, rate: Decimal, per: i64) -> Option<Decimal> {
    Decimal::from(minutes).checked_mul(rate)?.checked_div(Decimal::from(per))
}

/// One visit's cost, `minutes` x `cost` / (60 x `per`): exact where the division ends, else rounded
/// up at the 24th decimal place. A week's visits' costs, summed and rounded half-up to the penny,
/// then give what the week's total divided once gives (since 2026-12-03: a figure cut at its 28th
/// digit falls a hair short, and three 20-minute visits at £10.015 summed to £10.01, not £10.02).
pub fn visit_cost(minutes: i64, cost: Decimal, per: Decimal) -> Option<Decimal> {
    Some(minutes_cost(minutes, cost, per)?.round_dp_with_strategy(24, rust_decimal::RoundingStrategy::AwayFromZero))
}

/// `minutes` x `cost` / (60 x `per`), multiplied first and divided once: exact wherever the
/// division ends (a week's paid minutes at a package's rate, `cost` for `per` hours).
pub fn minutes_cost(minutes: i64, cost: Decimal, per: Decimal) -> Option<Decimal> {
    Decimal::from(minutes).checked_mul(cost)?.checked_div(Decimal::from(60).checked_mul(per)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Result<Decimal, AmountError> {
        parse_bounded(s, QUANTITY_DECIMALS)
    }

    #[test]
    fn visits_costs_summed_round_to_the_penny_the_week_total_rounds_to() {
        let penny = |d: Decimal| d.round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        // Three 20-minute visits at £10.015: £10.015, a half penny, £10.02.
        let three: Decimal = (0..3).map(|_| visit_cost(20, d("10.015"), Decimal::ONE).unwrap()).sum();
        assert_eq!(penny(three), d("10.02"), "{three}");
        // 8.5 h at a package's 202.535 for 8.5 h: £202.535, £202.54.
        let mut week: Vec<i64> = vec![60; 7];
        week.extend([30, 30, 30]);
        let package: Decimal = week.iter().map(|m| visit_cost(*m, d("202.535"), d("8.5")).unwrap()).sum();
        assert_eq!(penny(package), d("202.54"), "{package}");
        assert_eq!(visit_cost(183, d("23.226"), Decimal::ONE), Some(d("70.8393")), "exact where it ends");
    }

    #[test]
    fn a_comma_only_separates_thousands() {
        assert_eq!(without_thousands_commas("1,234.50").as_deref(), Some("1234.50"));
        assert_eq!(without_thousands_commas("1,000,000").as_deref(), Some("1000000"));
        assert_eq!(without_thousands_commas("23.77").as_deref(), Some("23.77"));
        for decimal_comma in ["23,77", "3,5", "1,23.4", "2,3,7,7", ",123", "1234,567", "1,234.5,6", "a,bcd"] {
            assert_eq!(without_thousands_commas(decimal_comma), None, "{decimal_comma}");
        }
    }

    #[test]
    fn a_quantity_up_to_a_million_with_four_decimals_is_accepted() {
        assert_eq!(q("3.25"), Ok(Decimal::new(325, 2)));
        assert_eq!(q("1000000"), Ok(Decimal::from(1_000_000)));
        assert_eq!(q("0.1234"), Ok(Decimal::new(1234, 4)));
        assert_eq!(q("2.50000"), Ok(Decimal::new(250000, 5)));
        assert_eq!(q("-0"), Ok(Decimal::ZERO));
    }

    #[test]
    fn a_quantity_above_a_million_is_too_large_even_beyond_decimals_range() {
        assert_eq!(q("1000000.0001"), Err(AmountError::TooLarge));
        assert_eq!(q("79228162514264337593543950335"), Err(AmountError::TooLarge));
        assert_eq!(q("79228162514264337593543950336"), Err(AmountError::TooLarge));
        assert_eq!(q("99999999999999999999999999999999999999"), Err(AmountError::TooLarge));
    }

    #[test]
    fn a_quantity_with_more_than_four_decimals_is_too_precise() {
        assert_eq!(q("0.00001"), Err(AmountError::TooPrecise(4)));
        // Past 28 decimals `Decimal` itself rounds: the text is counted.
        assert_eq!(q("0.00000000000000000000000000001"), Err(AmountError::TooPrecise(4)));
        assert_eq!(q("3.250000000000000000000000000000"), Ok(Decimal::new(325, 2)), "trailing zeros are not precision");
        assert_eq!(parse_bounded("23.226001", UNIT_COST_DECIMALS), Ok("23.226001".parse().unwrap()));
        assert_eq!(parse_bounded("23.2260001", UNIT_COST_DECIMALS), Err(AmountError::TooPrecise(6)));
    }

    #[test]
    fn negatives_and_words_are_refused_for_what_they_are() {
        assert_eq!(q("-1"), Err(AmountError::Negative));
        assert_eq!(q("-99999999999999999999999999999999"), Err(AmountError::Negative));
        assert_eq!(q("ten"), Err(AmountError::NotANumber));
        assert!(q("").unwrap_err().is_not_a_number());
    }

    #[test]
    fn a_number_in_scientific_or_grouped_notation_is_not_a_number() {
        for written in ["1e2", "1E2", "5E-1", "1.2E+03", "7.9e28", "1_000", "0x10", "1 000", "Infinity", "NaN"] {
            assert_eq!(q(written), Err(AmountError::NotANumber), "{written}");
        }
        assert_eq!(q("+5"), Ok(Decimal::from(5)));
    }

    #[test]
    fn sums_and_products_that_overflow_are_none_not_a_panic() {
        assert_eq!(sum([Decimal::MAX, Decimal::ONE]), None);
        assert_eq!(sum([Decimal::ONE, Decimal::TWO]), Some(Decimal::from(3)));
        assert_eq!(minutes_times(i64::MAX, Decimal::MAX, 60), None);
        assert_eq!(minutes_times(183, "23.226".parse().unwrap(), 60), Some("70.8393".parse().unwrap()));
        assert_eq!(minutes_times(60, Decimal::ONE, 0), None);
    }

    #[test]
    fn thousands_are_separated_by_commas() {
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(thousands(5_242_880), "5,242,880");
        assert_eq!(thousands(999), "999");
    }
}
