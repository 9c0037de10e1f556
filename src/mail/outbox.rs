//! The durable outbox: what a queued email is, and the worker that sends it, retrying with growing
//! delays (capped) while the server is down or refuses, and marks it sent so it is sent once.
//! Everything lives in the store, so a restart resumes the queue where it stopped. The worker is a
//! thread of its own, never a task on the async runtime (issue 9).

use std::sync::{mpsc, Arc};
use std::time::Duration;

use chrono::{DateTime, Local, NaiveDate, NaiveTime, TimeZone, Utc};
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart};
use lettre::Message;
use serde::{Deserialize, Serialize};

use super::contacts::Contact;
use crate::domain::Slug;
use super::render::{self, Rendered};
use super::transport::Transport;
use super::MailError;
use crate::config::MailConfig;
use crate::pipeline::Gateway;
use crate::schedule::CouncilSummary;

/// What an email is about; its words are rendered from the stored results when it is sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Letter {
    /// The answer to one file.
    File { import_id: String },
    /// A contact's daily digest of the files processed since the previous one.
    Digest { day: NaiveDate, import_ids: Vec<String> },
    /// The council's daily summary (issue 10), with its figures as they were when it was queued.
    CouncilSummary(Box<CouncilSummary>),
    /// A notice of something that happened to the organisation's data (issue 12: a claim decided),
    /// with its words as they were when it was queued.
    Notice(Box<Notice>),
}

/// One shape for every event email (issue 12): a headline and the facts a person needs, as label
/// and value, rendered by `templates/notice.txt` and `notice.html`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    pub subject: String,
    pub headline: String,
    pub organisation: String,
    pub facts: Vec<(String, String)>,
    pub closing: String,
}

/// A notice to each of the organisation's contacts (all but those who turned email off), under one
/// email id made from `kind` (`claim-C7`, `dispute-D3`).
pub fn notice_emails(contacts: &[Contact], org: &Slug, kind: &str, notice: &Notice, now: DateTime<Utc>) -> Vec<Queued> {
    let id = format!("{kind}-{}", uuid::Uuid::now_v7());
    contacts
        .iter()
        .filter(|c| c.notify != crate::mail::contacts::Notify::Off)
        .map(|c| Queued::new(id.clone(), org, c.clone(), Letter::Notice(Box::new(notice.clone())), now))
        .collect()
}

/// An email waiting (or, once `sent_at` is set, sent), keyed in the store by id and recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Queued {
    /// The import id for a file's email, `digest-<uuid>` for a digest.
    pub id: String,
    /// The organisation whose contact this is; none for a council contact (issue 10).
    #[serde(default)]
    pub slug: Option<Slug>,
    pub contact: Contact,
    pub letter: Letter,
    pub queued_at: DateTime<Utc>,
    pub attempts: u32,
    pub next_attempt: DateTime<Utc>,
    pub last_error: Option<String>,
    pub sent_at: Option<DateTime<Utc>>,
}

impl Queued {
    pub fn new(id: String, slug: &Slug, contact: Contact, letter: Letter, now: DateTime<Utc>) -> Queued {
        Queued { slug: Some(slug.clone()), ..Queued::to_council(id, contact, letter, now) }
    }

    /// An email to one of the council's contacts.
    pub fn to_council(id: String, contact: Contact, letter: Letter, now: DateTime<Utc>) -> Queued {
        Queued {
            id,
            slug: None,
            contact,
            letter,
            queued_at: now,
            attempts: 0,
            next_attempt: now,
            last_error: None,
            sent_at: None,
        }
    }

    /// A name for its `.eml` file: unique per email, safe on any file system.
    pub fn file_name(&self) -> String {
        let to: String =
            self.contact.email.as_str().chars().map(|c| if c.is_ascii_alphanumeric() || "@.-_+".contains(c) { c } else { '_' }).collect();
        format!("{}__{to}", self.id)
    }

