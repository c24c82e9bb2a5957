//! The power source: UPower on the system bus, the kernel's power_supply class while UPower is
//! absent, and the battery's charge cap (battery care), set once at start.

use crate::supervisor::Msg;

use super::{Backoff, Tasks, latest_feed};

/// Follow UPower on the system bus and hand each reading to the supervisor. Without a bus or
/// without UPower, the supervisor is told the source is gone (an alarm), and the watch retries.
pub fn spawn(tasks: &Tasks, tx: tokio::sync::mpsc::Sender<Msg>, charge_end_threshold: Option<u32>) {
    use crate::supervisor::PowerSeen;
    use std::sync::Arc;
    use std::sync::Mutex;
    use vault_power::kernel::{self, KernelReading};
    use vault_power::{PowerUpdate, UPowerReading, state};

    fn from_upower(r: &UPowerReading) -> PowerSeen {
        PowerSeen {
            source: "upower",
            reading: Some(vault_core::PowerReading {
                on_battery: r.on_battery,
                // Without a battery, the DisplayDevice's percentage means nothing.
                percent: r.is_present.then_some(r.percentage),
                // 0 is UPower's "unknown"; an estimate only means something while discharging.
                time_to_empty_secs: (r.time_to_empty > 0
                    && matches!(r.state, state::DISCHARGING | state::EMPTY))
                .then(|| u64::try_from(r.time_to_empty).unwrap_or(0)),
            }),
            gone: None,
        }
    }
    /// The kernel's view, used while UPower is absent; `why` says why UPower is not used.
    fn from_kernel(reading: std::io::Result<KernelReading>, why: &str) -> PowerSeen {
        match reading {
            Ok(r) if !r.is_empty() => PowerSeen {
                source: "kernel",
                reading: Some(vault_core::PowerReading {
                    on_battery: r.on_battery(),
                    percent: r.battery.as_ref().and_then(|b| b.capacity),
                    time_to_empty_secs: r.battery.as_ref().and_then(|b| b.time_to_empty_secs),
                }),
                gone: None,
            },
            Ok(_) => PowerSeen {
                source: "none",
                reading: None,
                gone: Some(format!(
                    "{why}, and the kernel reports no battery or line power"
                )),
            },
            Err(e) => PowerSeen {
                source: "none",
                reading: None,
                gone: Some(format!("{why}, and {}: {e}", kernel::POWER_SUPPLY_CLASS)),
            },
        }
    }

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
                Err(e) => format!(
                    "cannot set the {percent} % charge cap on {}: {e}",
                    battery.name
                ),
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

    // UPower first; the kernel's power_supply class only while UPower is known to be absent.
    // One lock orders the two sources: a kernel reading taken just before UPower answered
    // cannot land after UPower's and override it. At start neither is sent until UPower's
    // presence is known (no false "power source gone" while the bus is still being asked).
    #[derive(Clone, Copy, PartialEq)]
    enum UPowerIs {
        Unknown,
        Live,
        Absent,
    }
    let feed = Arc::new(latest_feed(tasks, tx.clone(), Msg::Power));
    let upower = Arc::new(Mutex::new(UPowerIs::Unknown));
    {
        let feed = feed.clone();
        let upower = upower.clone();
        let class = class.clone();
        let started = std::thread::Builder::new()
            .name("power-supply".into())
            .spawn(move || {
                let ended = kernel::follow_blocking(&class, |reading| {
                    let upower = upower
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    if *upower == UPowerIs::Absent {
                        feed.send_replace(Some(from_kernel(reading, "UPower is absent")));
                    }
                    !feed.is_closed()
                });
                if let Err(error) = ended {
                    tracing::warn!(%error, "cannot follow the kernel's power_supply class");
                }
            });
        if let Err(error) = started {
            tracing::warn!(%error, "cannot start the power_supply follower");
        }
    }
    let absent =
        move |upower: &Mutex<UPowerIs>, feed: &tokio::sync::watch::Sender<_>, why: &str| {
            let mut upower = upower
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *upower = UPowerIs::Absent;
            feed.send_replace(Some(from_kernel(kernel::read(&class), why)));
        };
    tasks.spawn(async move {
        let mut backoff = Backoff::new();
        loop {
            let ended = match vault_power::system_bus().await {
                Ok(conn) => {
                    backoff.reset();
                    let feed = feed.clone();
                    let upower = upower.clone();
                    let absent = absent.clone();
                    vault_power::follow(&conn, move |update| match update {
                        PowerUpdate::Reading(r) => {
                            tracing::debug!(?r, "upower");
                            let mut upower = upower
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner);
                            *upower = UPowerIs::Live;
                            feed.send_replace(Some(from_upower(&r)));
                        }
                        PowerUpdate::SourceGone(why) => absent(&upower, &feed, &why),
                    })
                    .await
                }
                Err(e) => Err(e),
            };
            if let Err(error) = ended {
                absent(&upower, &feed, &error.to_string());
            }
            if tx.is_closed() {
                return;
            }
            backoff.sleep().await;
        }
    });
}
