//! The start and stop order of the project, from the compose labels: pure, no I/O.
//!
//! `docker compose` (v2) writes each service's `depends_on` into the
//! `com.docker.compose.depends_on` label as `service:condition:restart` entries separated by
//! commas. Compose v1 writes no such label; for it the owner lists the order in
//! `stack.start_order`, and each service then waits for the one before it (healthy if it has a
//! healthcheck, else started).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::model::{Condition, ContainerInfo, Dependency};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "the compose project {project:?} has no containers: create them once with `docker compose -p {project} create` (or `up --no-start`) from your compose file, or set stack.compose_file and vaultd creates them before the start"
    )]
    NoContainers { project: String },
    #[error("container {container} has a malformed depends_on label entry {entry:?}: {why}")]
    BadLabel {
        container: String,
        entry: String,
        why: &'static str,
    },
    #[error(
        "service {service} depends on {dependency}, which has no container in the project: recreate the project with `docker compose create`"
    )]
    MissingDependency { service: String, dependency: String },
    #[error("the services' depends_on form a cycle: {services}")]
    Cycle { services: String },
    #[error(
        "service {service} appears in {count} containers; vaultd needs one container per service"
    )]
    Duplicate { service: String, count: usize },
}

/// Parse one `com.docker.compose.depends_on` label.
pub fn parse_depends_on(container: &str, label: &str) -> Result<Vec<Dependency>, PlanError> {
    let mut deps = Vec::new();
    for entry in label.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let bad = |why| PlanError::BadLabel {
            container: container.to_owned(),
            entry: entry.to_owned(),
            why,
        };
        let mut parts = entry.split(':');
        let service = parts.next().unwrap_or_default();
        if service.is_empty() {
            return Err(bad("no service name"));
        }
        // Early compose v2 wrote `service:condition`; later ones add `:restart`.
        let condition = match parts.next() {
            None | Some("service_started") => Condition::Started,
            Some("service_healthy") => Condition::Healthy,
            Some("service_completed_successfully") => Condition::CompletedSuccessfully,
            Some(_) => return Err(bad("unknown condition")),
        };
        match parts.next() {
            None | Some("true" | "false") => {}
            Some(_) => return Err(bad("the restart flag is neither true nor false")),
        }
        if parts.next().is_some() {
            return Err(bad("more than three fields"));
        }
        deps.push(Dependency {
            service: service.to_owned(),
            condition,
        });
    }
    Ok(deps)
}

/// The order to start and stop the project in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Services by start level: every service's dependencies are in earlier levels. Within a
    /// level, by name.
    pub levels: Vec<Vec<String>>,
    /// What each service waits for before it starts.
    pub waits: BTreeMap<String, Vec<Dependency>>,
    /// Where the order came from, for status and check.
    pub source: OrderSource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderSource {
    /// The compose v2 `depends_on` labels.
    Labels,
    /// `stack.start_order` (compose v1 writes no depends_on label).
    Configured,
    /// Neither: everything starts at once.
    None,
}

impl Plan {
    /// The stop order: the start levels reversed, dependents first.
    pub fn stop_levels(&self) -> impl Iterator<Item = &Vec<String>> {
        self.levels.iter().rev()
    }
}

