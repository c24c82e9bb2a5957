//! The volume's mount, made and undone by PID 1 through systemd's D-Bus API
//! (`org.freedesktop.systemd1.Manager`): `StartTransientUnit` of a `.mount` unit, and
//! `StopUnit` of it. Why not mount(2): under its unit vaultd runs in a mount namespace of its own
//! (`ProtectSystem=strict` and friends), and a mount made there never reaches the host, so
//! dockerd would bind the bare directory on the root disk. A mount PID 1 makes is the host's,
//! and it propagates into vaultd's namespace (systemd makes service namespaces slaves of the
//! host's). systemd runs mount(8) and umount(8) itself: an unmount is never forced or lazy, so
//! a busy filesystem stays mounted and the job fails.
//!
//! Every job is followed to its end by the `JobRemoved` signal, subscribed to before the job is
//! queued so that it cannot be missed, within a time limit.

use std::path::Path;
use std::time::Duration;

use tokio_stream::StreamExt;
use zbus::zvariant::{OwnedObjectPath, Value};

pub const SYSTEMD: &str = "org.freedesktop.systemd1";
pub const SYSTEMD_PATH: &str = "/org/freedesktop/systemd1";
pub const MANAGER: &str = "org.freedesktop.systemd1.Manager";

#[derive(Debug, thiserror::Error)]
pub enum SystemdError {
    #[error("cannot reach systemd on the system bus to {op}: {detail}")]
    Bus { op: &'static str, detail: String },
    #[error("systemd could not {op} (unit {unit}: job {result}{why}); see `journalctl -u {unit}`")]
    JobFailed {
        op: &'static str,
        unit: String,
        result: String,
        /// ", the unit says <Result>" when systemd says more.
        why: String,
    },
    #[error("systemd did not finish the job to {op} (unit {unit}) within {secs} s")]
    Timeout {
        op: &'static str,
        unit: String,
        secs: u64,
    },
    #[error("{path}: {why}")]
    BadPath { path: String, why: &'static str },
}

/// What to mount: fstab's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec<'a> {
    /// The block device (e.g. /dev/mapper/immich-data).
    pub what: &'a Path,
    /// The mountpoint; the unit's name is made from it.
    pub mountpoint: &'a Path,
    pub fs_type: &'a str,
    /// Comma-separated, as in fstab; passed to mount(8) as they are.
    pub options: &'a str,
}

/// systemd's name for the mount unit of `path` (`systemd-escape --path --suffix=mount`):
/// `/srv/immich` → `srv-immich.mount`, `/srv/my-photos` → `srv-my\x2dphotos.mount`.
pub fn mount_unit_name(path: &Path) -> Result<String, SystemdError> {
    let text = path.to_str().ok_or(SystemdError::BadPath {
        path: path.display().to_string(),
        why: "not UTF-8",
    })?;
    if !text.starts_with('/') {
        return Err(SystemdError::BadPath {
            path: text.to_owned(),
            why: "not an absolute path",
        });
    }
    let parts: Vec<&str> = text.split('/').filter(|p| !p.is_empty()).collect();
    if parts.iter().any(|p| *p == "." || *p == "..") {
        return Err(SystemdError::BadPath {
            path: text.to_owned(),
            why: "holds . or ..",
        });
    }
    if parts.is_empty() {
        return Ok("-.mount".to_owned());
    }
    let mut name = String::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            name.push('-');
        }
        for (j, byte) in part.bytes().enumerate() {
            let plain =
                byte.is_ascii_alphanumeric() || byte == b':' || byte == b'_' || byte == b'.';
            // A leading dot is escaped (it would make a hidden name).
            if plain && !(i == 0 && j == 0 && byte == b'.') {
                name.push(char::from(byte));
            } else {
                name.push_str(&format!("\\x{byte:02x}"));
            }
        }
    }
    name.push_str(".mount");
    Ok(name)
}

/// What the mount unit's own timeout is, within vaultd's limit for the whole job.
fn mount_timeout(limit: Duration) -> Duration {
    limit
        .saturating_sub(Duration::from_secs(15))
        .max(Duration::from_secs(5))
}

/// systemd's manager on the system bus.
#[derive(Debug, Clone)]
pub struct Systemd {
    manager: zbus::Proxy<'static>,
}