    /// After a failed attempt: counted, with its error, due again after the next delay.
    pub fn failed(&mut self, error: String, now: DateTime<Utc>, config: &MailConfig) {
        self.attempts += 1;
        self.last_error = Some(error);
        self.next_attempt = now + chrono::Duration::from_std(retry_delay(self.attempts, config)).unwrap_or(chrono::Duration::MAX);
    }
}

/// The wait after the `attempts`-th failure: `retry_initial_ms`, doubling, at most `retry_max_ms`.
pub fn retry_delay(attempts: u32, config: &MailConfig) -> Duration {
    let doublings = attempts.saturating_sub(1).min(32);
    let ms = config.retry_initial_ms.saturating_mul(1u64 << doublings).min(config.retry_max_ms.max(config.retry_initial_ms));
    Duration::from_millis(ms)
}

/// The words of a queued email, from the results it is about; a file's result CSV is attached as
/// written in `results/` (issue 9: the store keeps only the first issues), unless larger than
/// `mail.max_attachment_bytes`.
pub fn render(gw: &Gateway, q: &Queued) -> Result<Rendered, MailError> {
    let (store, config) = (&gw.store, &gw.config.mail);
    let name = q.contact.name.as_deref();
    let slug = || q.slug.as_ref().ok_or_else(|| MailError::Missing(format!("email {} names no organisation", q.id)));
    match &q.letter {
        Letter::File { import_id } => {
            let result = store
                .import_result(import_id)?
                .ok_or_else(|| MailError::Missing(format!("the result of import {import_id} is not in the store")))?;
            let csv = match &result.answer {
                Some(answer) => read_capped(&gw.data.results(slug()?).join(&answer.csv), config.max_attachment_bytes),
                // Recorded before issue 9: the record holds every issue.
                None => Some(result.to_csv()).filter(|c| c.len() as u64 <= config.max_attachment_bytes),
            };
            Ok(render::file_email(&result, name, config.max_issues, csv))
        }
        Letter::Digest { day, import_ids } => {
            let mut results = Vec::new();
            for id in import_ids {
                results.extend(store.import_result(id)?);
            }
            let slug = slug()?;
            let org = store.org_by_slug(slug)?.map_or_else(|| slug.to_string(), |o| o.name);
            Ok(render::digest_email(&org, *day, &results, name))
        }
        Letter::CouncilSummary(summary) => Ok(render::council_summary_email(summary, name)),
        Letter::Notice(notice) => Ok(render::notice_email(notice, name)),
    }
}

/// The file's bytes, unless it is larger than `max` or cannot be read (the email then says where it is).
fn read_capped(path: &std::path::Path, max: u64) -> Option<Vec<u8>> {
    use std::io::Read;
    let f = std::fs::File::open(path).ok()?;
    if f.metadata().ok()?.len() > max {
        return None;
    }
    let mut out = Vec::new();
    // The file may not grow past the limit after it was measured; read no more than that.
    f.take(max + 1).read_to_end(&mut out).ok()?;
    (out.len() as u64 <= max).then_some(out)
}

/// The sender address from `mail.from`.
pub fn sender(config: &MailConfig) -> Result<Mailbox, MailError> {
    config.from.parse().map_err(|e| MailError::Config(format!("mail.from '{}' is not an address: {e}", config.from)))
}

/// The whole email: text and HTML alternatives, and the result CSV when there is one to attach.
pub fn compose(from: Mailbox, q: &Queued, r: Rendered) -> Result<Message, MailError> {
    let builder = Message::builder().from(from).to(q.contact.mailbox()).subject(r.subject);
    let body = MultiPart::alternative_plain_html(r.text, r.html);
    let built = match r.attachment {
        Some((name, csv)) => {
            let csv_type = ContentType::parse("text/csv; charset=utf-8").expect("a valid content type");
            builder.multipart(MultiPart::mixed().multipart(body).singlepart(Attachment::new(name).body(csv, csv_type)))
        }
        None => builder.multipart(body),
    };
    built.map_err(|e| MailError::Missing(format!("the email could not be built: {e}")))
}

