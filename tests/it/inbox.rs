//! The inbox watcher of `gateway serve`: files copied in are taken once complete, and only then.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::helpers::{counts, example, TestEnv};
use crate::server::{inbox, result_path, wait_for_json, Server, ORG_DIR};

fn results(env: &TestEnv) -> Vec<String> {
    crate::server::results(env, ORG_DIR)
}

#[test]
fn a_file_copied_into_an_inbox_is_processed_and_answered() {
    let env = TestEnv::with_example_cplis();
    let _server = Server::start(&env);
    std::fs::copy(example("visits-week.csv"), inbox(&env).join("visits-week.csv")).unwrap();
    let result = wait_for_json(&result_path(&env, "visits-week.result.json"), 30);
    assert_eq!(counts(&result), (21, 21, 0, 0, 0));
    assert_eq!(result["status"], "processed");
    assert!(result_path(&env, "visits-week.result.csv").exists());
    assert_eq!(std::fs::read_dir(inbox(&env)).unwrap().count(), 0, "the inbox still holds the file");
    // The original is archived just after its answer is in place.
    let archive = env.data().join("archive").join(ORG_DIR);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_dir(&archive).map(|d| d.count()).unwrap_or(0) == 0 {
        assert!(Instant::now() < deadline, "the file was never archived");
        std::thread::sleep(Duration::from_millis(20));
    }
    let archived: Vec<_> = std::fs::read_dir(&archive).unwrap().collect();
    assert_eq!(archived.len(), 1);
}

#[test]
fn a_file_written_slowly_in_chunks_is_processed_once_after_it_is_complete() {
    let env = TestEnv::with_example_cplis();
    let _server = Server::start(&env);
    let content = std::fs::read(example("visits-week.csv")).unwrap();
    let mut f = std::fs::File::create(inbox(&env).join("slow.csv")).unwrap();
    for chunk in content.chunks(content.len() / 5 + 1) {
        f.write_all(chunk).unwrap();
        f.flush().unwrap();
        std::thread::sleep(Duration::from_millis(400));
    }
    drop(f);
    let result = wait_for_json(&result_path(&env, "slow.result.json"), 30);
    assert_eq!(counts(&result), (21, 21, 0, 0, 0), "processed before it was complete: {result}");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(results(&env), ["slow.result.json"], "processed more than once");
}

#[test]
fn a_temporary_name_waits_for_the_rename_to_csv() {
    let env = TestEnv::with_example_cplis();
    let _server = Server::start(&env);
    let part = inbox(&env).join("x.csv.filepart");
    std::fs::copy(example("visits-week.csv"), &part).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(results(&env).is_empty(), "a .filepart was processed");
    assert!(part.exists());
    std::fs::rename(&part, inbox(&env).join("x.csv")).unwrap();
    let result = wait_for_json(&result_path(&env, "x.result.json"), 30);
    assert_eq!(counts(&result), (21, 21, 0, 0, 0));
}

#[test]
fn files_dropped_while_the_gateway_was_down_are_processed_when_it_starts() {
    let env = TestEnv::with_example_cplis();
    std::fs::copy(example("visits-week.csv"), inbox(&env).join("early.csv")).unwrap();
    let _server = Server::start(&env);
    let result = wait_for_json(&result_path(&env, "early.result.json"), 30);
    assert_eq!(counts(&result), (21, 21, 0, 0, 0));
}

