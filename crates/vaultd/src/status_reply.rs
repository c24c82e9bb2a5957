//! Status as the API answers it: the supervisor's snapshot turned into `StatusReply`.

use vault_api::v1 as pb;
use vault_core::observation::ContainersSeen;
use vault_core::{DrainTarget, State};

use crate::service::Describe;
use crate::supervisor::Snapshot;

pub(crate) fn state_pb(state: State) -> pb::VaultState {
    match state {
        State::Locked => pb::VaultState::Locked,
        State::Mounted => pb::VaultState::Mounted,
        State::Running => pb::VaultState::Running,
        State::Draining { .. } => pb::VaultState::Draining,
    }
}

pub fn status_reply(snapshot: &Snapshot, describe: &Describe) -> pb::StatusReply {
    let status = &snapshot.status;
    let drain_target = match status.state {
        State::Draining {
            target: DrainTarget::Locked,
        } => pb::VaultState::Locked,
        State::Draining {
            target: DrainTarget::Mounted,
        } => pb::VaultState::Mounted,
        _ => pb::VaultState::Unspecified,
    };
    let observed = snapshot.observed.as_ref().map(|o| pb::Observed {
        mapping_name: describe.mapping_name.clone(),
        mapping: o.mapping.clone(),
        mountpoint: describe.mountpoint.clone(),
        mount: o.mount.clone(),
        project: describe.project.clone(),
        containers_running: match o.core.containers {
            ContainersSeen::Known { running, .. } => i32::try_from(running).unwrap_or(i32::MAX),
            ContainersSeen::Unknown => -1,
        },
        unobservable: o.unobservable.join("; "),
        containers: o
            .containers
            .iter()
            .map(|c| pb::Container {
                name: c.name.clone(),
                service: c.service.clone(),
                state: c.state.clone(),
                status: c.status.clone(),
                misplaced: c.misplaced,
            })
            .collect(),
        immich: o.immich.clone(),
        immich_held_paused: o.immich_held_paused.clone(),
    });
    pb::StatusReply {
        state: state_pb(status.state).into(),
        drain_target: drain_target.into(),
        phase: status.phase.name().to_owned(),
        reason: status.reason.to_string(),
        since_unix: snapshot.since_unix,
        observed,
        power: Some(pb::Power {
            source: match &snapshot.power.gone {
                Some(why) => format!("{} (gone: {why})", snapshot.power.source),
                None => snapshot.power.source.to_owned(),
            },
            on_battery: snapshot.power.reading.is_some_and(|r| r.on_battery),
            percent: snapshot
                .power
                .reading
                .and_then(|r| r.percent)
                .unwrap_or(-1.0),
            time_to_empty_secs: snapshot
                .power
                .reading
                .and_then(|r| r.time_to_empty_secs)
                .and_then(|t| i64::try_from(t).ok())
                .unwrap_or(0),
            threshold_percent: u32::from(snapshot.threshold_percent),
            critical: snapshot.power_critical,
            battery_care: snapshot.battery_care.clone(),
            note: snapshot.power_note.clone().unwrap_or_default(),
            sources: power_sources(snapshot),
            deciding: snapshot.deciding.clone().unwrap_or_default(),
        }),
        active_alarms: snapshot
            .active_alarms
            .iter()
            .map(|(kind, message)| format!("{kind}: {message}"))
            .collect(),
        daemon_version: env!("CARGO_PKG_VERSION").to_owned(),
        drain_deadline_unix: snapshot.drain_deadline_unix.unwrap_or(0),
        last: Vec::new(),
        backups: None,
    }
}

/// Every power source for status: the laptop's battery first, then each UPS.
fn power_sources(snapshot: &Snapshot) -> Vec<pb::PowerSource> {
    let secs = |t: Option<u64>| t.and_then(|t| i64::try_from(t).ok()).unwrap_or(0);
    let battery = pb::PowerSource {
        name: snapshot.power.source.to_owned(),
        on_battery: snapshot.power.reading.is_some_and(|r| r.on_battery),
        percent: snapshot
            .power
            .reading
            .and_then(|r| r.percent)
            .unwrap_or(-1.0),
        time_to_empty_secs: secs(snapshot.power.reading.and_then(|r| r.time_to_empty_secs)),
        status: String::new(),
        gone: snapshot.power.gone.clone().unwrap_or_default(),
    };
    let upses = snapshot.upses.iter().map(|ups| pb::PowerSource {
        name: format!("ups {}", ups.name),
        on_battery: ups.last.as_ref().is_some_and(|r| r.on_battery && !r.online),
        percent: ups
            .last
            .as_ref()
            .and_then(|r| r.charge_percent)
            .unwrap_or(-1.0),
        time_to_empty_secs: secs(ups.last.as_ref().and_then(|r| r.runtime_secs)),
        status: ups
            .last
            .as_ref()
            .map(|r| r.status.clone())
            .unwrap_or_default(),
        gone: match (&ups.gone, &ups.last) {
            (Some(why), _) => why.clone(),
            (None, None) => "not read yet".to_owned(),
            (None, Some(_)) => String::new(),
        },
    });
    std::iter::once(battery).chain(upses).collect()
}
