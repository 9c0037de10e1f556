//! The commissioned care export (SPEC 5; guide: "Commissioned Care Export"): an organisation's
//! packages of care, one row per CPLI, in the guide's columns.

use crate::domain::Cpli;
use crate::ingest::headings as h;
use crate::outcome::excel_safe;

/// The guide's columns A to K.
pub const COLUMNS: [&str; 11] = [
    h::SS_REF, h::NHS_NUMBER, h::SERVICE_LEVEL_REF, "ServiceLevelName", "CurrentQuantity", h::UNIT, h::FREQUENCY, h::SERVICE_REF, h::SERVICE_NAME,
    h::ORGANISATION_REF, h::ORGANISATION_NAME,
];

/// The export as CSV bytes: every CPLI ("This export will list all packages of care in the system"),
/// by SSRef, service and service level; the file depends on the CPLIs alone, so it stays current
/// between loads. Cells that Excel would run as a formula are neutralised, as in result files.
pub fn commissioned_care_csv(cplis: &[Cpli]) -> Vec<u8> {
    let mut current: Vec<&Cpli> = cplis.iter().collect();
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
    fn the_export_lists_every_package_in_the_guides_columns_by_ssref() {
        let mut other = cpli("2", "A1", "DAPL", d(2022, 10, 3), Some(d(2022, 10, 30)), "3", "20");
        other.service_name = "=HYPERLINK(\"x\")".into();
        let cplis = [cpli("1", "A332295", "DAPL", d(2022, 10, 3), None, "5.0", "23.226"), other];
        let text = String::from_utf8(commissioned_care_csv(&cplis)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "SSRef,NHSNumber,ServiceLevelRef,ServiceLevelName,CurrentQuantity,Unit,Frequency,ServiceRef,ServiceName,OrganisationRef,OrganisationName");
        assert_eq!(lines[1], "A1,,,Personal Care,3,Hr,Weekly,,\"'=HYPERLINK(\"\"x\"\")\",,Pearl Carers Ltd");
        assert_eq!(lines[2], "A332295,,,Personal Care,5,Hr,Weekly,,Pearl Carers - DAPL Oxford,,Pearl Carers Ltd");
    }
}