#[test]
fn a_file_left_in_the_spool_by_a_crash_is_finished_at_start_and_applied_once() {
    let env = TestEnv::with_example_cplis();
    let spool = env.data().join("spool").join(ORG_DIR);
    std::fs::create_dir_all(&spool).unwrap();
    let spooled = spool.join("01890a5d-ac96-774b-bcce-b302099a8057__visits-week.csv");
    std::fs::copy(example("visits-week.csv"), &spooled).unwrap();
    {
        let _server = Server::start(&env);
        let result = wait_for_json(&result_path(&env, "visits-week.result.json"), 30);
        assert_eq!(counts(&result), (21, 21, 0, 0, 0));
    }
    // The same claimed file again (a crash after the commit, before the archive): not applied twice,
    // and not answered twice.
    std::fs::copy(example("visits-week.csv"), &spooled).unwrap();
    {
        let _server = Server::start(&env);
        let deadline = Instant::now() + Duration::from_secs(30);
        while spooled.exists() {
            assert!(Instant::now() < deadline, "the spooled file was not finished");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    assert_eq!(results(&env), ["visits-week.result.json"]);
    assert_eq!(env.visits(crate::helpers::PEARL).len(), 21);
}

#[test]
fn a_relative_data_folder_is_watched_too() {
    // `gateway serve` on its defaults uses the relative `data`; inotify reports absolute paths.
    let env = TestEnv::with_example_cplis();
    let _server = Server::start_relative(&env);
    std::fs::copy(example("visits-week.csv"), inbox(&env).join("visits-week.csv")).unwrap();
    let result = wait_for_json(&result_path(&env, "visits-week.result.json"), 30);
    assert_eq!(counts(&result), (21, 21, 0, 0, 0));
}

/// Issue 9: a name of 218 to 255 bytes fits the inbox but not the spool (`<import id>__NAME`) nor
/// `NAME.result.json`: it was never answered. It is now answered under a shortened name.
#[test]
fn a_file_whose_name_is_too_long_to_answer_is_answered_under_a_shortened_name() {
    let env = TestEnv::with_example_cplis();
    let _server = Server::start(&env);
    let name = format!("{}.csv", "v".repeat(246));
    std::fs::copy(example("visits-week.csv"), inbox(&env).join(&name)).unwrap();
    let short = gateway::pipeline::answerable_name(&name).into_owned();
    let stem = short.strip_suffix(".csv").unwrap();
    let result = wait_for_json(&result_path(&env, &format!("{stem}.result.json")), 30);
    assert_eq!(counts(&result), (21, 21, 0, 0, 0));
    assert_eq!(result["file"], short.as_str());
    assert!(std::fs::read_dir(inbox(&env)).unwrap().next().is_none(), "the file is still in the inbox");
}

#[test]
fn an_email_leaves_only_once_its_result_file_is_in_place() {
    // Issue 9, item 10: the email is queued in the import's commit, and could leave before the
    // result file existed. `slow-answer` holds the answer back 2 s after the commit.
    let env = TestEnv::with_example_cplis();
    env.ok(&["contact", "add", "--org", crate::helpers::PEARL, "--email", "rota@pearl.example.org"]);
    let _serve = crate::crash::KillOnDrop(crate::crash::serve_with_fault(&env, "slow-answer", "[mail]\npoll_ms = 20\n"));
    std::fs::copy(example("visits-week.csv"), inbox(&env).join("week.csv")).unwrap();
    let outbox = env.data().join("outbox");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let emails = std::fs::read_dir(&outbox).map(|d| d.count()).unwrap_or(0);
        if emails > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "no email");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(result_path(&env, "week.result.json").exists(), "the email left before the result file was in place");
    assert!(result_path(&env, "week.result.csv").exists());
}

#[test]
fn a_folder_made_by_hand_under_orgs_is_not_an_inbox() {
    // Issue 11: the organisation's folder name was a bare string read back from the path, so a
    // folder named like the organisation (`orgs/Pearl Carers Ltd/inbox/`) was taken as a second
    // inbox of it. Only a slug names an organisation's folders.
    let env = TestEnv::with_example_cplis();
    let by_hand = env.data().join("orgs").join(crate::helpers::PEARL).join("inbox");
    std::fs::create_dir_all(&by_hand).unwrap();
    // Made before the start, so that it is watched as a real inbox is.
    let _server = Server::start(&env);
    std::fs::copy(example("visits-week.csv"), by_hand.join("by-hand.csv")).unwrap();
    // A file in the real inbox afterwards: once it is answered, the watcher has passed the other.
    std::fs::copy(example("visits-week.csv"), inbox(&env).join("real.csv")).unwrap();
    wait_for_json(&result_path(&env, "real.result.json"), 30);
    assert!(by_hand.join("by-hand.csv").exists(), "the file was taken from a folder that is no inbox");
    assert_eq!(results(&env), ["real.result.json"]);
}
