//! The kernel fallback where UPower is absent: the `power_supply` class in sysfs (per
//! Documentation/ABI/testing/sysfs-class-power), read again on every udev `change` event of
//! the subsystem. No polling: the follower blocks in poll(2) on the udev monitor.

use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

pub const POWER_SUPPLY_CLASS: &str = "/sys/class/power_supply";

/// The battery the kernel reports (the first one present, by name).
#[derive(Debug, Clone, PartialEq)]
pub struct Battery {
    pub name: String,
    /// Charging, Discharging, Not charging, Full, Unknown.
    pub status: String,
    pub capacity: Option<f64>,
    /// The driver's own estimate, else energy (or charge) over power (or current).
    pub time_to_empty_secs: Option<u64>,
    /// `charge_control_end_threshold`, where the battery has one.
    pub charge_end_threshold: Option<u32>,
    pub path: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub struct KernelReading {
    /// Whether any line supply (Mains, USB, Wireless) is online; `None` when there is none.
    pub line_power: Option<bool>,
    pub battery: Option<Battery>,
}

impl KernelReading {
    /// On battery: line supplies exist and none is online; or, with none known, the battery
    /// says it is discharging.
    pub fn on_battery(&self) -> bool {
        match self.line_power {
            Some(online) => !online && self.battery.is_some(),
            None => self
                .battery
                .as_ref()
                .is_some_and(|b| b.status == "Discharging"),
        }
    }

    /// Neither a battery nor a line supply: nothing to follow.
    pub fn is_empty(&self) -> bool {
        self.line_power.is_none() && self.battery.is_none()
    }

    /// What the power policy judges of it, or `None` when there is nothing to judge (see
    /// [`Self::is_empty`]): the daemon's conversion, pure (the fuzz target `kernel_power`
    /// judges its readings through it too).
    pub fn to_core(&self) -> Option<vault_core::PowerReading> {
        (!self.is_empty()).then(|| vault_core::PowerReading {
            on_battery: self.on_battery(),
            percent: self.battery.as_ref().and_then(|b| b.capacity),
            time_to_empty_secs: self.battery.as_ref().and_then(|b| b.time_to_empty_secs),
        })
    }
}

/// A supply's attributes by name, as the kernel prints them (trimmed): its sysfs directory, or
/// a map (the tests, and the fuzz target `kernel_power` in integration-tests/fuzz).
pub trait Attributes {
    fn attr(&self, name: &str) -> Option<String>;
}

impl Attributes for Path {
    fn attr(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.join(name))
            .ok()
            .map(|s| s.trim().to_owned())
    }
}

impl Attributes for std::collections::BTreeMap<String, String> {
    fn attr(&self, name: &str) -> Option<String> {
        self.get(name).map(|s| s.trim().to_owned())
    }
}

fn number(supply: &(impl Attributes + ?Sized), name: &str) -> Option<f64> {
    supply.attr(name)?.parse().ok()
}

/// Read every supply under `class` (normally /sys/class/power_supply).
pub fn read(class: &Path) -> io::Result<KernelReading> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(class)?
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    Ok(reading(
        entries.iter().map(|dir| (dir.as_path(), dir.as_path())),
    ))
}

/// The reading of the supplies given (their directory, their attributes), in the order given:
/// the pure part of [`read`].
pub fn reading<'a, A: Attributes + ?Sized + 'a>(
    supplies: impl IntoIterator<Item = (&'a Path, &'a A)>,
) -> KernelReading {
    let mut line_power: Option<bool> = None;
    let mut batteries = Vec::new();
    for (dir, supply) in supplies {
        match supply.attr("type").as_deref() {
            Some("Mains" | "USB" | "Wireless") => {
                let online = number(supply, "online").is_some_and(|v| v != 0.0);
                line_power = Some(line_power.unwrap_or(false) || online);
            }
            Some("Battery") => {
                if supply.attr("present").as_deref() == Some("0") {
                    continue;
                }
                let status = supply.attr("status").unwrap_or_else(|| "Unknown".into());
                batteries.push(Battery {
                    name: dir
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    time_to_empty_secs: (status == "Discharging")
                        .then(|| time_to_empty(supply))
                        .flatten(),
                    status,
                    capacity: number(supply, "capacity"),
                    charge_end_threshold: supply
                        .attr("charge_control_end_threshold")
                        .and_then(|v| v.parse().ok()),
                    path: dir.to_owned(),
                });
            }
            _ => {}
        }
    }
    KernelReading {
        line_power,
        battery: batteries.into_iter().next(),
    }
}

/// Seconds to empty: the driver's estimate if it gives one, else energy/power or
/// charge/current (µWh/µW, µAh/µA; some drivers report the rate as negative). Each counts only
/// when it is a positive, finite number: drivers print 0 for "unknown", and the next way of
/// estimating is then tried.
fn time_to_empty(supply: &(impl Attributes + ?Sized)) -> Option<u64> {
    let positive = |secs: f64| (secs.is_finite() && secs > 0.0).then_some(secs);
    let secs = number(supply, "time_to_empty_now")
        .and_then(positive)
        .or_else(|| number(supply, "time_to_empty_avg").and_then(positive))
        .or_else(|| {
            let energy = number(supply, "energy_now")?;
            let power = number(supply, "power_now")?.abs();
            positive(energy / power * 3600.0)
        })
        .or_else(|| {
            let charge = number(supply, "charge_now")?;
            let current = number(supply, "current_now")?.abs();
            positive(charge / current * 3600.0)
        })?;
    // Rounded up, so that an estimate under a second stays an estimate ("now"), not 0 (which
    // reads as "unknown"); finite and positive, so the conversion keeps the value (saturating
    // past u64::MAX).
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Some(secs.ceil() as u64)
}

