//! vaultd's power adapter: UPower on the system D-Bus (`org.freedesktop.UPower`), per the
//! interface XML in UPower's source. `OnBattery` on the main object and the DisplayDevice's
//! `Percentage`, `State`, `TimeToEmpty`, `IsPresent` and `WarningLevel` are read once, then
//! followed by the values `PropertiesChanged` carries, never polled. UPower leaving the bus or coming back
//! (`NameOwnerChanged`) is reported too: no reading is guessed while it is gone.

pub mod kernel;
pub mod logind;

use std::collections::HashMap;

use tokio_stream::StreamExt;
use zbus::fdo::{DBusProxy, PropertiesProxy};
use zbus::names::{BusName, InterfaceName};
use zbus::zvariant::{OwnedObjectPath, OwnedValue};

pub const UPOWER: &str = "org.freedesktop.UPower";
pub const UPOWER_PATH: &str = "/org/freedesktop/UPower";
pub const DEVICE_INTERFACE: &str = "org.freedesktop.UPower.Device";

#[derive(Debug, thiserror::Error)]
pub enum PowerError {
    #[error("cannot reach the system D-Bus: {0}")]
    Bus(String),
    #[error("UPower: cannot {op}: {detail}")]
    UPower { op: &'static str, detail: String },
    #[error("logind: cannot {op}: {detail}")]
    Logind { op: &'static str, detail: String },
}

/// The DisplayDevice's `State` values (UPower.Device.xml).
pub mod state {
    pub const CHARGING: u32 = 1;
    pub const DISCHARGING: u32 = 2;
    pub const EMPTY: u32 = 3;
}

/// What UPower says now.
#[derive(Debug, Clone, PartialEq)]
pub struct UPowerReading {
    pub on_battery: bool,
    /// Whether the DisplayDevice stands for a battery that is there.
    pub is_present: bool,
    pub percentage: f64,
    /// 0 unknown, 1 charging, 2 discharging, 3 empty, 4 fully charged, 5/6 pending.
    pub state: u32,
    /// Seconds; 0 means unknown.
    pub time_to_empty: i64,
    /// 1 none, 3 low, 4 critical, 5 action.
    pub warning_level: u32,
}

impl UPowerReading {
    /// What the power policy judges of it: the daemon's conversion, pure (the fuzz target
    /// `upower_signal` judges its readings through it too).
    pub fn to_core(&self) -> vault_core::PowerReading {
        vault_core::PowerReading {
            on_battery: self.on_battery,
            // Without a battery, the DisplayDevice's percentage means nothing.
            percent: self.is_present.then_some(self.percentage),
            // 0 is UPower's "unknown"; an estimate only means something while discharging.
            time_to_empty_secs: u64::try_from(self.time_to_empty)
                .ok()
                .filter(|&secs| secs > 0)
                .filter(|_| matches!(self.state, state::DISCHARGING | state::EMPTY)),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum PowerUpdate {
    Reading(UPowerReading),
    /// UPower is not on the bus (never was, or left). Why, in words.
    SourceGone(String),
}

fn upower_error(op: &'static str) -> impl Fn(zbus::Error) -> PowerError {
    move |e| PowerError::UPower {
        op,
        detail: e.to_string(),
    }
}

fn fdo_error(op: &'static str) -> impl Fn(zbus::fdo::Error) -> PowerError {
    move |e| PowerError::UPower {
        op,
        detail: e.to_string(),
    }
}

/// Connect to the system bus (`DBUS_SYSTEM_BUS_ADDRESS` when set).
pub async fn system_bus() -> Result<zbus::Connection, PowerError> {
    zbus::Connection::system()
        .await
        .map_err(|e| PowerError::Bus(e.to_string()))
}

async fn properties(
    conn: &zbus::Connection,
    path: &str,
) -> Result<PropertiesProxy<'static>, PowerError> {
    PropertiesProxy::builder(conn)
        .destination(UPOWER)
        .and_then(|b| b.path(path.to_owned()))
        .map_err(upower_error("address its objects"))?
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .map_err(upower_error("address its objects"))
}

fn get<T: TryFrom<OwnedValue>>(all: &HashMap<String, OwnedValue>, name: &str) -> Option<T> {
    all.get(name)
        .and_then(|v| v.try_clone().ok())
        .and_then(|v| T::try_from(v).ok())
}

async fn read(
    main: &PropertiesProxy<'_>,
    device: &PropertiesProxy<'_>,
) -> Result<UPowerReading, PowerError> {
    let main_all = main
        .get_all(InterfaceName::from_static_str_unchecked(UPOWER))
        .await
        .map_err(fdo_error("read OnBattery"))?;
    let dev = device
        .get_all(InterfaceName::from_static_str_unchecked(DEVICE_INTERFACE))
        .await
        .map_err(fdo_error("read the DisplayDevice"))?;
    Ok(reading_of(&main_all, &dev))
}

/// A reading from the properties of UPower's main object and of its DisplayDevice (GetAll's
/// answers): a missing value or one of another type than UPower's XML gives reads as unknown.
/// The pure part of `read`, public for the fuzz target `upower_signal`.
pub fn reading_of(
    main_all: &HashMap<String, OwnedValue>,
    dev: &HashMap<String, OwnedValue>,
) -> UPowerReading {
    UPowerReading {
        on_battery: get(main_all, "OnBattery").unwrap_or(false),
        is_present: get(dev, "IsPresent").unwrap_or(false),
        percentage: get(dev, "Percentage").unwrap_or(0.0),
        state: get(dev, "State").unwrap_or(0),
        time_to_empty: get(dev, "TimeToEmpty").unwrap_or(0),
        warning_level: get(dev, "WarningLevel").unwrap_or(0),
    }
}

/// Follow UPower until the connection to the bus fails. `on_update` gets a reading at once
/// when UPower is there, then one on every property change, and `SourceGone` whenever it is
/// not there (and a reading again when it is back).
pub async fn follow(
    conn: &zbus::Connection,
    mut on_update: impl FnMut(PowerUpdate),
) -> Result<(), PowerError> {
    let dbus = DBusProxy::new(conn)
        .await
        .map_err(upower_error("watch the bus"))?;
    // Subscribed before the first look, so an owner change in between is not missed.
    let mut owners = dbus
        .receive_name_owner_changed_with_args(&[(0, UPOWER)])
        .await
        .map_err(upower_error("watch the bus"))?;
    loop {
        let name = BusName::from_static_str(UPOWER).map_err(|e| PowerError::UPower {
            op: "name UPower",
            detail: e.to_string(),
        })?;
        let present = dbus
            .name_has_owner(name)
            .await
            .map_err(fdo_error("ask whether UPower runs"))?;
        if !present {
            // UPower is D-Bus activated on most systems: ask the bus to start it (as any
            // client's first call would). It may not be installed; then wait for it.
            let name = zbus::names::WellKnownName::from_static_str(UPOWER).map_err(|e| {
                PowerError::UPower {
                    op: "name UPower",
                    detail: e.to_string(),
                }
            })?;
            let _ = dbus.start_service_by_name(name, 0).await;
        }
        let name = BusName::from_static_str(UPOWER).map_err(|e| PowerError::UPower {
            op: "name UPower",
            detail: e.to_string(),
        })?;
        let present = present
            || dbus
                .name_has_owner(name)
                .await
                .map_err(fdo_error("ask whether UPower runs"))?;
        if !present {
            on_update(PowerUpdate::SourceGone(
                "UPower (org.freedesktop.UPower) is not on the system bus".into(),
            ));
            // Wait for it to appear.
            loop {
                let Some(change) = owners.next().await else {
                    return Err(PowerError::Bus("the bus connection closed".into()));
                };
                let appeared = change
                    .args()
                    .map(|a| a.new_owner().is_some())
                    .unwrap_or(false);
                if appeared {
                    break;
                }
            }
        }
        match follow_present(conn, &mut owners, &mut on_update).await {
            Ok(()) => {} // UPower left: go round and wait for it.
            Err(PowerError::Bus(e)) => return Err(PowerError::Bus(e)),
            Err(e) => {
                // UPower is there but does not answer as its XML says: report and wait for a
                // change of owner rather than spin.
                on_update(PowerUpdate::SourceGone(e.to_string()));
                let _ = owners.next().await;
            }
        }
    }
}

/// Fold one `PropertiesChanged` into `reading`. Returns whether anything vaultd reads changed,
/// or `None` when the sender only *invalidated* a property (the value must be fetched).
fn apply_change(
    reading: &mut UPowerReading,
    signal: &zbus::fdo::PropertiesChanged,
    interface: &str,
) -> Option<bool> {
    let Ok(args) = signal.args() else {
        return Some(false);
    };
    if args.interface_name().as_str() != interface {
        return Some(false);
    }
    apply_values(
        reading,
        args.changed_properties(),
        args.invalidated_properties(),
    )
}

/// The pure part of [`apply_change`]: the signal's changed values and invalidated names. Public
/// for the fuzz target `upower_signal` (integration-tests/fuzz), which decodes a signal's body
/// from bytes and folds it in here.
pub fn apply_values(
    reading: &mut UPowerReading,
    changed: &HashMap<&str, zbus::zvariant::Value<'_>>,
    invalidated: &[&str],
) -> Option<bool> {
    if !invalidated.is_empty() {
        return None;
    }
    let before = reading.clone();
    for (name, value) in changed {
        match *name {
            "OnBattery" => set(&mut reading.on_battery, value),
            "IsPresent" => set(&mut reading.is_present, value),
            "Percentage" => set(&mut reading.percentage, value),
            "State" => set(&mut reading.state, value),
            "TimeToEmpty" => set(&mut reading.time_to_empty, value),
            "WarningLevel" => set(&mut reading.warning_level, value),
            _ => {}
        }
    }
    Some(*reading != before)
}

/// Set `field` from a D-Bus value of the type UPower's XML gives it; a value of another type is
/// ignored (the field keeps what it had) rather than guessed.
fn set<'v, T>(field: &mut T, value: &'v zbus::zvariant::Value<'v>)
where
    T: TryFrom<&'v zbus::zvariant::Value<'v>>,
    <T as TryFrom<&'v zbus::zvariant::Value<'v>>>::Error: Into<zbus::zvariant::Error>,
{
    if let Ok(v) = value.downcast_ref::<T>() {
        *field = v;
    }
}

/// While UPower is on the bus: read once, then follow `PropertiesChanged` of the main object
/// and the DisplayDevice, taking the new values from the signal itself. Returns Ok when UPower
/// leaves.
///
/// Why not re-read on each signal: a method call awaited here leaves the signal streams
/// unpolled, and zbus stops reading the socket once a stream's queue (64) is full — so a burst
/// of signals (UPower sends one per property) during a re-read deadlocks the connection: the
/// reply can never arrive. Folding the signal's values in keeps this loop free of calls; a full
/// re-read happens only when UPower invalidates a property instead of sending it, which upowerd
/// does not do.
async fn follow_present(
    conn: &zbus::Connection,
    owners: &mut zbus::fdo::NameOwnerChangedStream,
    on_update: &mut impl FnMut(PowerUpdate),
) -> Result<(), PowerError> {
    let upower = zbus::Proxy::new(conn, UPOWER, UPOWER_PATH, UPOWER)
        .await
        .map_err(upower_error("address its main object"))?;
    let display: OwnedObjectPath = upower
        .call("GetDisplayDevice", &())
        .await
        .map_err(upower_error("find the DisplayDevice"))?;
    let main = properties(conn, UPOWER_PATH).await?;
    let device = properties(conn, display.as_str()).await?;
    // Subscribed before the first read, so a change in between is not missed.
    let mut main_changes = main
        .receive_properties_changed()
        .await
        .map_err(upower_error("follow OnBattery"))?;
    let mut device_changes = device
        .receive_properties_changed()
        .await
        .map_err(upower_error("follow the DisplayDevice"))?;
    let mut reading = read(&main, &device).await?;
    on_update(PowerUpdate::Reading(reading.clone()));
    let closed = || PowerError::Bus("the bus connection closed".into());
    loop {
        let applied = tokio::select! {
            change = main_changes.next() => {
                apply_change(&mut reading, &change.ok_or_else(closed)?, UPOWER)
            }
            change = device_changes.next() => {
                apply_change(&mut reading, &change.ok_or_else(closed)?, DEVICE_INTERFACE)
            }
            change = owners.next() => {
                let change = change.ok_or_else(closed)?;
                let gone = change.args().map(|a| a.new_owner().is_none()).unwrap_or(true);
                if gone {
                    on_update(PowerUpdate::SourceGone("UPower left the system bus".into()));
                }
                // Gone, or a new owner replaced the old one: start again from its objects.
                return Ok(());
            }
        };
        match applied {
            Some(false) => {}
            Some(true) => on_update(PowerUpdate::Reading(reading.clone())),
            None => {
                reading = read(&main, &device).await?;
                on_update(PowerUpdate::Reading(reading.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zbus::zvariant::Value;

    fn reading() -> UPowerReading {
        UPowerReading {
            on_battery: false,
            is_present: true,
            percentage: 80.0,
            state: state::CHARGING,
            time_to_empty: 0,
            warning_level: 1,
        }
    }

    #[test]
    fn a_signal_s_values_are_folded_in_and_unread_ones_ignored() {
        let mut r = reading();
        let changed = HashMap::from([
            ("Percentage", Value::F64(29.0)),
            ("State", Value::U32(state::DISCHARGING)),
            ("TimeToEmpty", Value::I64(1200)),
            ("IconName", Value::from("battery-low")),
        ]);
        assert_eq!(apply_values(&mut r, &changed, &[]), Some(true));
        assert_eq!(r.percentage, 29.0);
        assert_eq!(r.state, state::DISCHARGING);
        assert_eq!(r.time_to_empty, 1200);
        // The same values again change nothing: no reading is sent.
        assert_eq!(apply_values(&mut r, &changed, &[]), Some(false));
        let only_icon = HashMap::from([("IconName", Value::from("x"))]);
        assert_eq!(apply_values(&mut r, &only_icon, &[]), Some(false));
    }

    #[test]
    fn the_core_s_reading_trusts_percent_and_estimate_only_where_they_mean_something() {
        let mut r = reading();
        r.time_to_empty = 1200;
        // Charging: an estimate to empty means nothing.
        assert_eq!(
            r.to_core(),
            vault_core::PowerReading {
                on_battery: false,
                percent: Some(80.0),
                time_to_empty_secs: None,
            }
        );
        r.on_battery = true;
        r.state = state::DISCHARGING;
        assert_eq!(r.to_core().time_to_empty_secs, Some(1200));
        r.time_to_empty = -5;
        assert_eq!(r.to_core().time_to_empty_secs, None, "a negative estimate");
        r.is_present = false;
        assert_eq!(r.to_core().percent, None, "no battery, no charge");
    }

    #[test]
    fn a_value_of_the_wrong_type_is_not_guessed_and_an_invalidation_asks_for_a_read() {
        let mut r = reading();
        let wrong = HashMap::from([
            ("OnBattery", Value::from("yes")),
            ("Percentage", Value::U32(5)),
        ]);
        assert_eq!(apply_values(&mut r, &wrong, &[]), Some(false));
        assert_eq!(r, reading());
        assert_eq!(apply_values(&mut r, &HashMap::new(), &["Percentage"]), None);
    }
}