/// The most recent digest time at or before `now`, and the day it closes (also the council's
/// summary's, at `schedule.summary_at`).
pub fn last_digest_due(now: DateTime<Local>, at: NaiveTime) -> (DateTime<Utc>, NaiveDate) {
    let at_on = |day: NaiveDate| {
        let naive = day.and_time(at);
        // A time skipped by a clock change counts from the hour after.
        Local.from_local_datetime(&naive).earliest().unwrap_or_else(|| Local.from_utc_datetime(&naive)).with_timezone(&Utc)
    };
    let today = now.date_naive();
    let t = at_on(today);
    if t <= now.with_timezone(&Utc) {
        (t, today)
    } else {
        let yesterday = today.pred_opt().unwrap_or(today);
        (at_on(yesterday), yesterday)
    }
}

/// The outbox worker that `serve` runs on a thread of its own (issue 9): reading the store,
/// rendering, composing and sending are all blocking work, kept off the async runtime so that
/// building a large email or waiting on a slow SMTP server never holds up an SFTP login, a listing
/// or an inbox file.
pub struct Mailer {
    transport: Transport,
    from: Mailbox,
    digest_at: NaiveTime,
    summary_at: NaiveTime,
}

/// The running worker.
pub struct MailerHandle {
    stop: mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl MailerHandle {
    /// Lets the worker finish the email it is sending, waiting at most `wait`: a stop is never held
    /// up for minutes by one large email (issue 9). One not finished by then stays queued and is
    /// sent after the next start.
    pub fn stop(self, wait: Duration) {
        // A dropped sender is seen by every later check, between emails and in the wait.
        drop(self.stop);
        let deadline = std::time::Instant::now() + wait;
        while !self.thread.is_finished() {
            if std::time::Instant::now() >= deadline {
                tracing::warn!(waited_ms = wait.as_millis() as u64, "stopping without waiting longer for the email being built or sent; it stays queued for the next start");
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if self.thread.join().is_err() {
            tracing::error!("the mail outbox thread panicked");
        }
    }
}

impl Mailer {
    /// Checks `[mail]` before anything starts: a sender that is not an address, a bad digest time,
    /// a login without a password or an unusable `ca_file` stops `serve` with a message.
    pub fn new(gw: &Gateway) -> Result<Mailer, MailError> {
        let config = &gw.config.mail;
        Ok(Mailer {
            transport: Transport::from_config(config, &gw.data)?,
            from: sender(config)?,
            digest_at: config.digest_time().map_err(MailError::Config)?,
            summary_at: gw.config.schedule.summary_time().map_err(MailError::Config)?,
        })
    }

    /// Starts the worker: it sends what is due every `mail.poll_ms` until stopped.
    pub fn spawn(self, gw: Arc<Gateway>) -> Result<MailerHandle, MailError> {
        let (stop, stopped) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("mail-outbox".into())
            .spawn(move || self.run(&gw, &stopped))
            .map_err(MailError::Thread)?;
        Ok(MailerHandle { stop, thread })
    }

    fn run(&self, gw: &Gateway, stopped: &mpsc::Receiver<()>) {
        tracing::info!(via = self.transport.describe(), waiting = gw.store.waiting().map(|w| w.len()).unwrap_or(0), "mail outbox started");
        let poll = Duration::from_millis(gw.config.mail.poll_ms.max(10));
        loop {
            self.tick(gw, stopped);
            if !matches!(stopped.recv_timeout(poll), Err(mpsc::RecvTimeoutError::Timeout)) {
                break;
            }
        }
    }

    fn tick(&self, gw: &Gateway, stopped: &mpsc::Receiver<()>) {
        let (due_before, day) = last_digest_due(Local::now(), self.digest_at);
        match gw.store.roll_digests(due_before, day) {
            Ok(0) => {}
            Ok(n) => tracing::info!(digests = n, "daily digests queued"),
            Err(e) => tracing::error!(error = %e, "could not queue the daily digests"),
        }
        // The council's summary closes on the same clock as the digests, at its own time (issue 10).
        let (due, day) = last_digest_due(Local::now(), self.summary_at);
        match crate::schedule::queue_council_summary(gw, due, day) {
            Ok(0) => {}
            Ok(n) => tracing::info!(contacts = n, %day, "the council's daily summary queued"),
            Err(e) => tracing::error!(error = %e, "could not queue the council's daily summary"),
        }
        let waiting = match gw.store.waiting() {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(error = %e, "could not read the outbox");
                return;
            }
        };
        let now = Utc::now();
        for mut q in waiting.into_iter().filter(|q| q.next_attempt <= now) {
            // A stop is not held up by the rest of the queue: it waits, stored, for the next start.
            if is_stopped(stopped) {
                return;
            }
            let sent = match self.build(gw, &q) {
                // Stopped while it was built: not begun, so it waits for the next start.
                Ok(_) if is_stopped(stopped) => return,
                Ok(message) => self.transport.send(&q.file_name(), &message),
                Err(e) => Err(e),
            };
            let stored = match sent {
                Ok(()) => {
                    // Logged once the outbox records it (flushed), so the line means "sent and
                    // not to be sent again"; a crash between the two sends it once more.
                    let marked = gw.store.mark_sent(&q, Utc::now());
                    tracing::info!(id = q.id, to = %q.contact.email, "email sent");
                    marked
                }
                Err(error) => {
                    q.failed(error, Utc::now(), &gw.config.mail);
                    tracing::warn!(id = q.id, to = %q.contact.email, attempts = q.attempts, next = %q.next_attempt, error = q.last_error.as_deref().unwrap_or(""), "email not sent; will retry");
                    if let Err(e) = gw.store.record_attempt(&q) {
                        tracing::error!(id = q.id, error = %e, "could not record the email's state");
                    }
                    // A server that is down fails every email alike: one attempt per poll, not a
                    // burst of them (each may wait `timeout_ms`). The others are tried next time.
                    break;
                }
            };
            if let Err(e) = stored {
                tracing::error!(id = q.id, error = %e, "could not record the email's state");
            }
        }
    }

    /// The finished email. A panic while rendering one email is that email's failed attempt, not
    /// the end of the outbox.
    fn build(&self, gw: &Gateway, q: &Queued) -> Result<Message, String> {
        let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            render(gw, q).and_then(|r| compose(self.from.clone(), q, r))
        }));
        match built {
            Ok(Ok(message)) => Ok(message),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("internal error while building the email (see the log)".into()),
        }
    }
}

