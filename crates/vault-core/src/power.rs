//! The power policy: when to drain, and how long the battery lets the drain take.

use crate::Millis;

/// One reading of the power source (UPower's DisplayDevice, or the kernel's power_supply).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PowerReading {
    pub on_battery: bool,
    /// Charge in percent, if the source reports one.
    pub percent: Option<f64>,
    /// The source's estimate of seconds to empty. UPower uses 0 for "unknown": pass `None`.
    pub time_to_empty_secs: Option<u64>,
}

/// A charge a gauge can mean: finite and within 0..=100 %. Anything else (NaN, infinite,
/// negative, above 100) is no reading at all: unknown, as from a source that reports no charge.
/// Never guessed into a number (a NaN is never low; a -5 would always be).
pub fn known_charge(percent: f64) -> Option<f64> {
    (percent.is_finite() && (0.0..=100.0).contains(&percent)).then_some(percent)
}

impl PowerReading {
    /// The charge it reports that no gauge can mean, if it reports one.
    pub fn nonsense_charge(&self) -> Option<f64> {
        self.percent.filter(|&p| known_charge(p).is_none())
    }

    /// The same reading with a charge no gauge can mean taken as unknown.
    #[must_use]
    pub fn with_known_charge(self) -> Self {
        Self {
            percent: self.percent.and_then(known_charge),
            ..self
        }
    }
}

/// The configured thresholds (see `[power]` in docs/config.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PowerPolicy {
    /// Drain when on battery and the charge is at or below this.
    pub threshold_percent: u8,
    /// Drain when on battery and the (trusted) time to empty is at or below this.
    pub min_time_to_empty: Millis,
    /// On battery must last this long before a reading counts: power flickers are ignored.
    pub on_battery_debounce: Millis,
    /// A low reading must hold this long (every reading in between low too) before it counts:
    /// gauges report a stray 1 % now and then, and a drain cannot be taken back.
    pub low_hold: Millis,
    /// The longest a drain may take, whatever the battery says.
    pub max_drain: Millis,
    /// Kept in reserve below the time to empty.
    pub safety_margin: Millis,
}

/// UPower's time-to-empty is an extrapolation that jumps around for the first tens of seconds
/// after the plug is pulled; until then only the charge percentage triggers a drain.
pub const TIME_TO_EMPTY_SETTLE: Millis = Millis(30_000);

impl Default for PowerPolicy {
    fn default() -> Self {
        Self {
            threshold_percent: 30,
            min_time_to_empty: Millis::from_secs(600),
            on_battery_debounce: Millis::from_secs(5),
            low_hold: Millis::from_secs(5),
            max_drain: Millis::from_secs(300),
            safety_margin: Millis::from_secs(60),
        }
    }
}

/// Why a low reading is not acted on yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// On battery for less than `on_battery_debounce`.
    OnBatteryDebounce,
    /// Low for less than `low_hold`.
    LowHold,
}

/// What the policy says about a reading at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// On AC, or on battery with charge to spare.
    Fine,
    /// The reading would be critical, but on battery has not lasted the debounce yet, or the
    /// low reading has not held long enough: look again at this time.
    Debouncing { until: Millis, wait: Wait },
    /// Drain now, finishing by `deadline`.
    Critical { deadline: Millis },
}

impl PowerPolicy {
    /// Whether a reading is low: on battery, and the charge at or below the threshold or the
    /// (trusted) time to empty at or below the minimum.
    pub fn is_low(&self, reading: &PowerReading, on_battery_for: Millis) -> bool {
        if !reading.on_battery {
            return false;
        }
        let tte = self.trusted_time_to_empty(reading, on_battery_for);
        let low_charge = reading
            .percent
            .and_then(known_charge)
            .is_some_and(|p| p <= f64::from(self.threshold_percent));
        low_charge || tte.is_some_and(|t| t <= self.min_time_to_empty)
    }

