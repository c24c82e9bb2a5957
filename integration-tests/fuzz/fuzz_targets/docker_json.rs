//! The Docker engine's JSON as the daemon reads it: bollard decodes it (serde_json), vault-docker
//! reads it into its model (container_info, listed_container), then plans the start and stop
//! order from the compose labels and judges each container's posture. The engine is root's,
//! but what a container carries (labels, names, mounts, ports) is whoever wrote the compose
//! file's.
//!
//! Input: JSON; an array of inspect answers, else an array of list entries, else one event.
#![no_main]

use std::collections::BTreeSet;
use std::path::PathBuf;

use bollard::models::{ContainerInspectResponse, ContainerSummary, EventMessage};
use libfuzzer_sys::fuzz_target;
use vault_docker::posture::{self, PosturePolicy};
use vault_docker::plan::plan;
use vault_docker::{PlanError, container_info, listed_container};

fn policy() -> PosturePolicy {
    PosturePolicy {
        allowed_publish_addresses: vec!["10.8.0.1".into()],
        allowed_capabilities: vec![],
        data_path: PathBuf::from("/srv/immich"),
        docker_socket: PathBuf::from("/run/docker.sock"),
        fix_restart_policy: true,
    }
}

fn inspected(answers: Vec<ContainerInspectResponse>) {
    let mut containers = Vec::new();
    for answer in answers {
        match container_info(answer) {
            Ok(c) => containers.push(c),
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
    let policy = policy();
    for c in &containers {
        for finding in posture::judge(c, &policy) {
            assert!(!finding.what.is_empty());
        }
        let _ = c.may_write();
        let _ = c.writable_binds().count();
    }
    for start_order in [vec![], vec!["database".to_owned(), "server".to_owned()]] {
        match plan("immich", &containers, &start_order) {
            Ok(plan) => {
                // Every service is started exactly once, after what it waits for.
                let mut seen = BTreeSet::new();
                for level in &plan.levels {
                    for service in level {
                        for dep in plan.waits.get(service).into_iter().flatten() {
                            assert!(
                                seen.contains(&dep.service),
                                "{service} starts before {}",
                                dep.service
                            );
                        }
                    }
                    for service in level {
                        assert!(seen.insert(service.clone()), "{service} starts twice");
                    }
                }
                assert_eq!(seen.len(), containers.len(), "a service left out of the plan");
            }
            Err(e @ (PlanError::NoContainers { .. } | PlanError::BadLabel { .. })) => {
                let _ = e.to_string();
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(answers) = serde_json::from_slice::<Vec<ContainerInspectResponse>>(data) {
        inspected(answers);
    } else if let Ok(list) = serde_json::from_slice::<Vec<ContainerSummary>>(data) {
        for c in list {
            let listed = listed_container(c);
            let _ = listed.may_write();
        }
    } else if let Ok(event) = serde_json::from_slice::<EventMessage>(data) {
        // follow_events hands on the action word only.
        let _ = event.action.unwrap_or_default();
    }
});
