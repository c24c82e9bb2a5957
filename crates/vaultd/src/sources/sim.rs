//! The sources of `vaultd --sim`: the simulated world's changes (what Docker's events and the
//! mount table's changes are for the real host), and a simulated battery read from a file, so
//! that a power loss can be tried without root or a laptop:
//!
//! ```text
//! echo "battery 25" > <state_dir>/sim-battery   # on battery at 25 %
//! echo "ac 60"      > <state_dir>/sim-battery   # back on AC
//! ```
//!
//! The simulated battery stands in for UPower.

use std::path::{Path, PathBuf};
use std::time::Duration;

use vault_core::Event;
use vault_core::power_source::SourceUpdate;

use crate::sim::FakeHost;
use crate::supervisor::Msg;

use super::Tasks;

/// The file the simulated battery is read from, in the state directory.
pub const BATTERY_FILE: &str = "sim-battery";

/// How often the battery file is read (a simulation: polling is fine here).
const BATTERY_EVERY: Duration = Duration::from_millis(500);

pub fn spawn(tasks: &Tasks, tx: tokio::sync::mpsc::Sender<Msg>, host: &FakeHost, state_dir: &Path) {
    let mut changes = host.changes();
    let observe = tx.clone();
    tasks.spawn(async move {
        // A burst of changes coalesces into one look: the watch keeps only the newest.
        while changes.changed().await.is_ok() {
            if observe.send(Msg::Observe).await.is_err() {
                return;
            }
        }
    });
    let file = state_dir.join(BATTERY_FILE);
    tasks.spawn(follow_battery(tx, file));
}

async fn follow_battery(tx: tokio::sync::mpsc::Sender<Msg>, file: PathBuf) {
    let mut last = None;
    loop {
        let text = tokio::fs::read_to_string(&file)
            .await
            .unwrap_or_else(|_| "ac 100".to_owned());
        let update = match parse_battery(&text) {
            Ok(reading) => SourceUpdate::UPower(reading),
            Err(why) => SourceUpdate::UPowerGone(format!("{}: {why}", file.display())),
        };
        if last.as_ref() != Some(&update) {
            last = Some(update.clone());
            if tx
                .send(Msg::Event(Event::PowerSource(update)))
                .await
                .is_err()
            {
                return;
            }
        }
        tokio::time::sleep(BATTERY_EVERY).await;
    }
}

/// `battery <percent>` or `ac <percent>`.
fn parse_battery(text: &str) -> Result<vault_core::PowerReading, String> {
    let mut words = text.split_whitespace();
    let on_battery = match words.next() {
        Some("battery") => true,
        Some("ac") => false,
        _ => return Err("expected `battery <percent>` or `ac <percent>`".into()),
    };
    let percent: f64 = words
        .next()
        .and_then(|p| p.parse().ok())
        .filter(|p: &f64| (0.0..=100.0).contains(p))
        .ok_or("expected a percentage from 0 to 100")?;
    Ok(vault_core::PowerReading {
        on_battery,
        percent: Some(percent),
        time_to_empty_secs: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_battery_file_says_where_the_power_comes_from_and_how_much_is_left() {
        let r = parse_battery("battery 25\n").expect("valid");
        assert!(r.on_battery);
        assert_eq!(r.percent, Some(25.0));
        assert!(!parse_battery("ac 60").expect("valid").on_battery);
        assert!(parse_battery("battery 130").is_err());
        assert!(parse_battery("unplugged").is_err());
    }
}