    /// `on_battery_since` is when the source first reported on battery (without an AC reading
    /// in between); `low_since` when the readings first became low (without a reading that was
    /// not low in between). The caller keeps both.
    pub fn judge(
        &self,
        reading: &PowerReading,
        on_battery_since: Millis,
        low_since: Millis,
        now: Millis,
    ) -> Verdict {
        let on_battery_for = now.saturating_sub(on_battery_since);
        if !self.is_low(reading, on_battery_for) {
            return Verdict::Fine;
        }
        if on_battery_for < self.on_battery_debounce {
            let until = on_battery_since.saturating_add(self.on_battery_debounce);
            return Verdict::Debouncing {
                until: until.max(low_since.saturating_add(self.low_hold)),
                wait: Wait::OnBatteryDebounce,
            };
        }
        if now.saturating_sub(low_since) < self.low_hold {
            return Verdict::Debouncing {
                until: low_since.saturating_add(self.low_hold),
                wait: Wait::LowHold,
            };
        }
        let tte = self.trusted_time_to_empty(reading, on_battery_for);
        Verdict::Critical {
            deadline: self.deadline(tte, now),
        }
    }

    /// deadline = now + min(max drain, time to empty − margin). Without a trusted estimate the
    /// configured maximum applies.
    pub fn deadline(&self, time_to_empty: Option<Millis>, now: Millis) -> Millis {
        let budget = match time_to_empty {
            Some(tte) => self.max_drain.min(tte.saturating_sub(self.safety_margin)),
            None => self.max_drain,
        };
        now.saturating_add(budget)
    }

    fn trusted_time_to_empty(
        &self,
        reading: &PowerReading,
        on_battery_for: Millis,
    ) -> Option<Millis> {
        if on_battery_for < TIME_TO_EMPTY_SETTLE {
            return None;
        }
        reading
            .time_to_empty_secs
            .filter(|&secs| secs > 0)
            .map(Millis::from_secs)
    }
}

/// One source's readings over time: its last reading, since when it has been on battery and
/// since when low, without a break (the debounce and the low hold count from these).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PowerTrack {
    last: Option<PowerReading>,
    on_battery_since: Option<Millis>,
    low_since: Option<Millis>,
}

impl PowerTrack {
    /// A new reading at `now`.
    pub fn note(&mut self, policy: &PowerPolicy, reading: PowerReading, now: Millis) {
        match (reading.on_battery, self.on_battery_since) {
            (true, None) => self.on_battery_since = Some(now),
            (false, _) => self.on_battery_since = None,
            _ => {}
        }
        let on_battery_for = self
            .on_battery_since
            .map_or(Millis(0), |since| now.saturating_sub(since));
        if policy.is_low(&reading, on_battery_for) {
            self.low_since.get_or_insert(now);
        } else {
            self.low_since = None;
        }
        self.last = Some(reading);
    }

    /// The source no longer answers: its last reading no longer counts.
    pub fn forget(&mut self) {
        *self = Self::default();
    }

    pub fn last(&self) -> Option<PowerReading> {
        self.last
    }

    /// The policy on the last reading at `now` (fine without a reading or off battery).
    pub fn judge(&self, policy: &PowerPolicy, now: Millis) -> Verdict {
        match (self.last, self.on_battery_since) {
            (Some(reading), Some(since)) => {
                policy.judge(&reading, since, self.low_since.unwrap_or(now), now)
            }
            _ => Verdict::Fine,
        }
    }
}

