//! What the supervisor publishes: the snapshot (status, watch, sd_notify STATUS=), the audit of
//! transitions, alarms and unlock results.

use super::*;

impl<H: Host> Supervisor<H> {
    /// Audit the passphrase check's result (never the passphrase itself). The core counted it.
    pub(super) fn audit_unlock_result(&mut self, result: &Result<(), StepError>) {
        let caller = self.unlocking.take();
        let (uid, pid) = caller.map_or((0, 0), |c| (c.uid, c.pid));
        let failures = self.core.unlock_failures();
        let said = match result {
            Ok(()) => "opened",
            Err(StepError::WrongPassphrase(_)) => "wrong-passphrase",
            Err(_) => "failed",
        };
        audit::unlock_result(uid, pid, said, failures);
        let origin = std::mem::take(&mut self.unlocking_origin);
        if let Err(StepError::WrongPassphrase(_)) = result {
            self.tell_wrong_passphrase(uid, &origin, failures);
        }
    }

    /// Tell an alarm the core raised or cleared (it keeps the list): audit and watchers.
    pub(super) fn alarm(&mut self, kind: AlarmKind, message: String) {
        let name = kind.name();
        audit::alarm(name, &message);
        self.tell_alarm(kind, &message);
        let _ = self.broadcast.send(Broadcast::Alarm {
            kind: name,
            message,
            at_unix: unix_now(),
        });
    }

    /// The one list status shows: the core's.
    pub(super) fn active_alarms(&self) -> BTreeMap<&'static str, String> {
        self.core.active_alarms().clone()
    }

    /// The power source as status shows it, from the core's choice.
    pub(super) fn power_seen(&self) -> PowerSeen {
        let (source, reading, gone) = self.core.power_source();
        PowerSeen {
            source: source.name(),
            reading,
            gone: gone.map(str::to_owned),
        }
    }

    pub(super) fn status_line(&self) -> String {
        let status = self.core.status();
        format!("{} ({}): {}", status.state, status.phase, status.reason)
    }

    /// Publish the snapshot; on a change of state or phase, audit it, tell systemd and watchers.
    pub(super) fn publish(&mut self) {
        let status = self.core.status().clone();
        let previous = self.status_tx.borrow().clone();
        let snapshot = Arc::new(Snapshot {
            since_unix: self.unix_at(status.since),
            status,
            observed: self.observed.clone(),
            active_alarms: self.active_alarms(),
            power_critical: self.core.power_critical(),
            threshold_percent: self.threshold_percent,
            power: self.power_seen(),
            battery_care: self.battery_care.clone(),
            drain_deadline_unix: self.core.drain_deadline().map(|d| self.unix_at(d)),
            power_note: self.core.power_note().map(str::to_owned),
            upses: self.core.upses(),
            deciding: self.core.deciding_source().map(str::to_owned),
            inhibitor_wanted: self.core.inhibitor_wanted(),
            backup_waiting: self.core.backup_waiting().map(str::to_owned),
        });
        self.tell_published(&snapshot);
        if *snapshot == *previous {
            return;
        }
        let moved = snapshot.status.state != previous.status.state
            || snapshot.status.phase != previous.status.phase
            || snapshot.status.reason != previous.status.reason;
        if moved {
            audit::transition(
                &previous.status.state.to_string(),
                &snapshot.status.state.to_string(),
                snapshot.status.phase.name(),
                &snapshot.status.reason.to_string(),
            );
            self.notifier
                .send(&format!("STATUS={}", self.status_line()));
        }
        self.status_tx.send_replace(snapshot.clone());
        let _ = self.broadcast.send(Broadcast::Status(snapshot));
    }
}