/// Set the battery's charge cap (`charge_control_end_threshold`). `Ok(false)` when the battery
/// has no such attribute (many do not): reported, not an error.
pub fn set_charge_end_threshold(battery: &Battery, percent: u32) -> io::Result<bool> {
    let path = battery.path.join("charge_control_end_threshold");
    if !path.exists() {
        return Ok(false);
    }
    std::fs::write(&path, format!("{percent}\n"))?;
    Ok(true)
}

/// Follow the class: call `on` with a reading now and after every udev event of the
/// `power_supply` subsystem, until `on` returns false. Blocking (poll(2) without a timeout):
/// run it on a thread of its own.
pub fn follow_blocking(
    class: &Path,
    mut on: impl FnMut(io::Result<KernelReading>) -> bool,
) -> io::Result<()> {
    let socket = udev::MonitorBuilder::new()?
        .match_subsystem("power_supply")?
        .listen()?;
    if !on(read(class)) {
        return Ok(());
    }
    let mut pollfd = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd for the monitor socket, which outlives the call.
        let ready = unsafe { libc::poll(&raw mut pollfd, 1, -1) };
        if ready < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        // Drain what arrived; the reading is taken once for the burst.
        for _event in socket.iter() {}
        if !on(read(class)) {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn supply(root: &Path, name: &str, attrs: &[(&str, &str)]) {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for (k, v) in attrs {
            std::fs::write(dir.join(k), format!("{v}\n")).unwrap();
        }
    }

    #[test]
    fn a_laptop_unplugged_is_on_battery_with_an_estimate_from_energy_and_power() {
        let root = tempfile::tempdir().unwrap();
        supply(root.path(), "AC", &[("type", "Mains"), ("online", "0")]);
        supply(
            root.path(),
            "BAT0",
            &[
                ("type", "Battery"),
                ("present", "1"),
                ("status", "Discharging"),
                ("capacity", "42"),
                ("energy_now", "20000000"),
                ("power_now", "10000000"),
            ],
        );
        let r = read(root.path()).unwrap();
        assert!(r.on_battery());
        let b = r.battery.unwrap();
        assert_eq!(b.capacity, Some(42.0));
        assert_eq!(b.time_to_empty_secs, Some(7200));
        assert_eq!(b.charge_end_threshold, None);
    }

    fn battery(attrs: &[(&str, &str)]) -> Option<u64> {
        let mut map: std::collections::BTreeMap<String, String> = [("type", "Battery")]
            .iter()
            .chain(attrs)
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        map.insert("status".into(), "Discharging".into());
        reading([(Path::new("/sys/class/power_supply/BAT0"), &map)])
            .battery
            .and_then(|b| b.time_to_empty_secs)
    }

    /// Found by the fuzz target kernel_power (integration-tests/fuzz/RUNS.md): a driver's 0
    /// ("unknown") hid the energy/power estimate, and an estimate under a second came out as 0.
    #[test]
    fn an_estimate_is_positive_and_a_zero_from_the_driver_falls_through() {
        assert_eq!(
            battery(&[
                ("time_to_empty_now", "0"),
                ("energy_now", "20000000"),
                ("power_now", "10000000"),
            ]),
            Some(7200)
        );
        assert_eq!(battery(&[("time_to_empty_now", "0.4")]), Some(1));
        assert_eq!(
            battery(&[
                ("time_to_empty_avg", "0"),
                ("charge_now", "2"),
                ("current_now", "-14500000")
            ]),
            Some(1)
        );
        assert_eq!(
            battery(&[("time_to_empty_now", "nan"), ("power_now", "0")]),
            None
        );
        assert_eq!(battery(&[("time_to_empty_now", "-5")]), None);
        assert_eq!(battery(&[("time_to_empty_now", "1e300")]), Some(u64::MAX));
    }

    #[test]
    fn any_line_supply_online_means_ac_and_no_supplies_means_nothing_to_follow() {
        let root = tempfile::tempdir().unwrap();
        supply(root.path(), "AC", &[("type", "Mains"), ("online", "0")]);
        supply(root.path(), "usb", &[("type", "USB"), ("online", "1")]);
        supply(
            root.path(),
            "BAT0",
            &[
                ("type", "Battery"),
                ("status", "Charging"),
                ("capacity", "80"),
                ("charge_control_end_threshold", "60"),
            ],
        );
        let r = read(root.path()).unwrap();
        assert!(!r.on_battery());
        assert_eq!(r.battery.as_ref().unwrap().time_to_empty_secs, None);
        assert_eq!(r.battery.unwrap().charge_end_threshold, Some(60));
        let empty = tempfile::tempdir().unwrap();
        assert!(read(empty.path()).unwrap().is_empty());
    }
}
