//! The headings more than one file kind uses (visits, actuals, carers, the CPLI extract, the
//! commissioned care export, the exports kept current), each written once (issue 11); a heading only one kind has is written
//! in that kind's module.

pub const CARER_REF: &str = "CarerRef";
pub const DELETED: &str = "Deleted";
pub const START_DATE: &str = "StartDate";
pub const END_DATE: &str = "EndDate";
pub const COMMENTS: &str = "Comments";
pub const CLIENT_REF: &str = "ClientRef";
pub const SS_REF: &str = "SSRef";
pub const NHS_NUMBER: &str = "NHSNumber";
pub const SERVICE_LEVEL_REF: &str = "ServiceLevelRef";
pub const SERVICE_LEVEL: &str = "ServiceLevel";
pub const SERVICE_REF: &str = "ServiceRef";
pub const SERVICE_NAME: &str = "ServiceName";
pub const ORGANISATION_REF: &str = "OrganisationRef";
pub const ORGANISATION_NAME: &str = "OrganisationName";
pub const UNIT: &str = "Unit";
pub const FREQUENCY: &str = "Frequency";
pub const VISIT_REF: &str = "VisitRef";
pub const PLANNED_VISIT_DATE: &str = "PlannedVisitDate";
pub const PLANNED_ENTRY_TIME: &str = "PlannedEntryTime";
pub const PLANNED_EXIT_TIME: &str = "PlannedExitTime";
pub const VISIT_TYPE: &str = "VisitType";
pub const DELIVERED_VISIT_DATE: &str = "DeliveredVisitDate";
pub const DELIVERED_ENTRY_TIME: &str = "DeliveredEntryTime";
pub const DELIVERED_EXIT_TIME: &str = "DeliveredExitTime";