fn bus(op: &'static str) -> impl Fn(zbus::Error) -> SystemdError {
    move |e| SystemdError::Bus {
        op,
        detail: e.to_string(),
    }
}

impl Systemd {
    /// Connects to the system bus (`DBUS_SYSTEM_BUS_ADDRESS` or the standard socket).
    pub async fn connect() -> Result<Self, SystemdError> {
        let conn = zbus::Connection::system()
            .await
            .map_err(bus("connect to the system bus"))?;
        Self::on(&conn).await
    }

    pub async fn on(conn: &zbus::Connection) -> Result<Self, SystemdError> {
        let manager = zbus::Proxy::new(conn, SYSTEMD, SYSTEMD_PATH, MANAGER)
            .await
            .map_err(bus("address the Manager"))?;
        // systemd sends JobRemoved only to subscribed clients. A second Subscribe on the same
        // connection is refused; that is fine.
        let _ = manager.call::<_, _, ()>("Subscribe", &()).await;
        Ok(Self { manager })
    }

    /// Mount through a transient unit; done when systemd says the job is done (the mount is in
    /// the host's table by then).
    pub async fn mount(&self, spec: &MountSpec<'_>, limit: Duration) -> Result<(), SystemdError> {
        let unit = mount_unit_name(spec.mountpoint)?;
        let what = spec.what.to_str().ok_or(SystemdError::BadPath {
            path: spec.what.display().to_string(),
            why: "not UTF-8",
        })?;
        let description = format!("vaultd: the photo volume {what}");
        let properties: Vec<(&str, Value<'_>)> = vec![
            ("Description", Value::from(description.as_str())),
            ("What", Value::from(what)),
            ("Type", Value::from(spec.fs_type)),
            ("Options", Value::from(spec.options)),
            // At shutdown units stop in the reverse order: dockerd (and with it every container
            // still bound to the volume) before the mount, should a shutdown ever get past
            // vaultd's drain (logind's delay ran out).
            ("Before", Value::from(vec!["docker.service"])),
            // systemd gives up on mount(8) before vaultd gives up on the job, so a mount never
            // lands after vaultd stopped waiting (the job is also cancelled then).
            (
                "TimeoutUSec",
                Value::U64(
                    mount_timeout(limit)
                        .as_micros()
                        .try_into()
                        .unwrap_or(u64::MAX),
                ),
            ),
        ];
        // A unit left failed by an earlier attempt (or a crash) would make StartTransientUnit
        // refuse the name ("already loaded"); a unit that is not failed is left alone.
        let _ = self
            .manager
            .call::<_, _, ()>("ResetFailedUnit", &(unit.as_str(),))
            .await;
        let aux: Vec<(&str, Vec<(&str, Value<'_>)>)> = Vec::new();
        let op = "mount the volume";
        // Listen first: a short job can end before the call that queued it returns.
        let removed = self.follow_jobs().await?;
        let job = self
            .manager
            .call(
                "StartTransientUnit",
                &(unit.as_str(), "fail", &properties, &aux),
            )
            .await;
        self.wait_for(op, &unit, limit, removed, job).await
    }

    /// Unmount by stopping the mount unit (systemd runs umount(8), never forced).
    pub async fn unmount(&self, mountpoint: &Path, limit: Duration) -> Result<(), SystemdError> {
        let unit = mount_unit_name(mountpoint)?;
        let removed = self.follow_jobs().await?;
        let job = self
            .manager
            // Ignoring ordering: at shutdown a stop job of this unit may already be queued behind
            // dockerd's, which waits for vaultd; vaultd's own unmount must not wait on it.
            .call("StopUnit", &(unit.as_str(), "ignore-dependencies"))
            .await;
        self.wait_for("unmount the volume", &unit, limit, removed, job)
            .await
    }

    async fn follow_jobs(&self) -> Result<zbus::proxy::SignalStream<'static>, SystemdError> {
        self.manager
            .receive_signal("JobRemoved")
            .await
            .map_err(bus("follow systemd's jobs"))
    }

    /// Follows the queued `job` to its end.
    async fn wait_for(
        &self,
        op: &'static str,
        unit: &str,
        limit: Duration,
        mut removed: zbus::proxy::SignalStream<'static>,
        job: zbus::Result<OwnedObjectPath>,
    ) -> Result<(), SystemdError> {
        let job = job.map_err(|e| match e {
            zbus::Error::MethodError(name, detail, _) => SystemdError::JobFailed {
                op,
                unit: unit.to_owned(),
                result: name.to_string(),
                why: detail.map(|d| format!(": {d}")).unwrap_or_default(),
            },
            other => bus(op)(other),
        })?;
        let wait = async {
            while let Some(message) = removed.next().await {
                let Ok((_id, path, _unit, result)) =
                    message
                        .body()
                        .deserialize::<(u32, OwnedObjectPath, String, String)>()
                else {
                    continue;
                };
                if path == job {
                    return Some(result);
                }
            }
            None
        };
        let result = match tokio::time::timeout(limit, wait).await {
            Ok(Some(result)) => result,
            Ok(None) => {
                return Err(SystemdError::Bus {
                    op,
                    detail: "the bus connection ended while the job ran".into(),
                });
            }
            Err(_) => {
                // Not left to finish later behind vaultd's back.
                if let Ok(proxy) = zbus::Proxy::new(
                    self.manager.connection(),
                    SYSTEMD,
                    job.clone(),
                    "org.freedesktop.systemd1.Job",
                )
                .await
                {
                    let _ = proxy.call::<_, _, ()>("Cancel", &()).await;
                }
                return Err(SystemdError::Timeout {
                    op,
                    unit: unit.to_owned(),
                    secs: limit.as_secs(),
                });
            }
        };
        if result == "done" {
            return Ok(());
        }
        let why = self
            .unit_result(unit)
            .await
            .filter(|r| r != "success")
            .map(|r| format!(", the unit says {r}"))
            .unwrap_or_default();
        // Read, now let it go: the next attempt needs the name free.
        let _ = self
            .manager
            .call::<_, _, ()>("ResetFailedUnit", &(unit,))
            .await;
        Err(SystemdError::JobFailed {
            op,
            unit: unit.to_owned(),
            result,
            why,
        })
    }

    /// The mount unit's `Result` (e.g. `exit-code`), if systemd still has the unit.
    async fn unit_result(&self, unit: &str) -> Option<String> {
        let path: OwnedObjectPath = self.manager.call("GetUnit", &(unit,)).await.ok()?;
        let proxy = zbus::Proxy::new(
            self.manager.connection(),
            SYSTEMD,
            path,
            "org.freedesktop.systemd1.Mount",
        )
        .await
        .ok()?;
        proxy.get_property::<String>("Result").await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_names_are_systemd_escape_path() {
        let name = |p: &str| mount_unit_name(Path::new(p)).unwrap();
        assert_eq!(name("/srv/immich"), "srv-immich.mount");
        assert_eq!(name("/srv//immich/"), "srv-immich.mount");
        assert_eq!(name("/srv/my-photos"), "srv-my\\x2dphotos.mount");
        assert_eq!(name("/mnt/a b"), "mnt-a\\x20b.mount");
        assert_eq!(name("/.hidden/x.y"), "\\x2ehidden-x.y.mount");
        assert_eq!(name("/"), "-.mount");
        assert!(mount_unit_name(Path::new("srv")).is_err());
        assert!(mount_unit_name(Path::new("/srv/../etc")).is_err());
    }

    #[test]
    fn unit_names_agree_with_systemd_escape_itself() {
        let paths = [
            "/srv/immich",
            "/srv/my-photos",
            "/mnt/a b/c",
            "/.x/y.z",
            "/data/üml@ut+1",
        ];
        let Ok(out) = std::process::Command::new("systemd-escape")
            .args(["--path", "--suffix=mount"])
            .args(paths)
            .output()
        else {
            // CI installs systemd (install-deps); elsewhere the literal cases above stand.
            assert_ne!(
                std::env::var("CI").as_deref(),
                Ok("true"),
                "systemd-escape is missing"
            );
            return;
        };
        let theirs = String::from_utf8(out.stdout).unwrap();
        let ours: Vec<String> = paths
            .iter()
            .map(|p| mount_unit_name(Path::new(p)).unwrap())
            .collect();
        assert_eq!(theirs.split_whitespace().collect::<Vec<_>>(), ours);
    }
}
