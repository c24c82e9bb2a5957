//! `vaultctl backup …`: run a backup and follow it, set up a drive, list and restore; and how
//! status shows the drives.

use std::io::Write;
use std::time::SystemTime;

use serde_json::{Value, json};
use vault_api::v1 as pb;
use vault_api::v1::vault_client::VaultClient;
use zeroize::Zeroizing;

use crate::exit::Failure;
use crate::print::when;

type Client = VaultClient<tonic::transport::Channel>;

fn status(e: tonic::Status) -> Failure {
    Failure::from_status(&e)
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `12.5 % · 120/960 files · 1.2 GiB/9.4 GiB · ETA 5m 3s`.
pub fn progress_line(p: &pb::BackupProgress) -> String {
    let mut line = format!(
        "{:.1} % · {}/{} files · {}/{}",
        p.percent,
        p.files_done,
        p.files_total,
        bytes(p.bytes_done),
        bytes(p.bytes_total)
    );
    if p.seconds_remaining > 0 {
        line.push_str(&format!(
            " · ETA {}m {}s",
            p.seconds_remaining / 60,
            p.seconds_remaining % 60
        ));
    }
    line
}

/// Run a backup now and print its progress until it ends. Exit non-zero unless it made a
/// snapshot that verified.
pub async fn run(client: &mut Client, drive: String, json: bool) -> Result<(), Failure> {
    let mut stream = client
        .backup(pb::BackupRequest { drive })
        .await
        .map_err(status)?
        .into_inner();
    let mut last = String::new();
    while let Some(event) = stream.message().await.map_err(status)? {
        if event.done {
            if json {
                println!(
                    "{}",
                    json!({"done": true, "outcome": event.outcome, "message": event.message})
                );
            } else {
                println!("{}: {}", event.outcome, event.message);
            }
            return match event.outcome.as_str() {
                "ok" => Ok(()),
                _ => Err(Failure::FlowFailed(format!(
                    "the backup ended {}",
                    event.outcome
                ))),
            };
        }
        let line = match &event.progress {
            Some(p) => format!("  … {} · {}", event.doing, progress_line(p)),
            None => format!("  … {}", event.doing),
        };
        if json {
            println!(
                "{}",
                json!({"doing": event.doing, "progress": event.progress.as_ref().map(progress_json)})
            );
        } else if line != last && !event.doing.is_empty() {
            println!("{line}");
            last = line;
        }
        let _ = std::io::stdout().flush();
    }
    Err(Failure::Unreachable(
        "vaultd ended the backup's stream before it ended".into(),
    ))
}

pub async fn init(
    client: &mut Client,
    device: String,
    recovery: Zeroizing<Vec<u8>>,
    force: bool,
    json: bool,
) -> Result<(), Failure> {
    let mut recovery = recovery;
    let reply = client
        .backup_init(pb::BackupInitRequest {
            device,
            // Moved, not copied (see Unlock).
            recovery_passphrase: std::mem::take(&mut *recovery),
            force,
        })
        .await
        .map_err(status)?
        .into_inner();
    if json {
        println!(
            "{}",
            json!({"drive": reply.drive, "message": reply.message})
        );
    } else {
        println!("{}", reply.message);
    }
    Ok(())
}

pub async fn list(client: &mut Client, drive: String, json: bool) -> Result<(), Failure> {
    let reply = client
        .backup_list(pb::BackupListRequest { drive })
        .await
        .map_err(status)?
        .into_inner();
    if json {
        let snapshots: Vec<Value> = reply
            .snapshots
            .iter()
            .map(|s| json!({"id": s.id, "short_id": s.short_id, "time": s.time, "paths": s.paths, "hostname": s.hostname}))
            .collect();
        println!("{}", json!({"drive": reply.drive, "snapshots": snapshots}));
    } else {
        println!("snapshots on {} ({}):", reply.drive, reply.snapshots.len());
        for s in &reply.snapshots {
            println!("  {}  {}  {}", s.short_id, s.time, s.paths.join(" "));
        }
    }
    Ok(())
}

pub async fn restore(
    client: &mut Client,
    request: pb::BackupRestoreRequest,
    json: bool,
) -> Result<(), Failure> {
    let reply = client
        .backup_restore(request)
        .await
        .map_err(status)?
        .into_inner();
    if json {
        println!("{}", json!({"message": reply.message}));
    } else {
        println!("{}", reply.message);
    }
    Ok(())
}

pub fn progress_json(p: &pb::BackupProgress) -> Value {
    json!({
        "percent": p.percent,
        "files_done": p.files_done,
        "files_total": p.files_total,
        "bytes_done": p.bytes_done,
        "bytes_total": p.bytes_total,
        "seconds_elapsed": p.seconds_elapsed,
        "seconds_remaining": (p.seconds_remaining > 0).then_some(p.seconds_remaining),
    })
}

/// Status's rows for the backups.
pub fn status_rows(b: &pb::Backups, now: SystemTime) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    if !b.doing.is_empty() {
        let mut line = b.doing.clone();
        if let Some(p) = &b.progress {
            line.push_str(&format!(" · {}", progress_line(p)));
        }
        rows.push(("backup".into(), line));
    }
    if !b.waiting_drive.is_empty() {
        rows.push((
            "backup".into(),
            format!(
                "drive {} is plugged in: its backup begins once the vault is unlocked (after a power cut, once its checks have passed)",
                b.waiting_drive
            ),
        ));
    }
    if b.drives.is_empty() {
        rows.push((
            "backups".into(),
            "no drive set up (`vaultctl backup init DEVICE`)".into(),
        ));
    }
    for d in &b.drives {
        let plugged = if d.uuid == "offsite" {
            "off site, over SFTP"
        } else if d.plugged_in {
            "plugged in"
        } else {
            "not plugged in"
        };
        let last = if d.last_unix > 0 {
            format!(
                "last {} (snapshot {}, {} new, {} changed, {} added, {:.0} s)",
                when(d.last_unix, now),
                d.last_snapshot.get(..8).unwrap_or(&d.last_snapshot),
                d.last_files_new,
                d.last_files_changed,
                bytes(d.last_bytes_added),
                d.last_millis as f64 / 1000.0
            )
        } else {
            "never backed up".into()
        };
        rows.push(("drive".into(), format!("{} ({plugged}): {last}", d.uuid)));
        if d.verified_unix > 0 {
            rows.push((
                "verified".into(),
                format!(
                    "{} {}: {}",
                    if d.verified_ok { "ok" } else { "FAILED" },
                    when(d.verified_unix, now),
                    d.verified
                ),
            ));
        }
        if !d.last_failure.is_empty() {
            rows.push(("last error".into(), d.last_failure.clone()));
        }
    }
    rows
}

