//! Email of results: a file dropped into an inbox is answered by mail through a real SMTP server on
//! loopback (Python aiosmtpd), once, even when the server is down at first or the gateway is killed;
//! over STARTTLS with a login; and without ever holding up SFTP (issue 9).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{bin, example, fixture, root, TestEnv, PEARL, VISITS_HEADER};
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
        read_maildir(&self.maildir)
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

/// Every mail stored in a Maildir, decoded (see `read_maildir.py`).
fn read_maildir(maildir: &Path) -> Vec<Value> {
    if !maildir.join("new").exists() {
        return Vec::new();
    }
    let out = Command::new("python3").arg(root().join("tests/it/read_maildir.py")).arg(maildir).output().unwrap();
    assert!(out.status.success(), "read_maildir.py: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice::<Value>(&out.stdout).unwrap().as_array().unwrap().clone()
}

/// How many mails a Maildir holds, without decoding them.
fn maildir_count(maildir: &Path) -> usize {
    std::fs::read_dir(maildir.join("new")).map(|d| d.count()).unwrap_or(0)
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

/// Copies a file into Pearl's inbox under a temporary name and renames it, as docs/operations.md asks.
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

/// `gateway serve` with configuration sections and environment variables of a test's own, its log
/// (info and up) kept in `serve.log`; stopped (SIGKILL) when dropped.
pub(crate) struct LoggedServer {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl LoggedServer {
    pub(crate) fn start(env: &TestEnv, sections: &str, vars: &[(&str, &str)]) -> LoggedServer {
        use std::io::{BufRead, BufReader};
        let config = env.data().join("gateway.toml");
        let key = env.data().join("ssh_host_ed25519_key");
        std::fs::write(&config, format!("[watch]\nsettle_ms = 100\n[sftp]\nhost_key = \"{}\"\n{sections}", key.display())).unwrap();
        let log = env.data().join("serve.log");
        let mut child = Command::new(bin())
            .arg("--data")
            .arg(env.data())
            .arg("--config")
            .arg(&config)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "info")
            .envs(vars.iter().copied())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start gateway serve");
        let mut port = None;
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            let line = line.unwrap();
            if let Some(rest) = line.split("SFTP on 127.0.0.1:").nth(1) {
                port = rest.split(',').next().and_then(|p| p.parse().ok());
            }
            if line.contains("watching the inboxes") {
                break;
            }
        }
        let port = port.unwrap_or_else(|| panic!("serve printed no SFTP address; log: {}", std::fs::read_to_string(&log).unwrap_or_default()));
        LoggedServer { child, port, log }
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap()
    }

    /// Waits until the log has a line containing `text`.
    pub(crate) fn wait_for_log(&self, text: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let log = self.log();
            if log.contains(text) {
                return log;
            }
            assert!(Instant::now() < deadline, "no '{text}' in the log after {secs} s:\n{log}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for LoggedServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A key pair for an SFTP login of Pearl's, made with ssh-keygen and added with `user add`.
fn sftp_login(env: &TestEnv, login: &str) -> PathBuf {
    let key = env.data().join(format!("{login}_ed25519"));
    let out = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", login, "-f"]).arg(&key).output().unwrap();
    assert!(out.status.success(), "ssh-keygen: {}", String::from_utf8_lossy(&out.stderr));
    env.ok(&["user", "add", "--org", PEARL, "--name", login, "--key", &format!("{}.pub", key.display())]);
    key
}

/// `echo 'ls /results' | sftp -b -` as a new OpenSSH login: how long it took and what it listed.
fn timed_sftp_ls(port: u16, login: &str, key: &Path) -> (Duration, String) {
    let started = Instant::now();
    let out = Command::new("sftp")
        .args(["-P", &port.to_string(), "-i"])
        .arg(key)
        .args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes"])
        .args(["-b", "-", &format!("{login}@127.0.0.1")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b"ls /results\n")?;
            c.wait_with_output()
        })
        .expect("run sftp");
    let took = started.elapsed();
    assert!(out.status.success(), "sftp ls failed: {}", String::from_utf8_lossy(&out.stderr));
    (took, String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn email_being_built_never_holds_up_sftp_logins_and_listings() {
    // Regression (issue 9): the email answering a file was built and sent on the async runtime;
    // while a large one was built no SFTP login or listing was served (a 5 MB cell froze the
    // gateway ~27 s). The email here is large because it spells out every issue and attaches the
    // whole result, so it stays slow to build once issue messages are capped. The server runs with
    // one runtime worker so that a task blocking the runtime shows whatever the machine's cores:
    // with two, it takes a second blocking task at the same moment to freeze everything.
    let env = TestEnv::with_example_cplis();
    add_contact(&env, &["--email", "rota@pearl.example.org"]);
    let key = sftp_login(&env, "pearl-rota");
    let port = free_port();
    let maildir = env.data().join("maildir");
    let _sink = SmtpSink::start(port, &maildir);
    let sections = format!(
        "{}max_issues = 100000\nmax_attachment_bytes = 268435456\n[limits]\nmax_line_bytes = 8388608\nmax_record_bytes = 8388608\n",
        mail_config(port)
    );
    let server = LoggedServer::start(&env, &sections, &[("TOKIO_WORKER_THREADS", "1")]);

    let row = |n: usize, date: &str| {
        format!("V{n},0,{date},08:00,09:00,DHS,03/10/2022,08:00,,,09:00,,,,,,A371849,,,Home Support,,,Pearl Carers - Zone 6 - Oxford,,\n")
    };
    let mut text = format!("{VISITS_HEADER}\n{}", row(1, &"3".repeat(5 * 1024 * 1024)));
    // Enough rejected rows that building the email takes several listings' time on a fast machine
    // (with 2,000 it was sometimes sent before a second listing, once allocating got faster).
    for n in 2..=10001 {
        text.push_str(&row(n, "31/02/2022"));
    }
    let (_tmp, file) = crate::helpers::write_temp("big-cell.csv", &text);
    drop_file(&env, &file, "big-cell.csv");
    let result = wait_for_json(&result_path(&env, "big-cell.result.json"), 180);
    assert_eq!(result["counts"]["rejected"], 10001, "{}", result["counts"]);

    // From the answer's arrival until its email reaches the SMTP server, log in and list over and over.
    let mut listings = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    while maildir_count(&maildir) == 0 {
        assert!(Instant::now() < deadline, "no email after 300 s; log:\n{}", server.log());
        let (took, listed) = timed_sftp_ls(server.port, "pearl-rota", &key);
        assert!(listed.contains("big-cell.result.json"), "{listed}");
        listings.push(took);
    }
    assert!(listings.len() >= 2, "the email was sent before two listings were made ({listings:?}): nothing was measured while it was built");
    let slowest = listings.iter().max().unwrap();
    assert!(*slowest < Duration::from_secs(1), "an SFTP login and listing took {slowest:?} while the email was built; all: {listings:?}");
}

/// A self-signed certificate for 127.0.0.1 (`cert.pem`, `key.pem` in `dir`), made with openssl: not
/// a CA, so rustls accepts it as the server's own certificate once it is trusted.
fn self_signed_certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "extendedKeyUsage=serverAuth", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (scripts/test installs it)");
    assert!(out.status.success(), "openssl: {}", String::from_utf8_lossy(&out.stderr));
    (cert, key)
}

/// `tests/it/smtp_tls.py`: aiosmtpd requiring STARTTLS and a login (`gateway` with `password`).
struct TlsSmtp {
    child: Child,
    maildir: PathBuf,
    auth_log: PathBuf,
}

const SMTP_LOGIN: &str = "gateway";

impl TlsSmtp {
    fn start(env: &TestEnv, port: u16, password: &str) -> TlsSmtp {
        use std::io::{BufRead, BufReader};
        let (cert, key) = self_signed_certificate(env.data());
        let (maildir, auth_log) = (env.data().join("tls-maildir"), env.data().join("smtp-auth.jsonl"));
        let mut child = Command::new("python3")
            .arg(root().join("tests/it/smtp_tls.py"))
            .arg(port.to_string())
            .args([&maildir, &cert, &key])
            .args([SMTP_LOGIN, password])
            .arg(&auth_log)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 tests/it/smtp_tls.py");
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
        assert_eq!(first.trim(), "ready", "smtp_tls.py did not start");
        TlsSmtp { child, maildir, auth_log }
    }

    /// Every login attempt so far: {"login", "ok", "tls", "mechanism"}.
    fn logins(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.auth_log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for TlsSmtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `[mail]` for the STARTTLS server, the password taken from `GATEWAY_TEST_SMTP_PASSWORD`.
fn tls_mail_config(port: u16, ca_file: Option<&Path>) -> String {
    let ca = ca_file.map(|p| format!("ca_file = \"{}\"\n", p.display())).unwrap_or_default();
    format!(
        "[mail]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {port}\ntls = \"starttls\"\n{ca}user = \"{SMTP_LOGIN}\"\npassword_env = \"GATEWAY_TEST_SMTP_PASSWORD\"\n\
         from = \"Council gateway <gateway@council.example.org>\"\nretry_initial_ms = 200\nretry_max_ms = 800\npoll_ms = 100\ntimeout_ms = 5000\n"
    )
}

#[test]
fn email_goes_over_starttls_with_a_login_to_a_server_whose_self_signed_certificate_is_configured() {
    const PASSWORD: &str = "Tls-Login-Pass-71";
    let env = TestEnv::with_example_cplis();
    add_contact(&env, &["--email", "sian@pearl.example.org"]);
    let port = free_port();
    let smtp = TlsSmtp::start(&env, port, PASSWORD);
    let cert = env.data().join("cert.pem");
    let vars = [("GATEWAY_TEST_SMTP_PASSWORD", PASSWORD)];
    {
        // Without ca_file only the public roots are trusted: the self-signed certificate is refused
        // before any login is sent.
        let server = LoggedServer::start(&env, &tls_mail_config(port, None), &vars);
        drop_file(&env, &example("visits-week.csv"), "first.csv");
        let log = server.wait_for_log("email not sent; will retry", 30);
        assert!(log.to_lowercase().contains("certificate"), "{log}");
        assert!(smtp.logins().is_empty(), "a login was sent to an untrusted server: {:?}", smtp.logins());
        assert!(!log.contains(PASSWORD));
    }
    let server = LoggedServer::start(&env, &tls_mail_config(port, Some(&cert)), &vars);
    let deadline = Instant::now() + Duration::from_secs(30);
    while maildir_count(&smtp.maildir) == 0 {
        assert!(Instant::now() < deadline, "no email over STARTTLS; log:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let mails = read_maildir(&smtp.maildir);
    assert_eq!(mails.len(), 1, "{mails:#?}");
    assert_eq!(mails[0]["subject"], "first.csv: 21 read, 0 rejected");
    let logins = smtp.logins();
    assert!(!logins.is_empty() && logins.iter().all(|l| l["ok"] == true && l["tls"] == true && l["login"] == SMTP_LOGIN), "{logins:?}");
    let log = server.wait_for_log("email sent", 5);
    assert!(log.contains("via=\"SMTP 127.0.0.1:") && log.contains("(starttls) as gateway"), "{log}");
    assert!(!log.contains(PASSWORD), "the password is in the log");
}

#[test]
fn email_with_a_wrong_smtp_password_is_a_failed_attempt_retried_and_never_logged() {
    const RIGHT: &str = "Right-Pass-2022";
    const WRONG: &str = "Wrong-Pass-2023";
    let env = TestEnv::with_example_cplis();
    add_contact(&env, &["--email", "sian@pearl.example.org"]);
    let port = free_port();
    let smtp = TlsSmtp::start(&env, port, RIGHT);
    let cert = env.data().join("cert.pem");
    {
        let server = LoggedServer::start(&env, &tls_mail_config(port, Some(&cert)), &[("GATEWAY_TEST_SMTP_PASSWORD", WRONG)]);
        drop_file(&env, &example("visits-week.csv"), "visits.csv");
        // Retried: the SMTP server sees the same login refused more than once.
        let deadline = Instant::now() + Duration::from_secs(30);
        while smtp.logins().len() < 2 {
            assert!(Instant::now() < deadline, "fewer than two login attempts: {:?}\n{}", smtp.logins(), server.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(smtp.logins().iter().all(|l| l["ok"] == false && l["tls"] == true), "{:?}", smtp.logins());
        let log = server.wait_for_log("attempts=2", 10);
        assert!(log.contains("email not sent; will retry") && log.contains("535"), "the server's refusal is logged: {log}");
        assert!(!log.contains(WRONG) && !log.contains(RIGHT), "a password is in the log:\n{log}");
        assert_eq!(maildir_count(&smtp.maildir), 0);
    }
    let waiting = env.ok(&["outbox", "list"]);
    let row: Vec<&str> = waiting.lines().nth(1).expect("the email still waits").split('\t').collect();
    // The retries were seen above; an attempt recorded just before the SIGKILL may not be on disk.
    assert!(row[3].parse::<u32>().unwrap() >= 1, "{waiting}");
    assert!(row[5].contains("535") && !row[5].contains(WRONG), "{waiting}");
    // With the password corrected, the same email goes, once.
    let server = LoggedServer::start(&env, &tls_mail_config(port, Some(&cert)), &[("GATEWAY_TEST_SMTP_PASSWORD", RIGHT)]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while maildir_count(&smtp.maildir) == 0 {
        assert!(Instant::now() < deadline, "no email with the right password; log:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    server.wait_for_log("email sent", 5);
    drop(server);
    assert_eq!(read_maildir(&smtp.maildir).len(), 1);
    assert_eq!(env.ok(&["outbox", "list"]).lines().count(), 1, "only the header");
}
