//! The provider file gateway: home-care providers drop visits and carers CSV files; the gateway judges
//! every row against the council's rules, matches visits to CPLIs, stores them and answers.
//!
//! # Layout
//! - `claims`: one-off claims of the hospital incentive (issue 12): a claim, its decision, its email and lists.
//! - `cli`: the command line (SPEC 6) and what each command does.
//! - `control`: the control socket: commands sent to the running server while it holds the store.
//! - `config`: `gateway.toml`, every field with a working default.
//! - `council`: the council's own files (issue 10): a CPLI extract dropped into its inbox, loaded and answered.
//! - `data_dir`: the folders under `--data`.
//! - `disputes`: disputes (issue 12): the council queries a visit, the provider answers, the council closes it.
//! - `domain`: plain types with no I/O (dates, visit types, CPLIs, visits, periods).
//! - `exports`: the files kept current in each organisation's and the council's `exports/` (issue 10).
//! - `fault`: named points where a test can make the process die, to prove crash safety.
//! - `ingest`: one file in, one result out: detect, read, judge, match, apply.
//! - `outcome`: what a file's processing answers (`ImportResult`, codes, issues), below both `ingest` and `store`.
//! - `mail`: email of results: contacts, templates, the durable outbox and its sender.
//! - `pipeline`: a file's way from inbox or command line through the spool to results and archive.
//! - `queue`: the engine's work queue as the server's front doors feed it, in the order files were finished.
//! - `schedule`: the council's clock while serving: periods locked on schedule, the daily summary's figures.
//! - `serve`: `gateway serve`: the SFTP server and the watcher feeding one work queue.
//! - `sftp`: the SFTP front door: logins, the per-organisation folders, uploads handed to the engine.
//! - `reports`: what the council gets out: actuals from visits, commissioned vs actuals, hospital incentive, the export.
//! - `store`: sled, all-or-nothing imports, history, queries.
//! - `watch`: the inbox watcher that feeds the pipeline.

pub mod claims;
pub mod cli;
pub mod config;
pub mod control;
pub mod council;
pub mod data_dir;
pub mod disputes;
pub mod domain;
pub mod exports;
pub mod fault;
pub mod ingest;
pub mod mail;
pub mod outcome;
pub mod pipeline;
pub mod queue;
pub mod schedule;
pub mod serve;
pub mod sftp;
pub mod reports;
pub mod store;
pub mod watch;
