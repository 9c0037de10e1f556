//! Email of results: a file dropped into an inbox is answered by mail through a real SMTP server on
//! loopback (Python aiosmtpd), once, even when the server is down at first or the gateway is killed.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{example, fixture, root, TestEnv, PEARL};
use crate::server::{inbox, result_path, wait_for_json, Server};

/// A loopback port nothing listens on (yet).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `python3 -m aiosmtpd` storing every mail it accepts in a Maildir; stopped when dropped.
pub(crate) struct SmtpSink {
    child: Child,
    maildir: PathBuf,
}

impl SmtpSink {
    pub(crate) fn start(port: u16, maildir: &Path) -> SmtpSink {
        let child = Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir)
            .args(["-l", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m aiosmtpd (scripts/test installs it)");
        let sink = SmtpSink { child, maildir: maildir.to_path_buf() };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "aiosmtpd did not start on port {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        sink
    }

    /// Every mail received so far, decoded (see `read_maildir.py`).
    fn mails(&self) -> Vec<Value> {
        if !self.maildir.join("new").exists() {
            return Vec::new();
        }
        let out = Command::new("python3").arg(root().join("tests/it/read_maildir.py")).arg(&self.maildir).output().unwrap();
        assert!(out.status.success(), "read_maildir.py: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).unwrap().as_array().unwrap().clone()
    }

    /// Waits until at least `n` mails have arrived, then gives the gateway a few more polls to send
    /// anything it should not, and returns all of them.
    pub(crate) fn wait_for(&self, n: usize, secs: u64) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while self.mails().len() < n {
            assert!(Instant::now() < deadline, "{} of {n} mails after {secs} s", self.mails().len());
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(1500));
        self.mails()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `[mail]` for an SMTP server on loopback with short retries.
pub(crate) fn mail_config(port: u16) -> String {
    format!(
        "[mail]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {port}\ntls = \"none\"\nfrom = \"Council gateway <gateway@council.example.org>\"\n\
         retry_initial_ms = 200\nretry_max_ms = 800\npoll_ms = 100\ntimeout_ms = 5000\n"
    )
}

/// Copies a file into Pearl's inbox under a temporary name and renames it, as README asks.
fn drop_file(env: &TestEnv, from: &Path, name: &str) {
    let part = inbox(env).join(format!("{name}.part"));
    std::fs::copy(from, &part).unwrap();
    std::fs::rename(&part, inbox(env).join(name)).unwrap();
}

fn add_contact(env: &TestEnv, args: &[&str]) {
    let mut all = vec!["contact", "add", "--org", PEARL];
    all.extend_from_slice(args);
    env.ok(&all);
}

fn to_of(mails: &[Value], address: &str) -> Vec<Value> {
    mails.iter().filter(|m| m["to"].as_str().unwrap().contains(address)).cloned().collect()
}

#[test]
fn email_a_dropped_file_is_answered_by_one_mail_with_counts_issues_and_the_result_csv() {
    let env = TestEnv::with_example_cplis();
    add_contact(&env, &["--email", "zoe@pearl.example.org", "--name", "Zoë Brontë"]);
    let port = free_port();
    let sink = SmtpSink::start(port, &env.data().join("maildir"));
    let _server = Server::with_config(&env, &mail_config(port));
    drop_file(&env, &fixture("malformed/bad_dates.csv"), "bad_dates.csv");
    let result = wait_for_json(&result_path(&env, "bad_dates.result.json"), 30);
    let mails = sink.wait_for(1, 30);
    assert_eq!(mails.len(), 1, "{mails:#?}");
    let m = &mails[0];
    let c = &result["counts"];
    assert_eq!(m["subject"], format!("bad_dates.csv: {} read, {} rejected, {} data-quality issues", c["read"], c["rejected"], c["data_quality_issues"]));
    assert_eq!(m["to"], "Zoë Brontë <zoe@pearl.example.org>");
    let text = m["text"].as_str().unwrap();
    assert!(text.starts_with("Hello Zoë Brontë,"), "{text}");
    assert!(text.contains(&format!("Records read:          {}", c["read"])), "{text}");
    assert!(text.contains(&format!("Rejected:              {}", c["rejected"])), "{text}");
    assert!(text.contains("- Row 2 (V1), PlannedVisitDate (Error BAD_DATE): PlannedVisitDate '31/02/2022' is not a date"), "{text}");
    let html = m["html"].as_str().unwrap();
    assert!(html.contains(&format!("<td>Rejected</td><td style=\"text-align: right; padding-left: 16px;\">{}</td>", c["rejected"])), "{html}");
    assert!(html.contains("Hello Zoë Brontë,"));
    let attachments = m["attachments"].as_array().unwrap();
    assert_eq!(attachments.len(), 1);
    assert_eq!(attachments[0]["filename"], "bad_dates.result.csv");
    assert_eq!(attachments[0]["content_type"], "text/csv");
    let csv = std::fs::read_to_string(result_path(&env, "bad_dates.result.csv")).unwrap();
    assert_eq!(attachments[0]["content"].as_str().unwrap().replace("\r\n", "\n"), csv.replace("\r\n", "\n"));
}

#[test]
fn email_each_contact_gets_what_it_chose() {
    let env = TestEnv::with_example_cplis();
    add_contact(&env, &["--email", "every@pearl.example.org"]);
    add_contact(&env, &["--email", "problems@pearl.example.org", "--notify", "problems"]);
    add_contact(&env, &["--email", "digest@pearl.example.org", "--notify", "digest"]);
    add_contact(&env, &["--email", "quiet@pearl.example.org", "--no-notify"]);
    let port = free_port();
    let sink = SmtpSink::start(port, &env.data().join("maildir"));
    {
        let _server = Server::with_config(&env, &mail_config(port));
        drop_file(&env, &example("visits-week.csv"), "clean.csv");
        wait_for_json(&result_path(&env, "clean.result.json"), 30);
        drop_file(&env, &fixture("malformed/bad_dates.csv"), "bad.csv");
        wait_for_json(&result_path(&env, "bad.result.json"), 30);
        let mails = sink.wait_for(3, 30);
        let subjects = |to: &str| to_of(&mails, to).iter().map(|m| m["subject"].as_str().unwrap().to_string()).collect::<Vec<_>>();
        assert_eq!(subjects("every@").len(), 2, "{mails:#?}");
        assert_eq!(subjects("problems@"), [subjects("every@").into_iter().find(|s| s.starts_with("bad.csv")).unwrap()]);
        assert!(subjects("digest@").is_empty() && subjects("quiet@").is_empty());
        assert_eq!(mails.len(), 3);
    }
    let waiting = env.ok(&["outbox", "list"]);
    assert_eq!(waiting.lines().count(), 1, "only the header: {waiting}");
    let out = env.run(&["outbox", "list"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("2 file(s) wait for digest@pearl.example.org's daily digest"));
}

#[test]
fn email_waits_while_the_smtp_server_is_down_and_arrives_once_when_it_starts() {
    let env = TestEnv::with_example_cplis();
    add_contact(&env, &["--email", "sian@pearl.example.org", "--name", "Siân Jones"]);
    let port = free_port();
    {
        let _server = Server::with_config(&env, &mail_config(port));
        drop_file(&env, &example("visits-week.csv"), "visits.csv");
        wait_for_json(&result_path(&env, "visits.result.json"), 30);
        // Several attempts fail against the closed port (retries after 0.2, 0.4, 0.8, 0.8 s).
        std::thread::sleep(Duration::from_millis(1500));
        let sink = SmtpSink::start(port, &env.data().join("maildir"));
        let mails = sink.wait_for(1, 30);
        assert_eq!(mails.len(), 1, "{mails:#?}");
        assert_eq!(mails[0]["subject"], "visits.csv: 21 read, 0 rejected");
        assert_eq!(mails[0]["attachments"][0]["filename"], "visits.result.csv", "the result CSV is attached even with no issues");
    }
    let sent = env.ok(&["outbox", "list", "--sent"]);
    let row: Vec<&str> = sent.lines().nth(1).expect("one sent email").split('\t').collect();
    assert_eq!(row[1], "sian@pearl.example.org");
    assert!(row[3].parse::<u32>().unwrap() > 1, "sent at the first attempt although the server was down: {sent}");
}

#[test]
fn email_queued_when_the_gateway_is_killed_is_sent_once_after_the_restart() {
    let env = TestEnv::with_example_cplis();
    add_contact(&env, &["--email", "sian@pearl.example.org", "--name", "Siân Jones"]);
    let port = free_port();
    {
        let _server = Server::with_config(&env, &mail_config(port));
        drop_file(&env, &example("visits-week.csv"), "visits.csv");
        wait_for_json(&result_path(&env, "visits.result.json"), 30);
        std::thread::sleep(Duration::from_millis(500));
    } // SIGKILL with the email still queued.
    let waiting = env.ok(&["outbox", "list"]);
    let lines: Vec<&str> = waiting.lines().collect();
    assert_eq!(lines.len(), 2, "{waiting}");
    let row: Vec<&str> = lines[1].split('\t').collect();
    assert_eq!(&row[1..3], ["sian@pearl.example.org", "visits.csv: 21 read, 0 rejected"]);
    assert!(row[3].parse::<u32>().unwrap() >= 1 && !row[5].is_empty(), "attempts and the last error are shown: {waiting}");
    let sink = SmtpSink::start(port, &env.data().join("maildir"));
    {
        let _server = Server::with_config(&env, &mail_config(port));
        let mails = sink.wait_for(1, 30);
        assert_eq!(mails.len(), 1, "{mails:#?}");
        assert_eq!(mails[0]["subject"], "visits.csv: 21 read, 0 rejected");
    }
    // A third start sends nothing more.
    {
        let _server = Server::with_config(&env, &mail_config(port));
        std::thread::sleep(Duration::from_millis(1000));
    }
    assert_eq!(sink.mails().len(), 1);
    assert_eq!(env.ok(&["outbox", "list"]).lines().count(), 1);
}

#[test]
fn email_without_smtp_is_written_as_an_eml_file_in_the_outbox_folder() {
    let env = TestEnv::with_example_cplis();
    add_contact(&env, &["--email", "sian@pearl.example.org"]);
    let _server = Server::start(&env);
    drop_file(&env, &fixture("malformed/bad_dates.csv"), "bad.csv");
    wait_for_json(&result_path(&env, "bad.result.json"), 30);
    let outbox = env.data().join("outbox");
    let deadline = Instant::now() + Duration::from_secs(30);
    let eml = loop {
        let found: Vec<PathBuf> =
            std::fs::read_dir(&outbox).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
        if let Some(f) = found.into_iter().find(|p| p.extension().is_some_and(|e| e == "eml")) {
            break f;
        }
        assert!(Instant::now() < deadline, "no .eml in {}", outbox.display());
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = std::fs::read_to_string(&eml).unwrap();
    assert!(text.contains("Subject: bad.csv: 5 read, 4 rejected"), "{text}");
    assert!(text.contains("To: sian@pearl.example.org"));
    assert!(text.contains("filename=\"bad.result.csv\""), "{text}");
}

#[test]
fn email_contacts_are_checked_listed_and_removed() {
    let env = TestEnv::with_example_cplis();
    let out = env.run(&["contact", "add", "--org", PEARL, "--email", "not-an-address"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("'not-an-address' is not an email address"));
    add_contact(&env, &["--email", "Sian@Pearl.example.org", "--name", "Siân Jones", "--notify", "digest"]);
    add_contact(&env, &["--email", "sian@pearl.example.org", "--name", "Siân Jones", "--notify", "problems"]);
    let list = env.ok(&["contact", "list", "--org", "pearl-carers-ltd"]);
    assert_eq!(list, "Pearl Carers Ltd\tsian@pearl.example.org\tSiân Jones\tproblems\n", "one contact per address, any case");
    env.ok(&["contact", "remove", "--org", PEARL, "--email", "SIAN@pearl.example.org"]);
    assert_eq!(env.ok(&["contact", "list"]), "");
    let again = env.run(&["contact", "remove", "--org", PEARL, "--email", "sian@pearl.example.org"]);
    assert_eq!(again.status.code(), Some(2));
}

#[test]
fn email_a_failed_file_says_what_to_fix_first() {
    let env = TestEnv::with_example_cplis();
    add_contact(&env, &["--email", "sian@pearl.example.org", "--notify", "problems"]);
    let port = free_port();
    let sink = SmtpSink::start(port, &env.data().join("maildir"));
    let _server = Server::with_config(&env, &mail_config(port));
    let (_tmp, file) = crate::helpers::write_temp("semi.csv", "VisitRef;Deleted;PlannedVisitDate\nV1;0;03/10/2022\n");
    drop_file(&env, &file, "semi.csv");
    let result = wait_for_json(&result_path(&env, "semi.result.json"), 30);
    assert_eq!(result["status"], "failed");
    let mails = sink.wait_for(1, 30);
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0]["subject"], "semi.csv: failed, nothing stored");
    let text = mails[0]["text"].as_str().unwrap();
    assert!(text.contains("Nothing from this file was stored. Fix this first, then send the whole file again:\n  the header row is one column separated by semicolons"), "{text}");
    assert!(mails[0]["html"].as_str().unwrap().contains("<strong>Fix this first</strong>"));
}

#[test]
fn email_a_spooled_file_replayed_after_a_crash_is_not_mailed_twice() {
    let env = TestEnv::with_example_cplis();
    add_contact(&env, &["--email", "sian@pearl.example.org"]);
    let port = free_port();
    let sink = SmtpSink::start(port, &env.data().join("maildir"));
    let spool = env.data().join("spool").join("pearl-carers-ltd");
    std::fs::create_dir_all(&spool).unwrap();
    let spooled = spool.join("01890a5d-ac96-774b-bcce-b302099a8057__visits-week.csv");
    std::fs::copy(example("visits-week.csv"), &spooled).unwrap();
    {
        let _server = Server::with_config(&env, &mail_config(port));
        assert_eq!(sink.wait_for(1, 30).len(), 1);
    }
    // The same claimed file again, as after a crash between the commit and the archive.
    std::fs::copy(example("visits-week.csv"), &spooled).unwrap();
    {
        let _server = Server::with_config(&env, &mail_config(port));
        let deadline = Instant::now() + Duration::from_secs(30);
        while spooled.exists() {
            assert!(Instant::now() < deadline, "the spooled file was not finished");
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(1000));
    }
    assert_eq!(sink.mails().len(), 1, "the replay was mailed again");
}

#[test]
fn email_the_daily_digest_lists_the_days_files_in_one_mail() {
    let env = TestEnv::with_example_cplis();
    add_contact(&env, &["--email", "manager@pearl.example.org", "--name", "Siân Jones", "--notify", "digest"]);
    env.import(PEARL, &example("visits-week.csv"));
    env.import(PEARL, &fixture("malformed/bad_dates.csv"));
    // The digest time has passed since both files were processed: the first poll sends the digest.
    std::thread::sleep(Duration::from_millis(1100));
    let digest_at = chrono::Local::now().format("%H:%M:%S").to_string();
    let port = free_port();
    let sink = SmtpSink::start(port, &env.data().join("maildir"));
    let _server = Server::with_config(&env, &format!("{}digest_at = \"{digest_at}\"\n", mail_config(port)));
    let mails = sink.wait_for(1, 30);
    assert_eq!(mails.len(), 1, "{mails:#?}");
    let today = chrono::Local::now().format("%d/%m/%Y").to_string();
    assert_eq!(mails[0]["subject"], format!("Pearl Carers Ltd: 2 files on {today}, 1 with problems"));
    let text = mails[0]["text"].as_str().unwrap();
    assert!(text.contains("visits-week.csv: 21 read, 0 rejected"), "{text}");
    assert!(text.contains("bad_dates.csv: 5 read, 4 rejected"), "{text}");
    assert!(text.starts_with("Hello Siân Jones,"));
}