/// Work out the plan for `containers` of `project`; `start_order` is the configured fallback.
pub fn plan(
    project: &str,
    containers: &[ContainerInfo],
    start_order: &[String],
) -> Result<Plan, PlanError> {
    if containers.is_empty() {
        return Err(PlanError::NoContainers {
            project: project.to_owned(),
        });
    }
    let mut by_service: BTreeMap<&str, &ContainerInfo> = BTreeMap::new();
    for c in containers {
        if by_service.insert(&c.service, c).is_some() {
            return Err(PlanError::Duplicate {
                service: c.service.clone(),
                count: containers.iter().filter(|o| o.service == c.service).count(),
            });
        }
    }
    let labelled = containers.iter().any(|c| c.depends_on.is_some());
    let mut waits: BTreeMap<String, Vec<Dependency>> = BTreeMap::new();
    let source = if labelled {
        for c in containers {
            waits.insert(c.service.clone(), c.depends_on.clone().unwrap_or_default());
        }
        OrderSource::Labels
    } else if start_order.is_empty() {
        for c in containers {
            waits.insert(c.service.clone(), Vec::new());
        }
        OrderSource::None
    } else {
        // Each listed service waits for the one before it; unlisted ones for the last listed.
        let listed: Vec<&str> = start_order
            .iter()
            .map(String::as_str)
            .filter(|s| by_service.contains_key(s))
            .collect();
        let wait_for = |dep: &str| Dependency {
            service: dep.to_owned(),
            condition: if by_service[dep].has_healthcheck {
                Condition::Healthy
            } else {
                Condition::Started
            },
        };
        for c in containers {
            let position = listed.iter().position(|s| *s == c.service);
            let before = match position {
                Some(0) => None,
                Some(i) => Some(listed[i - 1]),
                None => listed.last().copied(),
            };
            waits.insert(
                c.service.clone(),
                before.map(wait_for).into_iter().collect(),
            );
        }
        OrderSource::Configured
    };
    for (service, deps) in &waits {
        if let Some(missing) = deps
            .iter()
            .find(|d| !by_service.contains_key(d.service.as_str()))
        {
            return Err(PlanError::MissingDependency {
                service: service.clone(),
                dependency: missing.service.clone(),
            });
        }
    }
    let levels = levels(&waits)?;
    Ok(Plan {
        levels,
        waits,
        source,
    })
}

/// Kahn's algorithm, a level at a time.
fn levels(waits: &BTreeMap<String, Vec<Dependency>>) -> Result<Vec<Vec<String>>, PlanError> {
    let mut placed: BTreeSet<&str> = BTreeSet::new();
    let mut levels = Vec::new();
    while placed.len() < waits.len() {
        let level: Vec<String> = waits
            .iter()
            .filter(|(s, deps)| {
                !placed.contains(s.as_str())
                    && deps.iter().all(|d| placed.contains(d.service.as_str()))
            })
            .map(|(s, _)| s.clone())
            .collect();
        if level.is_empty() {
            let stuck: Vec<&str> = waits
                .keys()
                .map(String::as_str)
                .filter(|s| !placed.contains(s))
                .collect();
            return Err(PlanError::Cycle {
                services: stuck.join(", "),
            });
        }
        for s in &level {
            placed.insert(waits.get_key_value(s).expect("from waits").0);
        }
        levels.push(level);
    }
    Ok(levels)
}

/// The least a container is given to stop, even past the deadline: SIGKILL at once could
/// leave a database unclean for no gain.
pub const MIN_STOP: Duration = Duration::from_secs(1);

