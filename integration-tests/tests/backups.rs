//! The backup calls over the real socket (issue 19), where this host can run them: the real
//! vaultd LOCKED (no device-mapper here: the whole path runs in the full-system guest), as the
//! users the tests create. Who may call them, what LOCKED answers, what status and check say of
//! a drive never used, and a request over the bound refused with the daemon still answering.

use vault_integration_tests::{ADMIN, Daemon, READER, ensure_test_accounts, is_root, require};

const DRIVE: &str = "0a1b2c3d-0000-4000-8000-00000000abcd";

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn daemon() -> Option<Daemon> {
    if !require("root (test users, the real daemon)", is_root()) {
        return None;
    }
    ensure_test_accounts();
    Some(Daemon::start_with(
        "0660",
        &format!("\n[backup]\ndrives = [\"{}\"]\n", DRIVE.to_uppercase()),
    ))
}

#[test]
fn backups_are_for_admins_and_wait_for_an_unlocked_vault() {
    let Some(d) = daemon() else { return };
    // A reader may look, not act.
    let out = d.vaultctl(Some(READER), &["backup"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let out = d.vaultctl(Some(READER), &["backup", "list"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    // An admin is told why not: the drive's key is on the vault.
    let out = d.vaultctl(Some(ADMIN), &["backup"]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    assert!(text(&out).contains("the vault is locked"), "{}", text(&out));
    let key = d.dir.path().join("recovery");
    std::fs::write(&key, "a recovery passphrase of some length").expect("write");
    let out = d.vaultctl(
        None,
        &[
            "backup",
            "init",
            "/dev/null",
            "--key-file",
            key.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    assert!(text(&out).contains("locked"), "{}", text(&out));
    // Nothing of the passphrase in the daemon's words.
    assert!(!d.stderr().contains("a recovery passphrase of some length"));
    // A bad drive name is bad input, said as such.
    let out = d.vaultctl(None, &["backup", "--drive", "../../etc", "list"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("not a LUKS2 UUID"), "{}", text(&out));
}

#[test]
fn status_and_check_say_what_the_owner_must_do() {
    let Some(d) = daemon() else { return };
    let out = d.vaultctl(Some(READER), &["status"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("{DRIVE} (not plugged in): never backed up")),
        "{}",
        text(&out)
    );
    let out = d.vaultctl(Some(READER), &["status", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["backups"]["drives"][0]["uuid"], DRIVE);
    assert_eq!(json["backups"]["drives"][0]["plugged_in"], false);
    let out = d.vaultctl(Some(READER), &["check", "--json"]);
    assert!(
        text(&out).contains("no backup has been made yet"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_restore_request_over_the_bound_is_refused_and_the_daemon_answers_on() {
    let Some(d) = daemon() else { return };
    let long = format!("/srv/{}", "x".repeat(4000));
    let out = d.vaultctl(None, &["backup", "restore", "latest", &long, "/srv/t"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert_ne!(
        out.status.code(),
        Some(5),
        "refused by the bound, not by the state: {}",
        text(&out)
    );
    let out = d.vaultctl(None, &["status"]);
    assert!(out.status.success(), "{}", text(&out));
    // Within the bound, the state's refusal.
    let out = d.vaultctl(
        None,
        &["backup", "restore", "latest", "/srv/a.jpg", "/srv/t"],
    );
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
}

#[test]
fn the_simulation_has_no_drive_and_says_so() {
    let d = Daemon::start_sim("");
    let out = d.vaultctl(None, &["backup"]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    assert!(text(&out).contains("no backup drives"), "{}", text(&out));
}
