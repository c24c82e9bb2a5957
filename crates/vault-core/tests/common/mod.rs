//! What the core's tests share: observations of each state, a core that has seen one, and
//! the steps among actions.
#![allow(dead_code)]

use vault_core::machine::Step;
use vault_core::observation::MappingSeen;
use vault_core::{
    Action, ContainersSeen, Core, Event, Millis, MountSeen, Observation, PowerPolicy,
};

pub fn obs(mapping: MappingSeen, mount: MountSeen, running: u32) -> Observation {
    Observation {
        mapping,
        mount,
        containers: ContainersSeen::running(running),
    }
}
pub const LOCKED: Observation = Observation::LOCKED;
pub fn opened() -> Observation {
    obs(MappingSeen::Open, MountSeen::NotMounted, 0)
}
pub fn mounted() -> Observation {
    obs(MappingSeen::Open, MountSeen::FromMapping, 0)
}
pub fn running() -> Observation {
    obs(MappingSeen::Open, MountSeen::FromMapping, 4)
}

pub fn core_seeing(seen: Observation) -> Core {
    let mut core = Core::new(PowerPolicy::default(), true, Millis(0));
    core.handle(Millis(0), Event::Observed(seen));
    core
}

pub fn steps(actions: &[Action]) -> Vec<Step> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Run { step, .. } => Some(*step),
            _ => None,
        })
        .collect()
}