impl Verdict {
    /// Of two sources' verdicts, the one that acts first: a critical one (the tighter deadline)
    /// over a wait (the earlier one) over fine. `true` when `other` wins.
    pub fn is_overtaken_by(&self, other: &Verdict) -> bool {
        match (self, other) {
            (Verdict::Critical { deadline: a }, Verdict::Critical { deadline: b }) => b < a,
            (Verdict::Critical { .. }, _) => false,
            (_, Verdict::Critical { .. }) => true,
            (Verdict::Debouncing { until: a, .. }, Verdict::Debouncing { until: b, .. }) => b < a,
            (Verdict::Debouncing { .. }, Verdict::Fine) => false,
            (Verdict::Fine, Verdict::Debouncing { .. }) => true,
            (Verdict::Fine, Verdict::Fine) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Millis = Millis(1_000_000);

    fn battery(percent: f64, tte: Option<u64>) -> PowerReading {
        PowerReading {
            on_battery: true,
            percent: Some(percent),
            time_to_empty_secs: tte,
        }
    }

    #[test]
    fn a_charge_no_gauge_can_mean_is_unknown() {
        for nonsense in [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -5.0,
            -0.1,
            100.5,
        ] {
            assert_eq!(known_charge(nonsense), None, "{nonsense}");
            let r = battery(nonsense, None).with_known_charge();
            assert_eq!(r.percent, None, "{nonsense}");
        }
        for sane in [0.0, 29.5, 100.0] {
            assert_eq!(known_charge(sane), Some(sane));
            assert_eq!(battery(sane, None).nonsense_charge(), None);
        }
        assert!(battery(f64::NAN, None).nonsense_charge().is_some());
        // On battery long enough, a negative charge is not low: it is no charge at all.
        let p = PowerPolicy::default();
        let later = T0.saturating_add(Millis(60_000));
        assert_eq!(p.judge(&battery(-5.0, None), T0, T0, later), Verdict::Fine);
        assert!(!p.is_low(&battery(f64::NEG_INFINITY, None), Millis(60_000)));
    }

    #[test]
    fn a_low_reading_counts_only_once_it_has_held() {
        let p = PowerPolicy::default();
        // On battery for a minute, a first low reading at 1 %: not yet.
        let first_low = T0.saturating_add(Millis(60_000));
        assert_eq!(
            p.judge(&battery(1.0, None), T0, first_low, first_low),
            Verdict::Debouncing {
                until: first_low.saturating_add(p.low_hold),
                wait: Wait::LowHold,
            }
        );
        let held = first_low.saturating_add(p.low_hold);
        assert!(matches!(
            p.judge(&battery(1.0, None), T0, first_low, held),
            Verdict::Critical { .. }
        ));
    }

    #[test]
    fn ac_is_never_critical_whatever_the_gauge_says() {
        let p = PowerPolicy::default();
        let r = PowerReading {
            on_battery: false,
            percent: Some(1.0),
            time_to_empty_secs: Some(1),
        };
        assert_eq!(
            p.judge(&r, T0, T0, T0.saturating_add(Millis(999_999))),
            Verdict::Fine
        );
    }

    #[test]
    fn threshold_is_inclusive_and_waits_for_the_debounce() {
        let p = PowerPolicy::default();
        assert_eq!(
            p.judge(
                &battery(30.1, None),
                T0,
                T0,
                T0.saturating_add(Millis(60_000))
            ),
            Verdict::Fine
        );
        assert_eq!(
            p.judge(
                &battery(30.0, None),
                T0,
                T0,
                T0.saturating_add(Millis(1_000))
            ),
            Verdict::Debouncing {
                until: T0.saturating_add(Millis(5_000)),
                wait: Wait::OnBatteryDebounce,
            }
        );
        let now = T0.saturating_add(Millis(5_000));
        assert_eq!(
            p.judge(&battery(29.0, None), T0, T0, now),
            Verdict::Critical {
                deadline: now.saturating_add(p.max_drain)
            }
        );
    }

    #[test]
    fn deadline_is_what_the_battery_can_carry_minus_the_margin() {
        let p = PowerPolicy::default();
        let now = T0.saturating_add(Millis(60_000));
        // 120 s to empty, 60 s margin: 60 s, below the 300 s maximum.
        assert_eq!(
            p.judge(&battery(25.0, Some(120)), T0, T0, now),
            Verdict::Critical {
                deadline: now.saturating_add(Millis(60_000))
            }
        );
        // A battery that cannot carry the margin: drain at once (deadline now).
        assert_eq!(p.deadline(Some(Millis(30_000)), now), now);
    }

    #[test]
    fn time_to_empty_is_ignored_until_it_settles_and_zero_means_unknown() {
        let p = PowerPolicy::default();
        // Charge is fine; a short estimate right after unplugging is not trusted.
        let just_unplugged = T0.saturating_add(Millis(10_000));
        assert_eq!(
            p.judge(&battery(55.0, Some(60)), T0, T0, just_unplugged),
            Verdict::Fine
        );
        let later = T0.saturating_add(Millis(40_000));
        assert!(matches!(
            p.judge(&battery(55.0, Some(60)), T0, T0, later),
            Verdict::Critical { .. }
        ));
        assert_eq!(
            p.judge(&battery(55.0, Some(0)), T0, T0, later),
            Verdict::Fine
        );
    }
}
