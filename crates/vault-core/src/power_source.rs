//! Which power source counts: UPower first, the kernel's power_supply class only while UPower
//! is known to be absent. A source that goes away is an alarm, never a drain: the last reading
//! stands until another source speaks.

use crate::power::PowerReading;

/// What a power source task saw.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceUpdate {
    /// A reading from UPower's DisplayDevice (UPower answers).
    UPower(PowerReading),
    /// UPower is not on the bus, or the bus is gone: why.
    UPowerGone(String),
    /// A reading of the kernel's power_supply class (sent whatever UPower does).
    Kernel(PowerReading),
    /// The kernel's class cannot be read, or shows no battery or line power: why.
    KernelGone(String),
}

/// The source status shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceName {
    UPower,
    Kernel,
    None,
}

impl SourceName {
    pub fn name(self) -> &'static str {
        match self {
            SourceName::UPower => "upower",
            SourceName::Kernel => "kernel",
            SourceName::None => "none",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Presence {
    /// Not known yet (the bus is still being asked): no kernel reading is used meanwhile, so
    /// there is no false "gone" at start.
    Unknown,
    Live,
    Absent,
}

/// What an update changed: the reading that now counts, and the alarm to raise or clear.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SourceChange {
    pub reading: Option<PowerReading>,
    pub alarm: Option<SourceAlarm>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceAlarm {
    Gone(String),
    Back(String),
}

/// The sources and which one counts.
#[derive(Debug, Clone, PartialEq)]
pub struct PowerSources {
    upower: Presence,
    upower_why: Option<String>,
    kernel: Option<Result<PowerReading, String>>,
    /// UPower was live once and left: the kernel standing in is worth an alarm (its readings
    /// are coarser, and upowerd should not die).
    upower_left: bool,
    current: SourceName,
    gone: Option<String>,
    last: Option<PowerReading>,
}

impl Default for PowerSources {
    fn default() -> Self {
        Self {
            upower: Presence::Unknown,
            upower_why: None,
            kernel: None,
            upower_left: false,
            current: SourceName::None,
            gone: None,
            last: None,
        }
    }
}

impl PowerSources {
    /// The source that counts now, its last reading (kept while no source answers) and, while
    /// none does, why.
    pub fn current(&self) -> (SourceName, Option<PowerReading>, Option<&str>) {
        // The alarm's words name the source that left; while another stands in, status names
        // that one, and the alarm says the rest.
        let none_answers = self.current == SourceName::None;
        (
            self.current,
            self.last,
            self.gone.as_deref().filter(|_| none_answers),
        )
    }

    pub fn update(&mut self, update: SourceUpdate) -> SourceChange {
        match update {
            SourceUpdate::UPower(reading) => {
                self.upower = Presence::Live;
                self.upower_why = None;
                self.upower_left = false;
                self.settle(Some((SourceName::UPower, reading)), None)
            }
            SourceUpdate::UPowerGone(why) => {
                if self.upower == Presence::Live {
                    self.upower_left = true;
                }
                self.upower = Presence::Absent;
                self.upower_why = Some(why);
                self.kernel_stands_in()
            }
            SourceUpdate::Kernel(reading) => {
                self.kernel = Some(Ok(reading));
                match self.upower {
                    Presence::Absent => self.kernel_stands_in(),
                    Presence::Live | Presence::Unknown => SourceChange::default(),
                }
            }
            SourceUpdate::KernelGone(why) => {
                self.kernel = Some(Err(why));
                match self.upower {
                    Presence::Absent => self.kernel_stands_in(),
                    Presence::Live | Presence::Unknown => SourceChange::default(),
                }
            }
        }
    }

    /// UPower is absent: the kernel's class stands in, if it can.
    fn kernel_stands_in(&mut self) -> SourceChange {
        let upower_why = self
            .upower_why
            .clone()
            .unwrap_or_else(|| "UPower is absent".to_owned());
        match self.kernel.clone() {
            Some(Ok(reading)) => {
                let alarm = self.upower_left.then(|| {
                    "UPower left the system bus: the kernel's power_supply class takes over"
                        .to_owned()
                });
                self.settle(Some((SourceName::Kernel, reading)), alarm)
            }
            Some(Err(kernel_why)) => self.settle(None, Some(format!(
                "{upower_why}, and {kernel_why}: a power loss cannot be seen; the last reading stands"
            ))),
            // The kernel's follower has not spoken yet: wait for it.
            None => SourceChange::default(),
        }
    }

    /// Make `now` the counting source (or none), with `alarm` the state of the gone alarm.
    fn settle(
        &mut self,
        now: Option<(SourceName, PowerReading)>,
        alarm: Option<String>,
    ) -> SourceChange {
        let mut change = SourceChange::default();
        match now {
            Some((name, reading)) => {
                self.current = name;
                self.last = Some(reading);
                change.reading = Some(reading);
            }
            None => self.current = SourceName::None,
        }
        let was = self.gone.clone();
        match (alarm, was) {
            (Some(message), was) if was.as_ref() != Some(&message) => {
                self.gone = Some(message.clone());
                change.alarm = Some(SourceAlarm::Gone(message));
            }
            (Some(_), _) => {}
            (None, Some(_)) => {
                self.gone = None;
                change.alarm = Some(SourceAlarm::Back(format!(
                    "the power source answers again ({})",
                    self.current.name()
                )));
            }
            (None, None) => {}
        }
        change
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(percent: f64) -> PowerReading {
        PowerReading {
            on_battery: false,
            percent: Some(percent),
            time_to_empty_secs: None,
        }
    }

    #[test]
    fn upower_counts_and_the_kernel_waits_until_upower_is_known_absent() {
        let mut s = PowerSources::default();
        assert_eq!(
            s.update(SourceUpdate::Kernel(reading(50.0))),
            SourceChange::default(),
            "no kernel reading while UPower's presence is unknown"
        );
        let change = s.update(SourceUpdate::UPower(reading(55.0)));
        assert_eq!(change.reading, Some(reading(55.0)));
        assert_eq!(s.current().0, SourceName::UPower);
        assert_eq!(
            s.update(SourceUpdate::Kernel(reading(40.0))).reading,
            None,
            "a kernel reading never overrides a live UPower"
        );
    }

    #[test]
    fn a_host_without_upower_uses_the_kernel_with_no_alarm() {
        let mut s = PowerSources::default();
        s.update(SourceUpdate::Kernel(reading(50.0)));
        let change = s.update(SourceUpdate::UPowerGone("no UPower on the bus".into()));
        assert_eq!(change.reading, Some(reading(50.0)));
        assert_eq!(change.alarm, None);
        assert_eq!(s.current().0, SourceName::Kernel);
    }

    #[test]
    fn upower_leaving_is_an_alarm_while_the_kernel_stands_in_and_its_return_clears_it() {
        let mut s = PowerSources::default();
        s.update(SourceUpdate::UPower(reading(55.0)));
        s.update(SourceUpdate::Kernel(reading(54.0)));
        let change = s.update(SourceUpdate::UPowerGone("UPower left".into()));
        assert_eq!(change.reading, Some(reading(54.0)));
        assert!(matches!(change.alarm, Some(SourceAlarm::Gone(m)) if m.contains("takes over")));
        assert_eq!(
            s.current(),
            (SourceName::Kernel, Some(reading(54.0)), None),
            "status names the kernel, with no 'gone': the alarm says UPower left"
        );
        // Kernel readings now count, without a new alarm.
        let change = s.update(SourceUpdate::Kernel(reading(53.0)));
        assert_eq!(change.reading, Some(reading(53.0)));
        assert_eq!(change.alarm, None);
        let change = s.update(SourceUpdate::UPower(reading(53.0)));
        assert!(matches!(change.alarm, Some(SourceAlarm::Back(_))));
        assert_eq!(s.current().0, SourceName::UPower);
    }

    #[test]
    fn no_source_at_all_keeps_the_last_reading_and_says_why() {
        let mut s = PowerSources::default();
        s.update(SourceUpdate::UPower(reading(55.0)));
        s.update(SourceUpdate::KernelGone(
            "no battery in the kernel's class".into(),
        ));
        let change = s.update(SourceUpdate::UPowerGone("the bus is gone".into()));
        assert_eq!(change.reading, None, "a vanished source is never a reading");
        assert!(matches!(change.alarm, Some(SourceAlarm::Gone(m)) if m.contains("cannot be seen")));
        let (name, last, why) = s.current();
        assert_eq!(name, SourceName::None);
        assert_eq!(last, Some(reading(55.0)));
        assert!(why.is_some());
    }
}
