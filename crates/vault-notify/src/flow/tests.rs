use super::*;

fn view<'a>(state: &'a str, idle: bool, reason: &'a str) -> View<'a> {
    View {
        state,
        draining: state == "DRAINING",
        idle,
        reason,
        failed: None,
    }
}

#[test]
fn an_unlock_is_followed_from_the_passphrase_to_running_with_each_step_timed() {
    let mut t = Tracker::default();
    t.set_caller("uid 1000".into(), "over SSH from 10.8.0.2".into());
    let asked = "`unlock` by uid 1000 (pid 7)";
    assert!(
        t.step_started(0, 100, "opening-mapping", &view("LOCKED", false, asked))
            .is_empty()
    );
    t.step_done(1200, "opening-mapping", StepEnd::Ok);
    t.step_started(1200, 101, "mounting", &view("MOUNTED", false, asked));
    t.step_done(1300, "mounting", StepEnd::Ok);
    t.step_started(1300, 101, "starting-stack", &view("MOUNTED", false, asked));
    assert!(
        t.status(2000, 102, &view("MOUNTED", false, asked))
            .is_empty()
    );
    t.step_done(4300, "starting-stack", StepEnd::Ok);
    let events = t.status(4300, 104, &view("RUNNING", true, "unlock completed"));
    let [FlowEvent::Ended(done)] = events.as_slice() else {
        panic!("{events:?}")
    };
    assert_eq!(done.kind, FlowKind::Unlock);
    assert_eq!(done.end, End::Reached);
    assert_eq!(done.outcome(), "ok");
    assert_eq!(done.state, "RUNNING");
    assert_eq!(done.who, "uid 1000");
    assert_eq!(done.origin, "over SSH from 10.8.0.2");
    assert_eq!(done.trigger, asked);
    assert_eq!(done.millis, 4300);
    let steps: Vec<(&str, u64)> = done
        .steps
        .iter()
        .map(|s| (s.step.as_str(), s.millis))
        .collect();
    assert_eq!(
        steps,
        [
            ("opening-mapping", 1200),
            ("mounting", 100),
            ("starting-stack", 3000)
        ]
    );
    assert!(!t.busy());
}

#[test]
fn a_wrong_passphrase_ends_the_unlock_as_such() {
    let mut t = Tracker::default();
    t.step_started(0, 0, "opening-mapping", &view("LOCKED", false, "unlock"));
    t.step_done(900, "opening-mapping", StepEnd::WrongPassphrase);
    let mut failed = view("LOCKED", true, "opening-mapping failed: no key");
    failed.failed = Some("no key");
    let events = t.status(900, 1, &failed);
    let [FlowEvent::Ended(done)] = events.as_slice() else {
        panic!("{events:?}")
    };
    assert_eq!(done.end, End::WrongPassphrase);
    assert_eq!(done.steps[0].result, "wrong passphrase");
}

#[test]
fn a_drain_begins_with_its_trigger_and_ends_when_the_state_is_reached() {
    let mut t = Tracker::default();
    let power = "power critical (upower): on battery, 20 %";
    let events = t.step_started(0, 50, "pausing-queues", &view("DRAINING", false, power));
    assert_eq!(
        events,
        [FlowEvent::DrainStarted {
            trigger: power.into(),
            who: String::new(),
            origin: String::new()
        }]
    );
    for (i, step) in [
        "pausing-queues",
        "waiting-for-jobs",
        "stopping-containers",
        "syncing",
        "unmounting",
        "closing-mapping",
    ]
    .iter()
    .enumerate()
    {
        let at = u64::try_from(i).expect("small") * 100;
        if i > 0 {
            assert!(
                t.step_started(at, 50, step, &view("DRAINING", false, power))
                    .is_empty()
            );
        }
        t.step_done(at + 100, step, StepEnd::Ok);
    }
    // LOCKED, and the power-off under way: the drain is over.
    let events = t.status(600, 51, &view("LOCKED", true, power));
    let [FlowEvent::Ended(done)] = events.as_slice() else {
        panic!("{events:?}")
    };
    assert_eq!(
        (done.kind, done.state.as_str(), done.steps.len()),
        (FlowKind::Drain, "LOCKED", 6)
    );
    assert!(done.steps.iter().all(|s| s.ok() && s.millis == 100));
    // The power-off is not a flow of its own.
    assert!(
        t.step_started(600, 51, "powering-off", &view("LOCKED", false, power))
            .is_empty()
    );
    assert!(!t.busy());
}

#[test]
fn a_drain_wanted_during_an_unlock_ends_it_as_interrupted() {
    let mut t = Tracker::default();
    t.set_caller("uid 0".into(), "local".into());
    t.step_started(0, 0, "opening-mapping", &view("LOCKED", false, "unlock"));
    t.step_done(100, "opening-mapping", StepEnd::Ok);
    t.step_started(
        100,
        0,
        "checking-filesystem",
        &view("LOCKED", false, "unlock"),
    );
    let events = t.step_started(
        200,
        0,
        "pausing-queues",
        &view("DRAINING", false, "SIGTERM"),
    );
    assert_eq!(events.len(), 2, "{events:?}");
    let FlowEvent::Ended(unlock) = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(unlock.end, End::Interrupted);
    assert_eq!(
        unlock.steps.last().map(|s| s.result.as_str()),
        Some("interrupted")
    );
    assert!(matches!(&events[1], FlowEvent::DrainStarted { trigger, .. } if trigger == "SIGTERM"));
}

#[test]
fn a_caller_whose_command_began_no_flow_is_not_the_next_flows() {
    let mut t = Tracker::default();
    t.set_caller("uid 0".into(), "local".into());
    t.status(0, 0, &view("LOCKED", true, "lock: already locked"));
    let events = t.step_started(10, 0, "pausing-queues", &view("DRAINING", false, "power"));
    assert!(matches!(&events[0], FlowEvent::DrainStarted { who, .. } if who.is_empty()));
}
