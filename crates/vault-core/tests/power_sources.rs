//! Several power sources: the laptop's battery and UPSes followed through NUT. Any source
//! critical by its own rules drains; a source that goes away is an alarm, never a drain.

mod common;

use common::*;
use vault_core::machine::Step;
use vault_core::power_source::SourceUpdate;
use vault_core::ups::{UpsReading, UpsUpdate};
use vault_core::{Core, Event, Millis, PowerPolicy, PowerReading, Reason, State};

const UPS: &str = "myups@127.0.0.1:3493";

fn ups(status: &str, charge: f64, runtime: u64) -> Event {
    let has = |flag: &str| status.split(' ').any(|w| w == flag);
    Event::Ups(UpsUpdate::Reading {
        name: UPS.to_owned(),
        reading: UpsReading {
            status: status.to_owned(),
            online: has("OL"),
            on_battery: has("OB"),
            low_battery: has("LB"),
            forced_shutdown: has("FSD"),
            charge_percent: Some(charge),
            runtime_secs: Some(runtime),
        },
    })
}

fn laptop(on_battery: bool, percent: f64) -> Event {
    Event::PowerSource(SourceUpdate::UPower(PowerReading {
        on_battery,
        percent: Some(percent),
        time_to_empty_secs: None,
    }))
}

/// RUNNING, the laptop on AC (the UPS feeds it), one UPS configured.
fn running_behind_a_ups() -> Core {
    let mut core = Core::new(PowerPolicy::default(), true, Millis(0)).with_upses([UPS.to_owned()]);
    core.handle(Millis(0), Event::Observed(running()));
    core.handle(Millis(0), laptop(false, 60.0));
    core.handle(Millis(0), ups("OL", 100.0, 3000));
    assert_eq!(core.status().state, State::Running);
    core
}

fn drains(actions: &[vault_core::Action]) -> bool {
    steps(actions).contains(&Step::PauseQueues) || steps(actions).contains(&Step::StopStack)
}

#[test]
fn a_ups_on_battery_with_charge_to_spare_does_not_drain() {
    let mut core = running_behind_a_ups();
    let a = core.handle(Millis(1_000), ups("OB DISCHRG", 80.0, 2400));
    assert!(!drains(&a));
    let a = core.handle(Millis(120_000), ups("OB DISCHRG", 75.0, 2200));
    assert!(!drains(&a), "80 % → 75 % on battery is not critical");
    assert!(!core.power_critical());
    assert_eq!(core.deciding_source(), None);
}

#[test]
fn low_battery_drains_at_once_naming_the_ups_with_its_runtime_as_the_budget() {
    let mut core = running_behind_a_ups();
    core.handle(Millis(1_000), ups("OB DISCHRG", 80.0, 2400));
    let a = core.handle(Millis(2_000), ups("OB DISCHRG LB", 40.0, 150));
    assert!(drains(&a), "LB counts at once: {a:?}");
    assert!(matches!(core.status().state, State::Draining { .. }));
    let Reason::PowerCritical {
        source, percent, ..
    } = &core.status().reason
    else {
        panic!("{:?}", core.status().reason);
    };
    assert!(source.contains(UPS) && source.contains("LB"), "{source}");
    assert_eq!(*percent, Some(40));
    // 150 s of runtime, 60 s of margin: 90 s, under the 300 s maximum.
    assert_eq!(core.drain_deadline(), Some(Millis(2_000 + 90_000)));
    assert!(core.deciding_source().is_some_and(|s| s.contains(UPS)));
}

#[test]
fn forced_shutdown_from_a_nut_primary_drains_even_on_line_power() {
    let mut core = running_behind_a_ups();
    let a = core.handle(Millis(1_000), ups("FSD OL", 100.0, 3000));
    assert!(drains(&a));
}

