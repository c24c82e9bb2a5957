//! How the stack's containers are stopped: the core's rule (vault_core::stop) applied to what
//! the Docker Engine says of each container, handed to the adapter as settings per service.

use std::collections::BTreeMap;
use std::time::Duration;

use vault_core::stop::{ServiceFacts, Source, StopConfig, StopManner, manner};
use vault_docker::{ContainerInfo, ListedContainer, StopSettings};

/// What the core needs to know of a container to decide its stop.
pub(super) fn facts(c: &ContainerInfo) -> ServiceFacts<'_> {
    ServiceFacts {
        service: &c.service,
        image: &c.image,
        own_signal: c.stop_signal.as_deref(),
        own_timeout_secs: c.stop_timeout_secs,
    }
}

/// Each container's manner, by service.
pub(super) fn manners<'a>(
    config: &StopConfig,
    containers: &'a [ContainerInfo],
) -> Vec<(&'a ContainerInfo, StopManner)> {
    containers
        .iter()
        .map(|c| (c, manner(&facts(c), config)))
        .collect()
}

/// The ordered stop's settings: every service's timeout, and the signal where it is not the
/// container's own (Docker's stop sends that one itself).
pub(super) fn ordered_settings(config: &StopConfig, containers: &[ContainerInfo]) -> StopSettings {
    let mut settings = StopSettings {
        default_timeout: Duration::from_secs(config.default_timeout_secs),
        ..StopSettings::default()
    };
    for (c, m) in manners(config, containers) {
        settings
            .timeouts
            .insert(c.service.clone(), Duration::from_secs(m.timeout_secs));
        if matches!(m.signal_from, Source::Config | Source::Postgres) {
            settings.signals.insert(c.service.clone(), m.signal);
        }
    }
    settings
}

/// The emergency stop's signals: the configured one, or Postgres' fast shutdown; any other
/// container gets its own from Docker's stop. (The list answer carries no stop signal, so only
/// what the config and the image name say is known here.)
pub(super) fn emergency_signals(
    config: &StopConfig,
    listed: &[ListedContainer],
) -> BTreeMap<String, String> {
    listed
        .iter()
        .filter_map(|c| {
            let facts = ServiceFacts {
                service: &c.service,
                image: &c.image,
                own_signal: None,
                own_timeout_secs: None,
            };
            let m = manner(&facts, config);
            matches!(m.signal_from, Source::Config | Source::Postgres)
                .then(|| (c.service.clone(), m.signal))
        })
        .collect()
}
