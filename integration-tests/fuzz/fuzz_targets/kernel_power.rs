//! The kernel's power_supply class (the fallback without UPower): each supply's attributes as
//! sysfs prints them, in the `uevent` file's form (`POWER_SUPPLY_CAPACITY=42`, or the bare
//! attribute name `capacity=42`), supplies separated by an empty line. Read into a reading by
//! vault_power::kernel::reading, converted as the daemon converts it (`KernelReading::to_core`),
//! and judged.
//!
//! Real uevent files are seeds as they are (integration-tests/fuzz/corpus/kernel_power).
#![no_main]

use std::collections::BTreeMap;
use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;
use vault_power::kernel;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut supplies: Vec<(PathBuf, BTreeMap<String, String>)> = Vec::new();
    for (i, block) in text.split("\n\n").enumerate() {
        let mut attrs = BTreeMap::new();
        let mut name = format!("supply{i}");
        for line in block.lines() {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let key = key.strip_prefix("POWER_SUPPLY_").unwrap_or(key).to_lowercase();
            if key == "name" {
                name = value.to_owned();
            }
            attrs.insert(key, value.to_owned());
        }
        supplies.push((PathBuf::from("/sys/class/power_supply").join(name), attrs));
    }
    let reading = kernel::reading(supplies.iter().map(|(p, a)| (p.as_path(), a)));
    if let Some(battery) = &reading.battery {
        if let Some(secs) = battery.time_to_empty_secs {
            assert!(secs > 0, "an estimate of zero seconds is no estimate");
        }
    }
    if let Some(core) = reading.to_core() {
        vault_fuzz::judge_reading(&core);
    }
});