fn is_stopped(stopped: &mpsc::Receiver<()>) -> bool {
    !matches!(stopped.try_recv(), Err(mpsc::TryRecvError::Empty))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_wait_twice_as_long_each_time_up_to_the_cap() {
        let c = MailConfig { retry_initial_ms: 1_000, retry_max_ms: 10_000, ..MailConfig::default() };
        let waits: Vec<u64> = (1..=6).map(|n| retry_delay(n, &c).as_millis() as u64).collect();
        assert_eq!(waits, [1_000, 2_000, 4_000, 8_000, 10_000, 10_000]);
        assert_eq!(retry_delay(u32::MAX, &c).as_millis(), 10_000);
    }

    #[test]
    fn the_digest_closes_at_the_configured_time_today_or_else_yesterday() {
        let at = NaiveTime::from_hms_opt(17, 0, 0).unwrap();
        let local = |d: u32, h: u32| Local.with_ymd_and_hms(2026, 11, d, h, 30, 0).unwrap();
        let (due, day) = last_digest_due(local(27, 18), at);
        assert_eq!(day, NaiveDate::from_ymd_opt(2026, 11, 27).unwrap());
        assert_eq!(due, Local.with_ymd_and_hms(2026, 11, 27, 17, 0, 0).unwrap().with_timezone(&Utc));
        let (_, day) = last_digest_due(local(27, 9), at);
        assert_eq!(day, NaiveDate::from_ymd_opt(2026, 11, 26).unwrap());
    }
}
