//! The access groups are looked up at every call, by name, over the real binaries: a group
//! deleted and created again grants by its new gid at once and its old gid (another group's by
//! then) grants nothing; a group created after the daemon started grants at once; an open Watch
//! of a caller removed from the reader group ends. No reload in between, ever.
//!
//! Root tests: they edit the test groups, which other tests share. Each puts them back as it
//! found them (a guard, also on a failed assertion), and the tests here run one at a time.

use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use vault_integration_tests::{
    ADMIN, ADMINS, Daemon, READER, READERS, Watcher, ensure_test_accounts, in_group, is_root,
    require,
};

/// The tests here change the shared groups: never two at once.
static GROUPS: Mutex<()> = Mutex::new(());

fn root_ready() -> bool {
    if !require(
        "root (to edit test groups and run vaultctl as users)",
        is_root(),
    ) {
        return false;
    }
    ensure_test_accounts();
    true
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().expect(program);
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        text(&out.stderr)
    );
}

fn gid_of(group: &str) -> Option<u32> {
    let out = Command::new("getent")
        .args(["group", group])
        .output()
        .ok()?;
    text(&out.stdout).split(':').nth(2)?.trim().parse().ok()
}

/// Undoes a test's edits when dropped: each closure in turn, errors ignored.
struct Restore(Vec<Box<dyn Fn()>>);

impl Drop for Restore {
    fn drop(&mut self) {
        for undo in self.0.iter().rev() {
            undo();
        }
    }
}

fn quiet(program: &'static str, args: Vec<String>) -> Box<dyn Fn()> {
    Box::new(move || {
        let _ = Command::new(program).args(&args).output();
    })
}

/// The number of reloads the daemon logged: none of these tests may need one.
fn reloads(daemon: &Daemon) -> usize {
    daemon.stderr().matches("config-reload").count()
}

#[test]
fn a_recreated_admin_group_grants_by_its_new_gid_and_its_old_gid_grants_nothing() {
    let _one = GROUPS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !root_ready() {
        return;
    }
    let daemon = Daemon::start("0660");
    let out = daemon.vaultctl(Some(ADMIN), &["lock"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let old_gid = gid_of(ADMINS).expect("the admins' gid");
    let impostors = format!("vaultd-it-impostors-{}", std::process::id());

    // Put back: the impostors gone, the admins group at its old gid, the admin in it.
    let mut restore = Restore(Vec::new());
    restore.0.push(Box::new(ensure_test_accounts));
    restore.0.push(quiet(
        "groupmod",
        vec!["--gid".into(), old_gid.to_string(), ADMINS.into()],
    ));
    restore.0.push(quiet("groupdel", vec![impostors.clone()]));

    // groupdel; groupadd: the same name, a new gid. The old gid has gone to another group in
    // between, and the reader (who may reach the socket) is in that one.
    run("groupdel", &[ADMINS]);
    run(
        "groupadd",
        &["--system", "--gid", &old_gid.to_string(), &impostors],
    );
    run("gpasswd", &["--add", READER, &impostors]);
    run("groupadd", &["--system", ADMINS]);
    run("gpasswd", &["--add", ADMIN, ADMINS]);
    let new_gid = gid_of(ADMINS).expect("the new gid");
    assert_ne!(new_gid, old_gid);

    // The reader's process carries the old gid: it grants nothing now.
    let out = daemon.vaultctl(Some(READER), &["lock"]);
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(4),
        "the old gid grants nothing: {stderr}"
    );
    assert!(stderr.contains("may not change"), "{stderr}");
    // The admin, in the new group: admitted at once, with no reload.
    let out = daemon.vaultctl(Some(ADMIN), &["lock"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("already locked"));
    assert_eq!(reloads(&daemon), 0, "{}", daemon.stderr());
    drop(restore);
    assert_eq!(gid_of(ADMINS), Some(old_gid), "restored");
    assert!(in_group(ADMIN, ADMINS) && in_group(ADMIN, READERS));
}

#[test]
fn a_group_created_after_start_grants_at_once() {
    let _one = GROUPS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !root_ready() {
        return;
    }
    let late = format!("vaultd-it-late-{}", std::process::id());
    let _restore = Restore(vec![quiet("groupdel", vec![late.clone()])]);
    let daemon = Daemon::start_with_admin_group(&late);
    assert!(
        daemon
            .stderr()
            .contains(&format!("group `{late}` does not exist")),
        "{}",
        daemon.stderr()
    );
    let out = daemon.vaultctl(Some(READER), &["lock"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));

    run("groupadd", &["--system", &late]);
    run("gpasswd", &["--add", READER, &late]);
    let out = daemon.vaultctl(Some(READER), &["lock"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "the new group grants at once: {}",
        text(&out.stderr)
    );
    assert_eq!(reloads(&daemon), 0, "{}", daemon.stderr());
}

#[test]
fn a_watch_ends_with_permission_denied_once_its_caller_leaves_the_reader_group() {
    let _one = GROUPS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !root_ready() {
        return;
    }
    let daemon = Daemon::start("0660");
    let _restore = Restore(vec![Box::new(ensure_test_accounts)]);
    let mut watcher = Watcher::start(&daemon.socket, Some(READER));
    let first = watcher.wait_for(Duration::from_secs(10), |v| v.get("status").is_some());
    assert_eq!(first["status"]["state"], "LOCKED");

    // Out of the group: its process still carries the gid, the group database says no.
    run("gpasswd", &["--delete", READER, READERS]);
    let status = watcher
        .wait_exit(Duration::from_secs(10))
        .expect("the watch ends within a few seconds, without any event");
    assert_eq!(status.code(), Some(4), "permission denied: {status:?}");
    let log = daemon.stderr();
    assert!(
        log.lines()
            .any(|l| l.contains("control-denied") && l.contains("Watch")),
        "the end is audited: {log}"
    );
    assert_eq!(reloads(&daemon), 0, "{log}");
}
