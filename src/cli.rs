//! The command line (SPEC 6): commands, their flags, and what each one answers. Answers are written
//! to the writer `run` is given (the binary gives it stdout); notes beside them go to stderr.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::domain::{uk_date, MatchStatus};
use crate::ingest::cplis::read_extract;
use crate::outcome::ImportResult;
use crate::mail::{Contact, EmailAddress, Notify};
use crate::pipeline::{Gateway, GatewayError};
use crate::reports::{self, actuals, hospital, ActualsOptions};
use crate::store::{Store, StoreError, StoredVisit};

#[derive(Debug, Parser)]
#[command(name = "gateway", version, about = "The provider file gateway: visits, actuals and carers files judged, matched to CPLIs, stored and answered; the council's exports and reports")]
pub struct Cli {
    /// A gateway.toml (see examples/gateway.toml); without one every setting has its default.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// The data folder (default: `data_dir` from the configuration, `./data`).
    #[arg(long, global = true)]
    pub data: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand, Serialize, Deserialize)]
pub enum Command {
    /// Run the gateway: the SFTP server and the inbox watcher; every file is processed once complete.
    Serve {
        /// Listen for SFTP here (default: `sftp.listen`, 127.0.0.1:2222).
        #[arg(long)]
        listen: Option<String>,
        /// Load the examples' CPLIs and allow the demo login (key keys/demo_ed25519). Never in production.
        #[arg(long)]
        demo: bool,
    },
    /// Judge files offline and store nothing. Exit 0 when clean, 1 when any row or file has an error.
    Validate {
        /// Match against this CPLI extract instead of the stored CPLIs.
        #[arg(long)]
        cplis: Option<PathBuf>,
        /// Judge as this organisation (its CPLIs, carers and visits, when the data folder has them).
        #[arg(long)]
        org: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Process files exactly as if dropped into the organisation's inbox. Exit 1 when any has an error.
    Import {
        #[arg(long)]
        org: String,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// The council's CPLI extract.
    Cplis {
        #[command(subcommand)]
        command: CplisCommand,
    },
    /// Provider organisations.
    Org {
        #[command(subcommand)]
        command: OrgCommand,
    },
    /// Payment periods.
    Period {
        #[command(subcommand)]
        command: PeriodCommand,
    },
    /// SFTP logins.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Stored visits.
    Visits {
        #[command(subcommand)]
        command: VisitsCommand,
    },
    /// The organisation's subscribed contacts: who is emailed each file's result.
    Contact {
        #[command(subcommand)]
        command: ContactCommand,
    },
    /// Emails waiting to be sent.
    Outbox {
        #[command(subcommand)]
        command: OutboxCommand,
    },
    /// Exports the council takes out.
    Export {
        #[command(subcommand)]
        command: ExportCommand,
    },
    /// The council's reports (SPEC 5).
    Report {
        #[command(subcommand)]
        command: ReportCommand,
    },
    /// One-off claims of the hospital incentive (SPEC 9).
    Claim {
        #[command(subcommand)]
        command: ClaimCommand,
    },
    /// Disputes: the council's queries on visits (SPEC 8).
    Dispute {
        #[command(subcommand)]
        command: DisputeCommand,
    },
}

#[derive(Debug, Subcommand, Serialize, Deserialize)]
pub enum DisputeCommand {
    /// Raise a dispute on a visit; the provider's contacts are emailed, as for the council's
    /// disputes file.
    Raise {
        #[arg(long)]
        org: String,
        /// The VisitRef the provider sent.
        #[arg(long)]
        visit: String,
        /// 1 to 10, or the type's name (docs/disputes.md).
        #[arg(long = "type")]
        dispute_type: String,
        #[arg(long)]
        details: String,
    },
    /// Close a dispute (Resolved); --delete-visit deletes its visit too (the guide's reason 11).
    Close {
        /// The dispute's id, e.g. D3 (`dispute list`).
        #[arg(long)]
        id: String,
        #[arg(long)]
        note: Option<String>,
        #[arg(long)]
        delete_visit: bool,
    },
    /// Every dispute (of one organisation with --org; of one status with --status), oldest first.
    List {
        #[arg(long)]
        org: Option<String>,
        /// In Dispute, Resolution Requested, Resolved, Overdue, or Open (every one not resolved);
        /// any case, `-` or `_` for spaces.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, value_enum, default_value_t = ListFormat::Csv)]
        format: ListFormat,
    },
}

#[derive(Debug, Subcommand, Serialize, Deserialize)]
pub enum ClaimCommand {
    /// Every claim (of one organisation with --org), oldest first, with its status and decision.
    List {
        #[arg(long)]
        org: Option<String>,
        #[arg(long, value_enum, default_value_t = ListFormat::Csv)]
        format: ListFormat,
    },
    /// Accept a pending claim (at its amount, or --amount) or reject it (--note required); the
    /// provider's contacts are emailed, as for the council's claim decisions file.
    Decide {
        /// The claim's id, e.g. C12 (`claim list`).
        #[arg(long)]
        id: String,
        #[arg(long, value_enum)]
        decision: DecisionArg,
        /// The amended amount, in pounds, for an accepted claim (more than 0, at most two decimals).
        #[arg(long, allow_hyphen_values = true)]
        amount: Option<String>,
        #[arg(long)]
        note: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
pub enum DecisionArg {
    Accepted,
    Rejected,
}

impl Command {
    /// The same command with every file it names made absolute against `cwd`: a command sent to the
    /// running server (issue 10) names files as its user meant them, not as the server's folder would.
    pub fn with_absolute_paths(self, cwd: &Path) -> Command {
        let abs = |p: PathBuf| if p.is_absolute() { p } else { cwd.join(p) };
        let all = |ps: Vec<PathBuf>| ps.into_iter().map(abs).collect();
        match self {
            Command::Validate { cplis, org, format, files } => Command::Validate { cplis: cplis.map(abs), org, format, files: all(files) },
            Command::Import { org, format, files } => Command::Import { org, format, files: all(files) },
            Command::Cplis { command: CplisCommand::Load { file } } => Command::Cplis { command: CplisCommand::Load { file: abs(file) } },
            Command::User { command: UserCommand::Add { org, council, name, keys, password_stdin } } => {
                Command::User { command: UserCommand::Add { org, council, name, keys: all(keys), password_stdin } }
            }
            other => other,
        }
    }

    /// Whether the command reads a line of standard input (`user add --password-stdin`).
    pub fn reads_input(&self) -> bool {
        matches!(self, Command::User { command: UserCommand::Add { password_stdin: true, .. } })
    }
}

#[derive(Debug, Subcommand, Serialize, Deserialize)]
pub enum ExportCommand {
    /// The commissioned care export of an organisation, to stdout (also kept in its exports/ folder).
    Commissioned {
        #[arg(long)]
        org: String,
    },
}

#[derive(Debug, Subcommand, Serialize, Deserialize)]
pub enum ReportCommand {
    /// Comm., Actual, Frust. and Diff. in hours and cost, per CPLI and Monday-start week.
    CommissionedVsActuals {
        #[arg(long)]
        org: String,
        /// First day (YYYY-MM-DD); the report starts with the week holding it.
        #[arg(long)]
        from: chrono::NaiveDate,
        /// Last day (YYYY-MM-DD); the report ends with the week holding it.
        #[arg(long)]
        to: chrono::NaiveDate,
        /// Only weeks where Actual + Frust. differ from Comm.
        #[arg(long)]
        differences_only: bool,
        /// Also weeks of a CPLI in force for which no visit was sent.
        #[arg(long)]
        include_empty_weeks: bool,
        #[arg(long, value_enum, default_value_t = ListFormat::Csv)]
        format: ListFormat,
        /// Also write the report into the organisation's exports/ folder.
        #[arg(long)]
        write_export: bool,
    },
    /// What the provider may claim for clients in hospital, for each stay that begins between --from
    /// and --to: 50% of the missed visits' planned cost; DAPL pays them all when care resumes within 7
    /// working days (a longer stay: nothing), LWAH those of the first 14 days (docs/claims.md).
    HospitalIncentive {
        #[arg(long)]
        org: String,
        #[arg(long)]
        from: chrono::NaiveDate,
        #[arg(long)]
        to: chrono::NaiveDate,
        #[arg(long, value_enum, default_value_t = ListFormat::Csv)]
        format: ListFormat,
    },
}

#[derive(Debug, Subcommand, Serialize, Deserialize)]
pub enum ContactCommand {
    /// Subscribe an address (or change the name and choice of one already subscribed).
    Add {
        #[arg(long, required_unless_present = "council")]
        org: Option<String>,
        /// A council officer, for the council's daily summary (schedule.summary_at) instead of an
        /// organisation's contact.
        #[arg(long, conflicts_with_all = ["org", "notify", "no_notify"])]
        council: bool,
        #[arg(long)]
        email: EmailAddress,
        /// The person's name, for the greeting and the To: line.
        #[arg(long)]
        name: Option<String>,
        /// every: an email per file; problems: only files with rejected rows, data-quality issues or
        /// that failed; digest: one email a day (mail.digest_at) listing the day's files.
        #[arg(long, value_enum, default_value_t = Notify::Every)]
        notify: Notify,
        /// Keep the contact but send it nothing (same as --notify off).
        #[arg(long, conflicts_with = "notify")]
        no_notify: bool,
    },
    /// The contacts of one organisation, or of all.
    List {
        #[arg(long)]
        org: Option<String>,
        /// The council's contacts instead.
        #[arg(long, conflicts_with = "org")]
        council: bool,
    },
    /// Unsubscribe an address: it gets nothing more, not even mail already waiting for it.
    Remove {
        #[arg(long, required_unless_present = "council")]
        org: Option<String>,
        /// A council contact.
        #[arg(long, conflicts_with = "org")]
        council: bool,
        #[arg(long)]
        email: EmailAddress,
    },
}

#[derive(Debug, Subcommand, Serialize, Deserialize)]
pub enum OutboxCommand {
    /// Every email not yet sent: id, to, subject, attempts, next attempt, last error.
    List {
        /// List the emails already sent instead.
        #[arg(long)]
        sent: bool,
    },
}

#[derive(Debug, Subcommand, Serialize, Deserialize)]
pub enum CplisCommand {
    /// Load (upsert by CPLIID) the council's extract; creates the organisations and services it names.
    Load { file: PathBuf },
}

#[derive(Debug, Subcommand, Serialize, Deserialize)]
pub enum OrgCommand {
    /// Add an organisation (and its folders under the data folder).
    Add {
        #[arg(long)]
        name: String,
        /// The council's OrganisationRef GUID.
        #[arg(long = "ref")]
        org_ref: Option<String>,
    },
    /// List organisations and their folders.
    List,
}

#[derive(Debug, Subcommand, Serialize, Deserialize)]
pub enum PeriodCommand {
    /// Lock every visit date on or before DATE (YYYY-MM-DD): rows dated then are rejected PERIOD_LOCKED.
    Lock {
        #[arg(long)]
        until: chrono::NaiveDate,
    },
}

#[derive(Debug, Subcommand, Serialize, Deserialize)]
pub enum UserCommand {
    /// Add an SFTP login for an organisation (--org) or the council (--council), or add keys / set the
    /// password of an existing one.
    // One of the two is needed, and clap's message names both (since 2026-12-03; it asked for --org).
    #[command(group(clap::ArgGroup::new("owner").required(true).args(["org", "council"])))]
    Add {
        #[arg(long)]
        org: Option<String>,
        /// A council login: it sees the council's own folder (its inbox takes the CPLI extract), never a provider's.
        #[arg(long)]
        council: bool,
        #[arg(long)]
        name: String,
        /// An OpenSSH public key file (ed25519, ECDSA or RSA); repeat for several.
        #[arg(long = "key")]
        keys: Vec<PathBuf>,
        /// Read the password from standard input (first line). At least 9 characters, upper and lower case, a digit.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List the logins, their organisations and how each logs in.
    List,
    /// Remove a login; its open sessions end when they next log in.
    Remove {
        #[arg(long)]
        name: String,
    },
    /// Lift a password lockout of a login (from every address), also while `serve` runs: the server
    /// applies it at the login's next attempt.
    Unlock {
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, Subcommand, Serialize, Deserialize)]
pub enum VisitsCommand {
    /// The organisation's current visits.
    List {
        #[arg(long)]
        org: String,
        #[arg(long, value_enum)]
        status: Option<MatchFilter>,
        #[arg(long, value_enum, default_value_t = ListFormat::Csv)]
        format: ListFormat,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
pub enum ListFormat {
    Csv,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
pub enum MatchFilter {
    Matched,
    Unmatched,
}

/// A failure to write the answer (a closed pipe is recognised by the caller in its source).
fn output(source: std::io::Error) -> GatewayError {
    GatewayError::Io { context: "writing the output".into(), source }
}

/// Exit status: the command did what it was asked and found nothing wrong.
pub const SUCCESS: u8 = 0;
/// Exit status of `validate` and `import` when any file or row has an error.
pub const HAS_ERRORS: u8 = 1;
/// Exit status when the command could not do what it was asked.
pub const FAILED: u8 = 2;

/// Where a command writes its answer (`out`) and its notes beside it (`err`), and where
/// `--password-stdin` reads from (`input`). The binary gives its own stdout, stderr and stdin; the
/// control server gives the socket's frames (issue 10).
pub struct Io<'a> {
    pub out: &'a mut dyn Write,
    pub err: &'a mut dyn Write,
    pub input: &'a mut dyn BufRead,
}

/// Why a command run from the command line failed: the gateway's own error, or the running server
/// it was sent to (issue 10). Both print as their message alone.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    #[error(transparent)]
    Control(#[from] crate::control::ControlError),
}

/// Runs one command from the command line and returns its exit status; a failure is printed on
/// `io.err`. With the store free the command opens it; held by a running `serve`, the command is sent
/// to that server's control socket and answers as it would have here (issue 10). `serve` is run by
/// the binary, which owns the runtime.
pub fn run(cli: Cli, io: &mut Io) -> u8 {
    match dispatch(cli, io) {
        Ok(code) => code,
        Err(e) => report_failure(&e, io.err),
    }
}

/// Prints a failed command's message as `gateway: MESSAGE: CAUSE...` and gives its exit status; a
/// closed pipe (`gateway visits list | head`) is no failure: the reader has what it wanted. The
/// control server answers a failure through here too, so the message is the same either way.
pub fn report_failure(e: &(dyn std::error::Error + 'static), err: &mut dyn Write) -> u8 {
    let mut chain = Some(e);
    let mut message = String::new();
    while let Some(cause) = chain {
        if cause.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) {
            return SUCCESS;
        }
        // An error whose message already ends with its cause's (`reading X: {source}`) is not
        // followed by the cause again.
        let text = cause.to_string();
        if !message.ends_with(&text) {
            if !message.is_empty() {
                message.push_str(": ");
            }
            message.push_str(&text);
        }
        chain = cause.source();
    }
    let _ = writeln!(err, "gateway: {message}");
    FAILED
}

fn dispatch(cli: Cli, io: &mut Io) -> Result<u8, CommandError> {
    let config = Config::load(cli.config.as_deref()).map_err(|e| GatewayError::Invalid(e.to_string()))?;
    let data = cli.data.clone().unwrap_or_else(|| config.data_dir.clone());
    let dir = crate::data_dir::DataDir::new(&data);
    enum Opened {
        Store(Store),
        // Boxed: the gateway (its whole configuration) is far larger than a store handle.
        Gateway(Box<Gateway>),
    }
    let opened = match &cli.command {
        Command::Serve { .. } => unreachable!("serve is run by main"),
        // Judging alone needs no store, and `validate` never makes one: with an organisation it
        // judges against what the data folder holds for it, when it has a store.
        Command::Validate { org: None, .. } => return Ok(execute_validate(&config, None, cli.command, io)?),
        Command::Validate { .. } if !dir.db().exists() => return Ok(execute_validate(&config, None, cli.command, io)?),
        Command::Validate { .. } => Store::open(&dir.db()).map(Opened::Store).map_err(GatewayError::from),
        _ => Gateway::open(config.clone(), &data).map(|gw| Opened::Gateway(Box::new(gw))),
    };
    match opened {
        Ok(Opened::Store(store)) => Ok(execute_validate(&config, Some(&store), cli.command, io)?),
        Ok(Opened::Gateway(gw)) => Ok(execute(&gw, cli.command, io)?),
        // A live server holds the store: the command runs there. With no server listening (another
        // one-shot command holds it) the answer is the store's own.
        Err(GatewayError::Store(in_use @ StoreError::InUse { .. })) => {
            forward_readable(&cli.command)?;
            match crate::control::forward(&dir, cli.command, io) {
                Err(crate::control::ControlError::Unreachable { .. }) => Err(GatewayError::Store(in_use).into()),
                answered => Ok(answered?),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Runs a command (not `serve`) against an open gateway: the one-shot path and the control server
/// (issue 10) both come here. `import` processes its files here and now; the server hands them to
/// its queue instead (`control`).
pub fn execute(gw: &Gateway, command: Command, io: &mut Io) -> Result<u8, GatewayError> {
    let out = &mut *io.out;
    match command {
        Command::Serve { .. } => Err(GatewayError::Invalid("`serve` cannot be run from another command".into())),
        Command::User { command } => user(gw, command, io),
        command @ Command::Validate { .. } => execute_validate(&gw.config, Some(&gw.store), command, io),
        Command::Import { org, format, files } => {
            let org = gw.org(&org)?;
            readable(&files)?;
            let results = gw.exports_once(|| files.iter().map(|f| gw.import_file(&org, f)).collect::<Result<Vec<_>, _>>())?;
            print_results(&results, format, out)
        }
        Command::Cplis { command: CplisCommand::Load { file } } => {
            let load = gw.load_cplis(&file)?;
            writeln!(out,
                "loaded {} CPLIs ({} new, {} updated) for {}; {} organisations created; {} stored visits and actuals rows changed match status",
                load.cplis, load.new, load.updated, load.organisations.join(", "), load.organisations_created, load.rematched
            ).map_err(output)?;
            Ok(SUCCESS)
        }
        Command::Org { command: OrgCommand::Add { name, org_ref } } => {
            let org = gw.add_org(&name, org_ref.as_deref())?;
            writeln!(out, "{} ({}): inbox {}", org.name, org.slug, gw.data.inbox(&org.slug).display()).map_err(output)?;
            Ok(SUCCESS)
        }
        Command::Org { command: OrgCommand::List } => {
            for o in gw.store.orgs()? {
                let services: Vec<&str> = o.services.iter().map(|s| s.name.as_str()).collect();
                writeln!(out, "{}\t{}\t{}\t{}", o.name, o.slug, o.org_ref.map(|g| g.to_string()).unwrap_or_default(), services.join("; ")).map_err(output)?;
            }
            Ok(SUCCESS)
        }
        Command::Period { command: PeriodCommand::Lock { until } } => {
            let (p, standing) = gw.lock_until(until, crate::domain::LockedBy::Hand)?;
            let day = crate::domain::uk_date;
            match standing {
                // Since 2026-12-03; it said it had locked to the earlier date.
                Some(standing) => writeln!(
                    out,
                    "already locked: every visit dated on or before {} is locked, so {} is too; a lock never moves back, nothing changed",
                    day(standing),
                    day(until)
                ),
                None => {
                    let at = if p.end == until { "the last day of" } else { "in" };
                    writeln!(out, "locked every visit dated on or before {}, {at} {}", day(until), p.describe())
                }
            }
            .map_err(output)?;
            Ok(SUCCESS)
        }
        Command::Visits { command: VisitsCommand::List { org, status, format } } => {
            let org = gw.org(&org)?;
            let visits = gw.store.current_visits(&org.slug).filter(|r| match (r, status) {
                (Ok(StoredVisit { visit: Some(v), .. }), Some(f)) => matches!(v.matched, MatchStatus::Matched { .. }) == (f == MatchFilter::Matched),
                _ => true,
            });
            list_visits(visits, format, out)?;
            Ok(SUCCESS)
        }
        Command::Contact { command } => contact(gw, command, out),
        Command::Outbox { command: OutboxCommand::List { sent } } => outbox_list(gw, sent, io),
        Command::Export { command: ExportCommand::Commissioned { org } } => {
            let org = gw.org(&org)?;
            let body = gw.commissioned_export(&org)?;
            gw.write_commissioned_export(&org)?;
            print_bytes(&body, out)
        }
        Command::Report { command: ReportCommand::CommissionedVsActuals { org, from, to, differences_only, include_empty_weeks, format, write_export } } => {
            let org = gw.org(&org)?;
            let opts = ActualsOptions { from, to, differences_only, include_empty_weeks };
            let rows = gw.commissioned_vs_actuals(&org, &opts)?;
            let body = table(&actuals::COLUMNS, rows.iter().map(|r| r.cells()), format);
            if write_export {
                let ext = if format == ListFormat::Json { "json" } else { "csv" };
                let path = gw.write_export(&org, &format!("commissioned-vs-actuals_{from}_{to}.{ext}"), &body)?;
                writeln!(io.err, "written to {}", path.display()).map_err(output)?;
            }
            print_bytes(&body, out)
        }
        Command::Claim { command: ClaimCommand::List { org, format } } => {
            let org = org.map(|o| gw.org(&o)).transpose()?;
            let claims = gw.claims(org.as_ref())?;
            let columns: &[&str] = if format == ListFormat::Json { &crate::claims::LIST_KEYS } else { &crate::claims::COUNCIL_COLUMNS };
            print_bytes(&table(columns, crate::claims::list_rows(&claims), format), out)
        }
        Command::Claim { command: ClaimCommand::Decide { id, decision, amount, note } } => {
            let id = crate::claims::ClaimId::parse(&id).ok_or_else(|| GatewayError::Invalid(format!("'{id}' is not a claim id: C and a number, e.g. C12")))?;
            let decision = match decision {
                DecisionArg::Accepted => crate::claims::Decision::Accepted,
                DecisionArg::Rejected => crate::claims::Decision::Rejected,
            };
            if let Some(n) = &note {
                long_text("--note", n)?;
            }
            let c = gw.decide_claim(id, decision, amount.as_deref(), note)?;
            let amount = c.decided.as_ref().and_then(|d| d.accepted_amount).map(|a| format!(" at £{}", reports::money_text(a))).unwrap_or_default();
            writeln!(out, "claim {} ({}, ClaimRef {}) {}{amount}", c.id, c.organisation, c.claim_ref, c.status.as_str().to_lowercase()).map_err(output)?;
            Ok(SUCCESS)
        }
        Command::Dispute { command } => dispute(gw, command, out),
        Command::Report { command: ReportCommand::HospitalIncentive { org, from, to, format } } => {
            let org = gw.org(&org)?;
            let rows = gw.hospital_incentive(&org, from, to)?;
            print_bytes(&table(&hospital::COLUMNS, rows.iter().map(|r| r.cells()), format), out)
        }
    }
}

fn table<R: AsRef<[String]>>(columns: &[&str], rows: impl IntoIterator<Item = R>, format: ListFormat) -> Vec<u8> {
    match format {
        ListFormat::Csv => reports::table_csv(columns, rows),
        ListFormat::Json => {
            let mut s = reports::table_json(columns, rows);
            s.push('\n');
            s.into_bytes()
        }
    }
}

fn print_bytes(body: &[u8], out: &mut dyn Write) -> Result<u8, GatewayError> {
    out.write_all(body).and_then(|_| out.flush()).map_err(output)?;
    Ok(SUCCESS)
}

fn contact(gw: &Gateway, command: ContactCommand, out: &mut dyn Write) -> Result<u8, GatewayError> {
    match command {
        ContactCommand::Add { council: true, email, name, .. } => {
            let name = name.map(|n| n.trim().to_string()).filter(|n| !n.is_empty());
            // A council officer gets the daily summary, whatever `notify` says.
            let contact = Contact { email, name, notify: Notify::Digest };
            gw.store.put_council_contact(&contact)?;
            writeln!(out, "the council: {} gets the daily summary at {}", contact.mailbox(), gw.config.schedule.summary_at).map_err(output)?;
        }
        ContactCommand::List { council: true, .. } => {
            for c in gw.store.council_contacts()? {
                writeln!(out, "(council)\t{}\t{}\tsummary", c.email, c.name.as_deref().unwrap_or("")).map_err(output)?;
            }
        }
        ContactCommand::Remove { council: true, email, .. } => {
            if !gw.store.remove_council_contact(&email.key())? {
                return Err(GatewayError::Invalid(format!("the council has no contact {email}")));
            }
            writeln!(out, "the council: {email} removed; it gets no more email").map_err(output)?;
        }
        ContactCommand::Add { org, email, name, notify, no_notify, .. } => {
            let org = gw.org(org.as_deref().unwrap_or_default())?;
            let name = name.map(|n| n.trim().to_string()).filter(|n| !n.is_empty());
            let contact = Contact { email, name, notify: if no_notify { Notify::Off } else { notify } };
            gw.store.put_contact(&org.slug, &contact)?;
            writeln!(out, "{}: {} ({}) gets {}", org.name, contact.mailbox(), contact.notify.as_str(), describe(contact.notify)).map_err(output)?;
        }
        ContactCommand::List { org, .. } => {
            let orgs = match org {
                Some(name) => vec![gw.org(&name)?],
                None => gw.store.orgs()?,
            };
            for o in orgs {
                for c in gw.store.contacts(&o.slug)? {
                    writeln!(out, "{}\t{}\t{}\t{}", o.name, c.email, c.name.as_deref().unwrap_or(""), c.notify.as_str()).map_err(output)?;
                }
            }
        }
        ContactCommand::Remove { org, email, .. } => {
            let org = gw.org(org.as_deref().unwrap_or_default())?;
            if !gw.store.remove_contact(&org.slug, &email.key())? {
                return Err(GatewayError::Invalid(format!("{} has no contact {email}", org.name)));
            }
            writeln!(out, "{}: {email} removed; it gets no more email", org.name).map_err(output)?;
        }
    }
    Ok(SUCCESS)
}

fn describe(notify: Notify) -> &'static str {
    match notify {
        Notify::Every => "an email for every file",
        Notify::Problems => "an email only for files with rejected rows, data-quality issues or that failed",
        Notify::Digest => "one email a day listing the day's files",
        Notify::Off => "no email",
    }
}

fn outbox_list(gw: &Gateway, sent: bool, io: &mut Io) -> Result<u8, GatewayError> {
    let time = |t: chrono::DateTime<chrono::Utc>| t.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M:%S").to_string();
    let subject = |q: &crate::mail::Queued| {
        crate::mail::outbox::render(gw, q).map_or_else(|e| format!("({e})"), |r| r.subject)
    };
    let mut w = csv::WriterBuilder::new().delimiter(b'\t').from_writer(&mut *io.out);
    let write_err = |e: csv::Error| GatewayError::Io { context: "writing the list".into(), source: csv_io(e) };
    if sent {
        w.write_record(["id", "to", "subject", "attempts", "sent"]).map_err(write_err)?;
        for q in gw.store.sent()? {
            let at = q.sent_at.map(time).unwrap_or_default();
            w.write_record([q.id.as_str(), q.contact.email.as_str(), &subject(&q), &(q.attempts + 1).to_string(), &at]).map_err(write_err)?;
        }
    } else {
        w.write_record(["id", "to", "subject", "attempts", "next_attempt", "last_error"]).map_err(write_err)?;
        for q in gw.store.waiting()? {
            let cells = [
                q.id.clone(),
                q.contact.email.to_string(),
                subject(&q),
                q.attempts.to_string(),
                time(q.next_attempt),
                q.last_error.clone().unwrap_or_default(),
            ];
            w.write_record(&cells).map_err(write_err)?;
        }
    }
    w.flush().map_err(|e| GatewayError::Io { context: "writing the list".into(), source: e })?;
    drop(w);
    if !sent {
        for (slug, email, files) in gw.store.digest_lines()? {
            writeln!(io.err, "{slug}: {files} file(s) wait for {email}'s daily digest at {}", gw.config.mail.digest_at).map_err(output)?;
        }
    }
    Ok(SUCCESS)
}

/// The files a command sent to the running server will read are checked here first, with the
/// paths as typed, as the one-shot command checks them before judging any (since 2026-12-03: a
/// served `import` stored the files before an unreadable one, and its message named the file by
/// the absolute path the server was sent).
fn forward_readable(command: &Command) -> Result<(), GatewayError> {
    match command {
        Command::Import { files, .. } => readable(files),
        // The extract and the keys too (read and parsed), in the order the one-shot reads them
        // (since 2026-12-03; their messages named the absolute path the server was sent).
        Command::Validate { files, cplis, .. } => {
            readable(files)?;
            cplis.iter().try_for_each(|p| Ok(crate::ingest::cplis::check_readable(p)?))
        }
        Command::Cplis { command: CplisCommand::Load { file } } => Ok(crate::ingest::cplis::check_readable(file)?),
        Command::User { command: UserCommand::Add { keys, .. } } => keys.iter().try_for_each(|k| read_key(k).map(drop)),
        _ => Ok(()),
    }
}

/// A public key file named by `user add --key`, read and checked: its key line.
fn read_key(path: &Path) -> Result<String, GatewayError> {
    let text = std::fs::read_to_string(path).map_err(|source| GatewayError::Io { context: format!("reading {}", path.display()), source })?;
    crate::sftp::users::parse_public_key(&text, &path.display().to_string()).map_err(|e| GatewayError::Invalid(e.to_string()))
}

/// Every file named can be opened: found before any is judged, so that `import` never stops after
/// storing some files with nothing printed about them, and the message names the file.
pub(crate) fn readable(files: &[PathBuf]) -> Result<(), GatewayError> {
    for f in files {
        let failed = |source| GatewayError::Io { context: format!("cannot read {} (nothing was imported or judged)", f.display()), source };
        let opened = std::fs::File::open(f).map_err(failed)?;
        // A folder opens too (since 2026-12-03 it is refused here, not after the files before it).
        if !opened.metadata().map_err(failed)?.is_file() {
            return Err(failed(std::io::Error::other("it is not a file (a folder?): name the CSV files themselves")));
        }
    }
    Ok(())
}

/// `validate`: `store` is the data folder's, when it has one, for judging as an organisation.
fn execute_validate(config: &Config, store: Option<&Store>, command: Command, io: &mut Io) -> Result<u8, GatewayError> {
    let Command::Validate { cplis, org, format, files } = command else { unreachable!("only validate comes here") };
    readable(&files)?;
    let known = match store {
        Some(s) => s.orgs()?,
        None => Vec::new(),
    };
    let cplis = cplis.map(|p| read_extract(&p, &known)).transpose()?;
    // The organisation as loading the extract would leave it (its GUID and services), so that
    // OrganisationRef and ServiceRef are checked as the import after that load checks them (since
    // 2026-12-03; an organisation named only in the extract had neither, and nothing was checked).
    let as_loaded = |org: crate::domain::Organisation| match &cplis {
        Some(c) => crate::ingest::cplis::organisations(c, vec![org.clone()]).into_iter().find(|o| o.slug == org.slug).unwrap_or(org),
        None => org,
    };
    let store = store.filter(|_| org.is_some());
    let org = match (&org, store) {
        (Some(name), Some(s)) => match s.org(name)? {
            Some(org) => Some(as_loaded(org)),
            None => {
                // Named only in the extract given with --cplis (not loaded yet): judged as that one.
                // A misspelt name would be judged as a new, empty organisation: refused, as `import` refuses it.
                let named = crate::domain::Organisation::new(name, None);
                if !cplis.iter().flatten().any(|c| named.is_named(&c.organisation_name)) {
                    return Err(GatewayError::UnknownOrganisation { name: name.clone(), known: known.iter().map(|o| o.name.clone()).collect() });
                }
                Some(as_loaded(named))
            }
        },
        (Some(name), None) => Some(as_loaded(crate::domain::Organisation::new(name, None))),
        (None, _) => None,
    };
    let mut results = Vec::new();
    for f in &files {
        results.push(Gateway::validate(config, store, org.as_ref(), cplis.clone(), f)?);
    }
    print_results(&results, format, io.out)
}

pub fn print_results(results: &[ImportResult], format: Format, out: &mut dyn Write) -> Result<u8, GatewayError> {
    // Streamed from each result's issue log (issue 9: a million issues are never in memory).
    let mut out = std::io::BufWriter::new(out);
    let printed = (|| -> std::io::Result<()> {
        match (format, results) {
            (Format::Json, [one]) => one.write_json(&mut out, "")?,
            (Format::Json, many) => {
                out.write_all(if many.is_empty() { b"[" } else { b"[\n" })?;
                for (n, r) in many.iter().enumerate() {
                    if n > 0 {
                        out.write_all(b",\n")?;
                    }
                    r.write_json(&mut out, "  ")?;
                }
                out.write_all(if many.is_empty() { b"]" } else { b"\n]" })?;
            }
            (Format::Text, many) => {
                for r in many {
                    r.write_text(&mut out)?;
                }
                return out.flush();
            }
        }
        out.write_all(b"\n")?;
        out.flush()
    })();
    // A closed pipe (`| head`) ends the output quietly.
    if let Err(e) = printed {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(GatewayError::Io { context: "printing the results".into(), source: e });
        }
    }
    Ok(if results.iter().any(ImportResult::has_errors) { HAS_ERRORS } else { SUCCESS })
}

const LIST_COLUMNS: [&str; 20] = [
    "visit_ref", "status", "cpli_id", "unmatched_reason", "planned_visit_date", "planned_entry_time", "planned_exit_time",
    "visit_type", "delivered_visit_date", "delivered_entry_time", "delivered_exit_time", "comments", "variance_reason",
    "ssref", "nhs_number", "client_ref", "service_level", "service_name", "carer_ref", "import_id",
];

fn list_row(sv: &StoredVisit) -> Option<[Option<String>; 20]> {
    let v = sv.visit.as_ref()?;
    let (status, cpli, reason) = match &v.matched {
        MatchStatus::Matched { cpli_id } => ("Matched", Some(cpli_id.clone()), None),
        MatchStatus::Unmatched { reason } => ("Unmatched", None, Some(reason.clone())),
    };
    let d = v.delivered.as_ref();
    let t = |t: chrono::NaiveTime| Some(t.format("%H:%M:%S").to_string());
    Some([
        Some(v.visit_ref.clone()),
        Some(status.into()),
        cpli,
        reason,
        Some(v.planned_date.to_string()),
        t(v.planned_entry),
        t(v.planned_exit),
        Some(v.visit_type.clone()),
        d.map(|d| d.date.to_string()),
        d.and_then(|d| t(d.entry)),
        d.and_then(|d| t(d.exit)),
        v.comments.clone(),
        v.variance_reason.clone(),
        v.ssref.clone(),
        v.nhs_number.clone(),
        v.client_ref.as_ref().map(|g| g.to_string()),
        v.service_level.clone(),
        v.service_name.clone(),
        v.carer_ref.clone(),
        Some(sv.import_id.clone()),
    ])
}

/// The I/O error under a csv writer's error, so that a closed pipe is seen as one (csv's error names
/// no source: `gateway visits list | head -1` failed with "Broken pipe" and exit 2 until 2026-12-03).
fn csv_io(e: csv::Error) -> std::io::Error {
    match e.into_kind() {
        csv::ErrorKind::Io(io) => io,
        other => std::io::Error::other(format!("{other:?}")),
    }
}

/// Streams the list: a large organisation's visits are never held in memory at once.
fn list_visits(visits: impl Iterator<Item = crate::store::Result<StoredVisit>>, format: ListFormat, out: &mut dyn Write) -> Result<(), GatewayError> {
    let write_err = |e: std::io::Error| GatewayError::Io { context: "writing the list".into(), source: e };
    match format {
        ListFormat::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record(LIST_COLUMNS).map_err(|e| write_err(csv_io(e)))?;
            for sv in visits {
                if let Some(row) = list_row(&sv?) {
                    let cells = row.iter().map(|c| crate::outcome::excel_safe_cell(c.as_deref().unwrap_or("")).into_owned());
                    w.write_record(cells).map_err(|e| write_err(csv_io(e)))?;
                }
            }
            w.flush().map_err(write_err)?;
        }
        ListFormat::Json => {
            let mut out = std::io::BufWriter::new(out);
            out.write_all(b"[").map_err(write_err)?;
            let mut first = true;
            for sv in visits {
                let Some(row) = list_row(&sv?) else { continue };
                let obj: serde_json::Map<String, serde_json::Value> =
                    LIST_COLUMNS.iter().zip(row).map(|(k, v)| (k.to_string(), v.map_or(serde_json::Value::Null, Into::into))).collect();
                if !first {
                    out.write_all(b",").map_err(write_err)?;
                }
                first = false;
                out.write_all(b"\n").map_err(write_err)?;
                // An error here is the output's (a closed pipe, `| head`): a map of strings always serialises.
                serde_json::to_writer(&mut out, &obj).map_err(|e| write_err(std::io::Error::from(e)))?;
            }
            out.write_all(b"\n]\n").map_err(write_err)?;
            out.flush().map_err(write_err)?;
        }
    }
    Ok(())
}

fn user(gw: &Gateway, command: UserCommand, io: &mut Io) -> Result<u8, GatewayError> {
    use crate::sftp::users;
    let out = &mut *io.out;
    let dir = &gw.data;
    let logins = users::Users::new(dir.users());
    let invalid = |e: users::UserError| GatewayError::Invalid(e.to_string());
    match command {
        UserCommand::Add { org, council, name, keys, password_stdin } => {
            // While `serve` runs this runs inside it (issue 10), so the organisation is always looked
            // up in the store: its folders' name (slug) is what the login needs.
            let (owner, whose) = match org {
                Some(org) if !council => {
                    let org = gw.org(&org)?;
                    if !dir.inbox(&org.slug).exists() {
                        return Err(GatewayError::Invalid(format!("there is no organisation '{}' (no folder {})", org.name, dir.inbox(&org.slug).display())));
                    }
                    (crate::data_dir::Owner::Org(org.slug), org.name)
                }
                // Issue 10: the council's folder is made here too, so the login has it before `serve` next starts.
                _ => {
                    dir.ensure_council().map_err(|source| GatewayError::Io { context: "creating the council's folder".into(), source })?;
                    (crate::data_dir::Owner::Council, "the council".to_string())
                }
            };
            let mut lines = Vec::new();
            for k in &keys {
                lines.push(read_key(k)?);
            }
            let hash = if password_stdin {
                let mut pw = String::new();
                io.input.read_line(&mut pw).map_err(|source| GatewayError::Io { context: "reading the password".into(), source })?;
                let pw = pw.trim_end_matches(['\r', '\n']);
                users::check_password_policy(pw).map_err(invalid)?;
                Some(users::hash_password(pw).map_err(invalid)?)
            } else {
                None
            };
            let u = logins.add(&name, owner, lines, hash).map_err(invalid)?;
            writeln!(out, "{} for {whose}: {} key(s){}", u.login, u.keys.len(), if u.password_hash.is_some() { ", password" } else { "" }).map_err(output)?;
            Ok(SUCCESS)
        }
        UserCommand::List => {
            for u in logins.list().map_err(invalid)? {
                writeln!(out, "{}\t{}\t{} key(s)\t{}", u.login, u.org, u.keys.len(), if u.password_hash.is_some() { "password" } else { "no password" }).map_err(output)?;
            }
            Ok(SUCCESS)
        }
        UserCommand::Remove { name } => {
            let u = logins.remove(&name).map_err(invalid)?;
            writeln!(out, "removed {} ({})", u.login, u.org.in_words()).map_err(output)?;
            Ok(SUCCESS)
        }
        UserCommand::Unlock { name } => {
            let u = logins.request_unlock(&name).map_err(invalid)?;
            writeln!(out, "unlocked {} ({}): its next password attempt is let through to the password check", u.login, u.org.in_words()).map_err(output)?;
            Ok(SUCCESS)
        }
    }
}

/// A dispute's Details or Note, or a claim decision's Note, from the command line: as long as their
/// files allow (text 8000).
fn long_text(option: &str, text: &str) -> Result<(), GatewayError> {
    crate::ingest::cells::text(option, text, 8000).map_err(|p| GatewayError::Invalid(format!("{}: {}", p.code.as_str(), p.message)))
}

/// `gateway dispute raise|close|list`.
fn dispute(gw: &Gateway, command: DisputeCommand, out: &mut dyn Write) -> Result<u8, GatewayError> {
    use crate::disputes::{self, DisputeId, DisputeType, Raise};
    let line = |d: &disputes::Dispute| {
        format!("{} {} on visit {} ({}, {} {}), respond by {}", d.id, d.status.as_str(), d.visit_ref, d.organisation, d.dispute_type.number(), d.dispute_type.name(), uk_date(d.respond_by))
    };
    let parse_id = |id: &str| DisputeId::parse(id).ok_or_else(|| GatewayError::Invalid(format!("'{id}' is not a dispute id: D and a number, e.g. D3")));
    let text = match command {
        DisputeCommand::Raise { org, visit, dispute_type, details } => {
            // The disputes file's checks and codes (SPEC 6).
            let t = DisputeType::parse(&dispute_type)
                .ok_or_else(|| GatewayError::Invalid(format!("UNKNOWN_DISPUTE_TYPE: '{dispute_type}' is not a dispute type: 1 to 10, or a name such as \"Missing Comment\"")))?;
            let details = Some(details).filter(|d| !d.trim().is_empty()).ok_or_else(|| GatewayError::Invalid("REQUIRED: --details must say what the council asks the provider".into()))?;
            long_text("--details", &details)?;
            line(&gw.raise_dispute(Raise { organisation: &org, visit_ref: &visit, dispute_type: t, details })?)
        }
        DisputeCommand::Close { id, note, delete_visit } => {
            if let Some(n) = &note {
                long_text("--note", n)?;
            }
            let d = gw.close_dispute(parse_id(&id)?, note, delete_visit)?;
            format!("{} resolved{}", d.id, if d.visit_deleted { format!(": visit {} deleted", d.visit_ref) } else { String::new() })
        }
        DisputeCommand::List { org, status, format } => {
            let org = org.map(|o| gw.org(&o)).transpose()?;
            let today = gw.config.rules.current_day();
            let wanted = status.map(|s| s.replace(['-', '_'], " ").trim().to_lowercase());
            const STATUSES: [&str; 5] = ["in dispute", "resolution requested", "resolved", "overdue", "open"];
            if let Some(w) = wanted.as_deref().filter(|w| !STATUSES.contains(w)) {
                return Err(GatewayError::Invalid(format!("--status '{w}' is not a status: In Dispute, Resolution Requested, Resolved, Overdue, or Open (every one not resolved)")));
            }
            let all = gw.disputes(org.as_ref())?;
            let shown: Vec<_> = all
                .into_iter()
                .filter(|d| match wanted.as_deref() {
                    None => true,
                    Some("open") => d.is_open(),
                    Some(w) => d.shown_status(today).to_lowercase() == w,
                })
                .collect();
            let columns: &[&str] = if format == ListFormat::Json { &disputes::LIST_KEYS } else { &disputes::COUNCIL_COLUMNS };
            return print_bytes(&table(columns, disputes::list_rows(&shown, today), format), out);
        }
    };
    writeln!(out, "{text}").map_err(output)?;
    Ok(SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_captured(args: &[&str]) -> (u8, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run(Cli::parse_from(args), &mut Io { out: &mut out, err: &mut err, input: &mut &b""[..] });
        (code, String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap())
    }

    #[test]
    fn a_command_writes_its_answer_to_the_writer_it_is_given() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_str().unwrap();
        let (code, said, _) = run_captured(&["gateway", "--data", data, "org", "add", "--name", "Pearl Carers Ltd"]);
        assert_eq!(code, SUCCESS);
        assert!(said.starts_with("Pearl Carers Ltd (pearl-carers-ltd): inbox "), "{said}");
        let (_, said, _) = run_captured(&["gateway", "--data", data, "org", "list"]);
        assert_eq!(said, "Pearl Carers Ltd\tpearl-carers-ltd\t\t\n");
    }

    #[test]
    fn a_failure_is_printed_with_its_causes_and_exits_2() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_str().unwrap();
        let (code, out, err) = run_captured(&["gateway", "--data", data, "cplis", "load", "/nonexistent/cplis.csv"]);
        assert_eq!((code, out.as_str()), (FAILED, ""));
        assert!(err.starts_with("gateway: ") && err.contains("/nonexistent/cplis.csv") && err.ends_with('\n'), "{err}");
    }

    #[test]
    fn a_closed_pipe_under_the_csv_writer_ends_a_list_quietly_with_success() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut w = csv::WriterBuilder::new().buffer_capacity(1).from_writer(Closed);
        let e = GatewayError::Io { context: "writing the list".into(), source: csv_io(w.write_record(["a", "b"]).unwrap_err()) };
        let mut err = Vec::new();
        assert_eq!(report_failure(&e, &mut err), SUCCESS, "{e}");
        assert!(err.is_empty());
    }

    #[test]
    fn a_closed_pipe_ends_a_command_quietly_with_success() {
        let e = GatewayError::Io { context: "writing the output".into(), source: std::io::ErrorKind::BrokenPipe.into() };
        let mut err = Vec::new();
        assert_eq!(report_failure(&e, &mut err), SUCCESS);
        assert!(err.is_empty());
    }
}
