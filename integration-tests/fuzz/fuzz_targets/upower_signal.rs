//! UPower's property values as they arrive on the system bus, decoded by zvariant as zbus does
//! (D-Bus wire format, either byte order): a `PropertiesChanged` signal's body `(sa{sv}as)`
//! folded into a reading (vault_power::apply_values), or GetAll's `a{sv}` answers for the main
//! object and the DisplayDevice (vault_power::reading_of). Any value of any type may come
//! from any process that owns the name; the reading must then be one the power policy can
//! judge, and is judged (vault_fuzz::judge_reading) after the daemon's conversion
//! (`UPowerReading::to_core`).
//!
//! Input: one byte (bit 0: big-endian; bit 1: GetAll rather than a signal), then the body.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use vault_power::{UPowerReading, apply_values, reading_of, state};
use zbus::zvariant::serialized::{Context, Data};
use zbus::zvariant::{Endian, OwnedValue, Value};

fn initial() -> UPowerReading {
    UPowerReading {
        on_battery: false,
        is_present: true,
        percentage: 80.0,
        state: state::CHARGING,
        time_to_empty: 0,
        warning_level: 1,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, body)) = data.split_first() else {
        return;
    };
    let endian = if flags & 1 != 0 { Endian::Big } else { Endian::Little };
    let bytes = Data::new(body, Context::new_dbus(endian, 0));
    let reading = if flags & 2 != 0 {
        type Dict = HashMap<String, OwnedValue>;
        let Ok(((main, dev), _)) = bytes.deserialize::<(Dict, Dict)>() else {
            return;
        };
        reading_of(&main, &dev)
    } else {
        type Signal<'a> = (&'a str, HashMap<&'a str, Value<'a>>, Vec<&'a str>);
        let Ok(((_interface, changed, invalidated), _)) = bytes.deserialize::<Signal<'_>>()
        else {
            return;
        };
        let mut reading = initial();
        let before = reading.clone();
        match apply_values(&mut reading, &changed, &invalidated) {
            // An invalidation asks for a read: nothing may have been folded in.
            None => assert_eq!(reading, before),
            Some(changed) => assert_eq!(changed, reading != before),
        }
        reading
    };
    vault_fuzz::judge_reading(&reading.to_core());
});
