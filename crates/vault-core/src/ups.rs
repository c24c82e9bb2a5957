//! UPSes followed through NUT: each a power source of its own beside the laptop's battery,
//! judged by its own rules. FSD (a NUT primary ordered the shutdown) counts at once; so does LB
//! off line power, as upsmon counts it ("OL LB" is a battery recharging after an outage, not a
//! reason to stop). Otherwise on battery below the thresholds counts after the debounce and the
//! hold, like the laptop's battery. A UPS that stops answering is an alarm, never a drain: the
//! other sources carry on.

use std::collections::BTreeMap;

use crate::Millis;
use crate::power::{PowerPolicy, PowerReading, PowerTrack, Verdict};

/// What a UPS follower saw.
#[derive(Debug, Clone, PartialEq)]
pub enum UpsUpdate {
    Reading {
        name: String,
        reading: UpsReading,
    },
    /// upsd cannot be reached, refuses, or says its data is stale: why.
    Gone {
        name: String,
        why: String,
    },
}

/// One reading of a UPS, from upsd's variables.
#[derive(Debug, Clone, PartialEq)]
pub struct UpsReading {
    /// `ups.status` as upsd said it, e.g. `OB DISCHRG LB`: status shows it.
    pub status: String,
    /// OL
    pub online: bool,
    /// OB
    pub on_battery: bool,
    /// LB
    pub low_battery: bool,
    /// FSD
    pub forced_shutdown: bool,
    pub charge_percent: Option<f64>,
    pub runtime_secs: Option<u64>,
}

impl UpsReading {
    fn as_power_reading(&self) -> PowerReading {
        PowerReading {
            on_battery: self.on_battery && !self.online,
            percent: self.charge_percent.and_then(crate::power::known_charge),
            time_to_empty_secs: self.runtime_secs.filter(|&s| s > 0),
        }
    }

    /// Critical by the UPS's own word, whatever the thresholds say.
    fn says_critical(&self) -> bool {
        self.forced_shutdown || (self.low_battery && !self.online)
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
struct Ups {
    track: PowerTrack,
    last: Option<UpsReading>,
    /// Why it does not answer, while it does not.
    gone: Option<String>,
}

/// What status shows of one UPS.
#[derive(Debug, Clone, PartialEq)]
pub struct UpsView {
    pub name: String,
    pub last: Option<UpsReading>,
    pub gone: Option<String>,
}

/// The gone alarm's new state after an update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpsAlarm {
    /// Some UPS does not answer: every one that does not, in one message.
    Gone(String),
    /// Every UPS answers again.
    Back(String),
}

/// The configured UPSes, by name (`ups@host:port`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Upses {
    by_name: BTreeMap<String, Ups>,
}

