//! The council's CPLI extract (issue 9): any bytes read as `gateway cplis load` reads them; an
//! extract that loads creates its organisations, is written as the commissioned care export, matches
//! and costs the examples' visits and actuals files, and gives the commissioned vs actuals report.
#![no_main]

use chrono::NaiveDate;
use gateway::ingest::cplis;
use gateway::pipeline::Gateway;
use gateway::reports::{self, ActualsOptions, WeekActuals};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let env = gateway_fuzz::env();
    let path = env.write_input("cplis.csv", data);
    let Ok(extract) = cplis::read_extract(&path) else { return };
    let _ = cplis::organisations(&extract, vec![env.org.clone()]);
    let _ = reports::commissioned_care_csv(&extract);
    let config = &env.gateway.config;
    for example in ["visits-week.csv", "actuals.csv"] {
        let r = Gateway::validate(config, None, None, Some(extract.clone()), &gateway_fuzz::example(example))
            .unwrap_or_else(|e| panic!("validate --cplis gave no result for {example}: {e}"));
        gateway_fuzz::render(&r);
    }
    // The examples' weeks (August 2022), empty weeks included, so every CPLI in force is costed.
    let day = |d| NaiveDate::from_ymd_opt(2022, 8, d).expect("a date");
    let opts = ActualsOptions { from: day(1), to: day(28), differences_only: false, include_empty_weeks: true };
    let weeks = WeekActuals::new(&extract, &config.rules.visit_types, opts.from, opts.to);
    // An overflow is the report's error naming the CPLI (issue 9), not a panic.
    if let Ok(rows) = reports::commissioned_vs_actuals(&extract, &weeks, &opts) {
        for row in rows {
            let _ = row.cells();
        }
    }
});
