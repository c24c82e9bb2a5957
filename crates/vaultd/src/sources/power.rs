//! The power sources: UPower on the system bus and the kernel's power_supply class, each
//! followed on its own and turned into a [`SourceUpdate`]; the core decides which one counts
//! (UPower, the kernel only while UPower is absent) and what a vanished one means. Also the
//! battery's charge cap (battery care), set once at start.

use vault_core::Event;
use vault_core::power_source::SourceUpdate;
use vault_power::PowerUpdate;
use vault_power::kernel::{self, KernelReading};

use crate::supervisor::Msg;

use super::{Backoff, Tasks, latest_feed};

/// The kernel's class as a reading, or why there is none.
fn from_kernel(reading: std::io::Result<KernelReading>) -> SourceUpdate {
    match reading.map(|r| r.to_core()) {
        Ok(Some(reading)) => SourceUpdate::Kernel(reading),
        Ok(None) => SourceUpdate::KernelGone("the kernel reports no battery or line power".into()),
        Err(e) => SourceUpdate::KernelGone(format!("{}: {e}", kernel::POWER_SUPPLY_CLASS)),
    }
}

/// Why the charge cap could not be set. Under the packaged unit /sys is read-only
/// (ProtectKernelTunables=yes): the owner who wants the cap allows the battery's own directory,
/// named here as the kernel resolves it (a drop-in's ReadWritePaths= needs the real path).
fn charge_cap_refused(battery: &kernel::Battery, percent: u32, error: &std::io::Error) -> String {
    let refused = format!(
        "cannot set the {percent} % charge cap on {}: {error}",
        battery.name
    );
    if error.kind() != std::io::ErrorKind::ReadOnlyFilesystem {
        return refused;
    }
    let real = std::fs::canonicalize(&battery.path).unwrap_or_else(|_| battery.path.clone());
    format!(
        "{refused} (the unit keeps /sys read-only: allow the battery with a drop-in \
         `ReadWritePaths={}`, see docs/operations.md)",
        real.display()
    )
}

fn to_msg(update: SourceUpdate) -> Msg {
    Msg::Event(Event::PowerSource(update))
}

/// Follow both sources and hand what they see to the supervisor. Each has its own latest-value
/// feed: a burst of one source's updates coalesces, but never swallows the other's.
pub fn spawn(tasks: &Tasks, tx: tokio::sync::mpsc::Sender<Msg>, charge_end_threshold: Option<u32>) {
    let class = std::path::PathBuf::from(kernel::POWER_SUPPLY_CLASS);
    // Battery care, once at start: the cap where configured, and what the battery says.
    let care = match kernel::read(&class).ok().and_then(|r| r.battery) {
        None => "no battery in /sys/class/power_supply".to_owned(),
        Some(battery) => match charge_end_threshold {
            Some(percent) => match kernel::set_charge_end_threshold(&battery, percent) {
                Ok(true) => format!("charge cap set to {percent} % on {}", battery.name),
                Ok(false) => format!(
                    "{} has no charge_control_end_threshold: the {percent} % cap cannot be set",
                    battery.name
                ),
                Err(e) => charge_cap_refused(&battery, percent, &e),
            },
            None => match battery.charge_end_threshold {
                Some(cap) => format!(
                    "charge cap {cap} % on {} (not managed by vaultd)",
                    battery.name
                ),
                None => format!("{} has no charge cap", battery.name),
            },
        },
    };
    tracing::info!("battery care: {care}");
    let _ = tx.try_send(Msg::BatteryCare(care));

    let kernel_feed = latest_feed(tasks, tx.clone(), to_msg);
    let started = std::thread::Builder::new()
        .name("power-supply".into())
        .spawn(move || {
            let ended = kernel::follow_blocking(&class, |reading| {
                kernel_feed.send_replace(Some(from_kernel(reading)));
                !kernel_feed.is_closed()
            });
            if let Err(error) = ended {
                tracing::warn!(%error, "cannot follow the kernel's power_supply class");
                kernel_feed.send_replace(Some(SourceUpdate::KernelGone(format!(
                    "cannot follow {}: {error}",
                    kernel::POWER_SUPPLY_CLASS
                ))));
            }
        });
    if let Err(error) = started {
        tracing::warn!(%error, "cannot start the power_supply follower");
    }
    let upower_feed = latest_feed(tasks, tx.clone(), to_msg);
    tasks.spawn(async move {
        let mut backoff = Backoff::new();
        loop {
            let ended = match vault_power::system_bus().await {
                Ok(conn) => {
                    backoff.reset();
                    let feed = upower_feed.clone();
                    vault_power::follow(&conn, move |update| match update {
                        PowerUpdate::Reading(r) => {
                            tracing::debug!(?r, "upower");
                            feed.send_replace(Some(SourceUpdate::UPower(r.to_core())));
                        }
                        PowerUpdate::SourceGone(why) => {
                            feed.send_replace(Some(SourceUpdate::UPowerGone(why)));
                        }
                    })
                    .await
                }
                Err(e) => Err(e),
            };
            if let Err(error) = ended {
                upower_feed.send_replace(Some(SourceUpdate::UPowerGone(error.to_string())));
            }
            if tx.is_closed() {
                return;
            }
            backoff.sleep().await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn battery(path: &std::path::Path) -> kernel::Battery {
        kernel::Battery {
            name: "BAT0".into(),
            status: "Charging".into(),
            capacity: Some(55.0),
            time_to_empty_secs: None,
            charge_end_threshold: Some(100),
            path: path.to_path_buf(),
        }
    }

    #[test]
    fn a_read_only_sys_names_the_drop_in_with_the_real_path() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("devices-BAT0");
        std::fs::create_dir(&real).unwrap();
        let link = dir.path().join("BAT0");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let erofs = std::io::Error::from_raw_os_error(libc::EROFS);
        let said = charge_cap_refused(&battery(&link), 60, &erofs);
        assert!(
            said.starts_with("cannot set the 60 % charge cap on BAT0: "),
            "{said}"
        );
        let want = format!(
            "`ReadWritePaths={}`",
            real.canonicalize().unwrap().display()
        );
        assert!(said.contains(&want), "{said}");
    }

    #[test]
    fn other_refusals_say_only_the_error() {
        let denied = std::io::Error::from_raw_os_error(libc::EACCES);
        let said = charge_cap_refused(&battery(std::path::Path::new("/nonexistent")), 60, &denied);
        assert!(!said.contains("ReadWritePaths"), "{said}");
        assert!(said.contains("Permission denied"), "{said}");
    }
}