#[test]
fn a_ups_going_away_is_an_alarm_and_the_laptop_battery_still_decides() {
    let mut core = running_behind_a_ups();
    core.handle(Millis(1_000), ups("OB DISCHRG", 50.0, 1200));
    let a = core.handle(
        Millis(2_000),
        Event::Ups(UpsUpdate::Gone {
            name: UPS.to_owned(),
            why: "cannot reach upsd at 127.0.0.1:3493: connection refused".into(),
        }),
    );
    assert!(!drains(&a), "a vanished UPS is never a drain");
    assert!(core.active_alarms().contains_key("ups-gone"));
    assert_eq!(core.status().state, State::Running);
    // The UPS runs out; the laptop falls to its own battery and that one goes low.
    core.handle(Millis(3_000), laptop(true, 50.0));
    let a = core.handle(Millis(10_000), laptop(true, 25.0));
    assert!(!drains(&a), "the debounce and the hold first");
    let a = core.handle(Millis(16_000), Event::Timer);
    assert!(drains(&a), "{a:?}");
    let Reason::PowerCritical { source, .. } = &core.status().reason else {
        panic!("{:?}", core.status().reason);
    };
    assert_eq!(source, "upower");
    // upsd answers again: the alarm clears.
    core.handle(Millis(20_000), ups("OL CHRG", 30.0, 600));
    assert!(!core.active_alarms().contains_key("ups-gone"));
}

#[test]
fn the_laptop_battery_and_a_ups_each_decide_by_their_own_rules() {
    let mut core = running_behind_a_ups();
    // The UPS is fine on line power; the laptop's own battery is low (the UPS's outlet is
    // not the one the laptop is on): the laptop decides.
    core.handle(Millis(1_000), laptop(true, 20.0));
    let a = core.handle(Millis(7_000), Event::Timer);
    assert!(drains(&a), "{a:?}");
}

#[test]
fn a_ups_that_never_answered_does_not_block_the_laptop_and_is_listed() {
    let core = running_behind_a_ups();
    let views = core.upses();
    assert_eq!(views.len(), 1);
    assert_eq!(views[0].name, UPS);
    assert!(views[0].last.as_ref().is_some_and(|r| r.status == "OL"));
}

fn laptop_with_estimate(percent: f64, time_to_empty_secs: Option<u64>) -> Event {
    Event::PowerSource(SourceUpdate::UPower(PowerReading {
        on_battery: true,
        percent: Some(percent),
        time_to_empty_secs,
    }))
}

#[test]
fn a_charge_no_gauge_can_mean_is_an_unknown_charge_and_an_alarm() {
    for nonsense in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -5.0, 250.0] {
        let mut core = Core::new(PowerPolicy::default(), true, Millis(0));
        core.handle(Millis(0), Event::Observed(running()));
        core.handle(Millis(0), laptop(true, 55.0));
        // Long on battery, every reading nonsense: neither a drain (a negative charge is not
        // "low") nor a number in status.
        let a = core.handle(Millis(60_000), laptop(true, nonsense));
        let b = core.handle(Millis(70_000), laptop(true, nonsense));
        assert!(!drains(&a) && !drains(&b), "{nonsense}: no drain");
        assert_eq!(
            core.power_source().1.map(|r| r.percent),
            Some(None),
            "{nonsense}: status shows an unknown charge"
        );
        assert!(
            core.active_alarms()
                .get("power-reading-suspect")
                .is_some_and(|m| m.contains("no gauge can mean")),
            "{nonsense}: {:?}",
            core.active_alarms()
        );
        // The time to empty still counts: the charge is unknown, the battery is not.
        core.handle(Millis(80_000), laptop_with_estimate(nonsense, Some(120)));
        let a = core.handle(Millis(85_000), laptop_with_estimate(nonsense, Some(120)));
        assert!(drains(&a), "{nonsense}: a short time to empty drains");
        // A sane reading clears the alarm.
        core.handle(Millis(90_000), laptop(true, 20.0));
        assert!(!core.active_alarms().contains_key("power-reading-suspect"));
    }
}