/// How long the next stop level may take. Later levels (the database, last) keep what they
/// want if the time allows; when it does not, each level gets at least an even share.
pub fn level_budget(time_left: Duration, later_levels_want: &[Duration]) -> Duration {
    let levels_left = u32::try_from(later_levels_want.len() + 1).unwrap_or(u32::MAX);
    let reserve: Duration = later_levels_want.iter().sum();
    let fair = time_left / levels_left;
    time_left.saturating_sub(reserve).max(fair).max(MIN_STOP)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(service: &str, depends_on: Option<&str>, healthcheck: bool) -> ContainerInfo {
        ContainerInfo {
            id: format!("id-{service}"),
            name: format!("immich_{service}_1"),
            service: service.to_owned(),
            image: "example/image:1".into(),
            command: Vec::new(),
            state: "exited".into(),
            health: None,
            has_healthcheck: healthcheck,
            started_at: None,
            exit_code: None,
            depends_on: depends_on.map(|l| parse_depends_on(service, l).expect("valid label")),
            mounts: Vec::new(),
            ports: Vec::new(),
            network_mode: "bridge".into(),
            privileged: false,
            cap_add: Vec::new(),
            restart_policy: "no".into(),
            stop_timeout_secs: None,
            stop_signal: None,
        }
    }

    #[test]
    fn parses_the_three_field_and_the_older_two_field_label() {
        let deps = parse_depends_on(
            "server",
            "database:service_healthy:false,redis:service_started:true",
        )
        .unwrap();
        assert_eq!(
            deps,
            vec![
                Dependency {
                    service: "database".into(),
                    condition: Condition::Healthy
                },
                Dependency {
                    service: "redis".into(),
                    condition: Condition::Started
                },
            ]
        );
        let deps = parse_depends_on("x", "init:service_completed_successfully").unwrap();
        assert_eq!(deps[0].condition, Condition::CompletedSuccessfully);
        assert_eq!(parse_depends_on("x", "").unwrap(), vec![]);
    }

    #[test]
    fn a_malformed_label_names_the_container_and_the_entry() {
        let e = parse_depends_on("server", "database:service_sleepy:false").unwrap_err();
        assert_eq!(
            e.to_string(),
            "container server has a malformed depends_on label entry \"database:service_sleepy:false\": unknown condition"
        );
        assert!(parse_depends_on("s", ":service_started").is_err());
        assert!(parse_depends_on("s", "a:service_started:maybe").is_err());
    }

    #[test]
    fn immichs_stack_starts_database_and_redis_first_and_stops_them_last() {
        let containers = [
            container(
                "immich-server",
                Some("redis:service_started:false,database:service_healthy:false"),
                true,
            ),
            container("immich-machine-learning", Some(""), true),
            container("redis", Some(""), true),
            container("database", Some(""), true),
        ];
        let plan = plan("immich", &containers, &[]).unwrap();
        assert_eq!(plan.source, OrderSource::Labels);
        assert_eq!(
            plan.levels,
            vec![
                vec!["database", "immich-machine-learning", "redis"],
                vec!["immich-server"]
            ]
        );
        let stop: Vec<_> = plan.stop_levels().cloned().collect();
        assert_eq!(stop[0], vec!["immich-server"]);
    }

    #[test]
    fn compose_v1_uses_the_configured_order_waiting_for_health_where_there_is_a_check() {
        let containers = [
            container("server", None, false),
            container("database", None, true),
            container("redis", None, false),
            container("ml", None, false),
        ];
        let order = [
            "database".to_owned(),
            "redis".to_owned(),
            "server".to_owned(),
        ];
        let plan = plan("immich", &containers, &order).unwrap();
        assert_eq!(plan.source, OrderSource::Configured);
        assert_eq!(
            plan.levels,
            vec![vec!["database"], vec!["redis"], vec!["server"], vec!["ml"]]
        );
        assert_eq!(plan.waits["redis"][0].condition, Condition::Healthy);
        assert_eq!(plan.waits["server"][0].condition, Condition::Started);
        // No labels and no configured order: one level, all at once.
        let plan = super::plan("immich", &containers, &[]).unwrap();
        assert_eq!((plan.levels.len(), plan.source), (1, OrderSource::None));
    }

    #[test]
    fn cycles_missing_dependencies_and_an_empty_project_are_errors() {
        let cyclic = [
            container("a", Some("b:service_started:false"), false),
            container("b", Some("a:service_started:false"), false),
        ];
        assert_eq!(
            plan("p", &cyclic, &[]).unwrap_err(),
            PlanError::Cycle {
                services: "a, b".into()
            }
        );
        let missing = [container("a", Some("db:service_healthy:false"), false)];
        assert!(matches!(
            plan("p", &missing, &[]).unwrap_err(),
            PlanError::MissingDependency { .. }
        ));
        let e = plan("immich", &[], &[]).unwrap_err();
        assert!(e.to_string().contains("docker compose -p immich create"));
    }

    #[test]
    fn stop_budgets_keep_the_databases_time_when_they_can_and_share_when_they_cannot() {
        let s = Duration::from_secs;
        // Plenty of time: the server gets what is left after the database's 120 s.
        assert_eq!(level_budget(s(300), &[s(120)]), s(180));
        // Short on time: an even share at least.
        assert_eq!(level_budget(s(60), &[s(120)]), s(30));
        // Past the deadline: the floor.
        assert_eq!(level_budget(s(0), &[s(120)]), MIN_STOP);
    }
}