pub fn status_json(b: &pb::Backups) -> Value {
    json!({
        "doing": (!b.doing.is_empty()).then_some(&b.doing),
        "progress": b.progress.as_ref().map(progress_json),
        "waiting_drive": (!b.waiting_drive.is_empty()).then_some(&b.waiting_drive),
        "drives": b.drives.iter().map(|d| json!({
            "uuid": d.uuid,
            "plugged_in": d.plugged_in,
            "runs": d.runs,
            "last_unix": (d.last_unix > 0).then_some(d.last_unix),
            "last_snapshot": d.last_snapshot,
            "last_files_new": d.last_files_new,
            "last_files_changed": d.last_files_changed,
            "last_bytes_added": d.last_bytes_added,
            "last_millis": d.last_millis,
            "verified_unix": (d.verified_unix > 0).then_some(d.verified_unix),
            "verified_ok": d.verified_ok,
            "verified": d.verified,
            "last_failure": (!d.last_failure.is_empty()).then_some(&d.last_failure),
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_reads_at_a_glance() {
        let p = pb::BackupProgress {
            percent: 12.5,
            files_done: 120,
            files_total: 960,
            bytes_done: 3 * 1024 * 1024 * 1024 / 2,
            bytes_total: 12 * 1024 * 1024 * 1024,
            seconds_elapsed: 30,
            seconds_remaining: 303,
        };
        assert_eq!(
            progress_line(&p),
            "12.5 % · 120/960 files · 1.5 GiB/12.0 GiB · ETA 5m 3s"
        );
        assert_eq!(bytes(5), "5 B");
    }

    #[test]
    fn status_says_when_no_drive_is_set_up_and_when_one_waits() {
        let b = pb::Backups {
            waiting_drive: "0a1b2c3d-0000-4000-8000-00000000abcd".into(),
            ..pb::Backups::default()
        };
        let rows = status_rows(&b, SystemTime::now());
        assert!(
            rows.iter()
                .any(|(_, v)| v.contains("begins once the vault is unlocked"))
        );
        assert!(rows.iter().any(|(_, v)| v.contains("backup init")));
    }
}