impl Upses {
    /// The UPSes the config names; none has answered yet.
    pub fn new<I: IntoIterator<Item = String>>(names: I) -> Self {
        Self {
            by_name: names.into_iter().map(|n| (n, Ups::default())).collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// A reading of `name` (an unknown name is ignored: the config decides which UPSes count).
    pub fn reading(
        &mut self,
        policy: &PowerPolicy,
        name: &str,
        reading: UpsReading,
        now: Millis,
    ) -> Option<UpsAlarm> {
        let ups = self.by_name.get_mut(name)?;
        ups.track.note(policy, reading.as_power_reading(), now);
        ups.last = Some(reading);
        let was_gone = ups.gone.take().is_some();
        if !was_gone {
            return None;
        }
        Some(match self.gone_message() {
            Some(message) => UpsAlarm::Gone(message),
            None => UpsAlarm::Back(format!("{name} answers again; every UPS answers")),
        })
    }

    /// `name` does not answer: its readings stop counting.
    pub fn gone(&mut self, name: &str, why: String) -> Option<UpsAlarm> {
        let ups = self.by_name.get_mut(name)?;
        if ups.gone.as_ref() == Some(&why) {
            return None;
        }
        ups.gone = Some(why);
        ups.track.forget();
        ups.last = None;
        self.gone_message().map(UpsAlarm::Gone)
    }

    fn gone_message(&self) -> Option<String> {
        let gone: Vec<String> = self
            .by_name
            .iter()
            .filter_map(|(name, ups)| ups.gone.as_ref().map(|why| format!("{name}: {why}")))
            .collect();
        (!gone.is_empty()).then(|| {
            format!(
                "a UPS does not answer ({}): its power cannot be seen; the other sources decide",
                gone.join("; ")
            )
        })
    }

    /// Each answering UPS's verdict at `now`.
    pub fn judge(&self, policy: &PowerPolicy, now: Millis) -> Vec<(String, Verdict, UpsReading)> {
        self.by_name
            .iter()
            .filter_map(|(name, ups)| {
                let last = ups.last.as_ref()?;
                let verdict = if last.says_critical() {
                    let runtime = last.runtime_secs.filter(|&s| s > 0).map(Millis::from_secs);
                    Verdict::Critical {
                        deadline: policy.deadline(runtime, now),
                    }
                } else {
                    ups.track.judge(policy, now)
                };
                Some((name.clone(), verdict, last.clone()))
            })
            .collect()
    }

    pub fn views(&self) -> Vec<UpsView> {
        self.by_name
            .iter()
            .map(|(name, ups)| UpsView {
                name: name.clone(),
                last: ups.last.clone(),
                gone: ups.gone.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ups(status: &str, charge: f64) -> UpsReading {
        let has = |f: &str| status.split(' ').any(|w| w == f);
        UpsReading {
            status: status.to_owned(),
            online: has("OL"),
            on_battery: has("OB"),
            low_battery: has("LB"),
            forced_shutdown: has("FSD"),
            charge_percent: Some(charge),
            runtime_secs: Some(1800),
        }
    }

    const T0: Millis = Millis(1_000_000);

    #[test]
    fn lb_off_line_and_fsd_count_at_once_and_ol_lb_does_not() {
        let p = PowerPolicy::default();
        let mut u = Upses::new(["u@h:1".to_owned()]);
        u.reading(&p, "u@h:1", ups("OB DISCHRG LB", 60.0), T0);
        assert!(matches!(u.judge(&p, T0)[0].1, Verdict::Critical { .. }));
        u.reading(&p, "u@h:1", ups("OL CHRG LB", 20.0), T0);
        assert_eq!(
            u.judge(&p, T0)[0].1,
            Verdict::Fine,
            "recharging after an outage"
        );
        u.reading(&p, "u@h:1", ups("FSD OL", 100.0), T0);
        assert!(matches!(u.judge(&p, T0)[0].1, Verdict::Critical { .. }));
    }

    #[test]
    fn ob_above_the_threshold_is_fine_and_below_it_waits_for_the_debounce() {
        let p = PowerPolicy::default();
        let mut u = Upses::new(["u".to_owned()]);
        u.reading(&p, "u", ups("OB DISCHRG", 80.0), T0);
        assert_eq!(
            u.judge(&p, T0.saturating_add(Millis(60_000)))[0].1,
            Verdict::Fine
        );
        u.reading(&p, "u", ups("OB DISCHRG", 25.0), T0);
        assert!(matches!(u.judge(&p, T0)[0].1, Verdict::Debouncing { .. }));
    }

    #[test]
    fn a_gone_ups_stops_counting_with_one_alarm_and_its_return_clears_it() {
        let p = PowerPolicy::default();
        let mut u = Upses::new(["a".to_owned(), "b".to_owned()]);
        u.reading(&p, "a", ups("OB LB", 5.0), T0);
        let alarm = u.gone("a", "connection refused".into());
        assert!(matches!(alarm, Some(UpsAlarm::Gone(m)) if m.contains("a: connection refused")));
        assert!(
            u.judge(&p, T0).is_empty(),
            "a vanished UPS is never a drain"
        );
        assert_eq!(u.gone("a", "connection refused".into()), None, "said once");
        let both = u.gone("b", "ERR DATA-STALE".into());
        assert!(matches!(both, Some(UpsAlarm::Gone(m)) if m.contains("a: ") && m.contains("b: ")));
        assert!(
            matches!(u.reading(&p, "a", ups("OL", 100.0), T0), Some(UpsAlarm::Gone(m)) if !m.contains("a: "))
        );
        assert!(matches!(
            u.reading(&p, "b", ups("OL", 100.0), T0),
            Some(UpsAlarm::Back(_))
        ));
        assert_eq!(u.reading(&p, "zzz", ups("OB LB", 1.0), T0), None);
    }
}
