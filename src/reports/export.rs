//! The commissioned care export (SPEC 5; guide: "Commissioned Care Export"): an organisation's
//! current packages of care, one row per CPLI, in the guide's columns.

use chrono::NaiveDate;

use crate::domain::Cpli;
use crate::ingest::result::excel_safe;

/// The guide's columns A to K.
pub const COLUMNS: [&str; 11] = [
    "SSRef", "NHSNumber", "ServiceLevelRef", "ServiceLevelName", "CurrentQuantity", "Unit", "Frequency", "ServiceRef", "ServiceName",
    "OrganisationRef", "OrganisationName",
];

/// The export as CSV bytes: every CPLI that has not ended before `today`, by SSRef, service and
/// service level. Cells that Excel would run as a formula are neutralised, as in result files.
pub fn commissioned_care_csv(cplis: &[Cpli], today: NaiveDate) -> Vec<u8> {
    let mut current: Vec<&Cpli> = cplis.iter().filter(|c| c.end_date.is_none_or(|end| end >= today)).collect();
    current.sort_by(|a, b| {
        (&a.ssref, &a.service_name, &a.service_level, &a.cpli_id).cmp(&(&b.ssref, &b.service_name, &b.service_level, &b.cpli_id))
    });
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record(COLUMNS);
    for c in current {
        let guid = |g: &Option<crate::domain::Guid>| g.as_ref().map(|g| g.to_string()).unwrap_or_default();
        let cells = [
            c.ssref.clone(),
            c.nhs_number.clone().unwrap_or_default(),
            guid(&c.service_level_ref),
            c.service_level.clone(),
            c.quantity.amount.normalize().to_string(),
            c.quantity.unit.clone(),
            c.quantity.frequency.clone(),
            guid(&c.service_ref),
            c.service_name.clone(),
            guid(&c.organisation_ref),
            c.organisation_name.clone(),
        ];
        let _ = w.write_record(cells.iter().map(|c| excel_safe(c).into_owned()));
    }
    w.into_inner().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reports::actuals::tests::{cpli, d};

    #[test]
    fn the_export_lists_current_packages_in_the_guides_columns() {
        let mut ended = cpli("2", "A1", "DAPL", d(2022, 10, 3), Some(d(2022, 10, 30)), "3", "20");
        ended.service_name = "Pearl Carers - Zone 7 - Farrington".into();
        let cplis = [cpli("1", "A332295", "DAPL", d(2022, 10, 3), None, "5.0", "23.226"), ended];
        let text = String::from_utf8(commissioned_care_csv(&cplis, d(2022, 11, 1))).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "SSRef,NHSNumber,ServiceLevelRef,ServiceLevelName,CurrentQuantity,Unit,Frequency,ServiceRef,ServiceName,OrganisationRef,OrganisationName");
        assert_eq!(lines[1], "A332295,,,Personal Care,5,Hr,Weekly,,Pearl Carers - DAPL Oxford,,Pearl Carers Ltd");
        assert_eq!(lines.len(), 2, "the package that ended is not current: {text}");
    }
}
