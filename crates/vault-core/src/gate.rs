//! The start gate: whether what the adapters found before a start lets the stack start. The
//! adapters only report (bind sources off the volume, the containers' posture, the host's); the
//! verdict is here.

/// How a gate treats error-level findings (`stack.posture_gate`, `host.gate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateMode {
    /// Errors stop the start.
    Block,
    /// Errors are reported and the start goes on.
    Warn,
}

/// What was found before a start, in the adapters' words.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartFindings {
    /// Writable bind sources of the project's containers that are not on the mounted volume:
    /// "source (container)". Never waived: containers would write photos to the root disk.
    pub off_volume: Vec<String>,
    /// Writable bind sources under the mountpoint that do not exist yet (a freshly formatted
    /// volume): not elsewhere, missing; the owner makes them.
    pub missing: Vec<String>,
    /// Error-level findings about the containers ("container: what").
    pub stack_errors: Vec<String>,
    /// Error-level findings about the host ("area: what").
    pub host_errors: Vec<String>,
}

/// The gate's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateVerdict {
    /// Start; `warnings` are the errors a gate set to warn let through, to be logged.
    Pass { warnings: Vec<String> },
    /// Do not start, and why (the step's failure message).
    Block(String),
}

/// The verdict on `found` before a start of the stack onto `mountpoint`.
pub fn judge_start(
    found: &StartFindings,
    stack_gate: GateMode,
    host_gate: GateMode,
    mountpoint: &str,
) -> GateVerdict {
    let missing = (!found.missing.is_empty()).then(|| {
        let paths: Vec<&str> = found
            .missing
            .iter()
            .map(|m| m.split(" (").next().unwrap_or(m))
            .collect();
        format!(
            "these bind-mount sources do not exist on the mounted volume {mountpoint} yet: {}; create them first (mkdir -p {}): vaultd starts nothing whose data path it cannot see on the volume",
            found.missing.join(", "),
            paths.join(" ")
        )
    });
    if !found.off_volume.is_empty() {
        let mut why = format!(
            "not starting: these bind-mount sources are not on the mounted volume {mountpoint}: {}",
            found.off_volume.join(", ")
        );
        if let Some(missing) = missing {
            why.push_str("; and ");
            why.push_str(&missing);
        }
        return GateVerdict::Block(why);
    }
    if let Some(missing) = missing {
        return GateVerdict::Block(format!("not starting: {missing}"));
    }
    let mut warnings = Vec::new();
    for (errors, mode, blocks, warns) in [
        (
            &found.stack_errors,
            stack_gate,
            "the posture gate blocks the start (see `vaultctl check`)",
            "posture findings (the gate is set to warn)",
        ),
        (
            &found.host_errors,
            host_gate,
            "the host posture gate blocks the start (see `vaultctl check`)",
            "host posture findings (host.gate is set to warn)",
        ),
    ] {
        if errors.is_empty() {
            continue;
        }
        let said = errors.join("; ");
        match mode {
            GateMode::Block => return GateVerdict::Block(format!("{blocks}: {said}")),
            GateMode::Warn => warnings.push(format!("{warns}: {said}")),
        }
    }
    GateVerdict::Pass { warnings }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(off: &[&str], stack: &[&str], host: &[&str]) -> StartFindings {
        let v = |s: &[&str]| s.iter().map(|x| (*x).to_owned()).collect();
        StartFindings {
            off_volume: v(off),
            missing: Vec::new(),
            stack_errors: v(stack),
            host_errors: v(host),
        }
    }

    #[test]
    fn a_bind_off_the_volume_blocks_whatever_the_gates_say() {
        let verdict = judge_start(
            &found(&["/srv/immich-old (immich-server)"], &[], &[]),
            GateMode::Warn,
            GateMode::Warn,
            "/srv/immich",
        );
        assert!(
            matches!(verdict, GateVerdict::Block(why) if why.contains("not on the mounted volume /srv/immich"))
        );
    }

    #[test]
    fn errors_block_a_blocking_gate_and_only_warn_otherwise() {
        let errors = found(
            &[],
            &["redis: publishes 0.0.0.0:6379"],
            &["nft: policy accept"],
        );
        assert!(matches!(
            judge_start(&errors, GateMode::Block, GateMode::Warn, "/srv/immich"),
            GateVerdict::Block(why) if why.starts_with("the posture gate blocks")
        ));
        assert!(matches!(
            judge_start(&errors, GateMode::Warn, GateMode::Block, "/srv/immich"),
            GateVerdict::Block(why) if why.starts_with("the host posture gate blocks")
        ));
        assert!(matches!(
            judge_start(&errors, GateMode::Warn, GateMode::Warn, "/srv/immich"),
            GateVerdict::Pass { warnings } if warnings.len() == 2
        ));
        assert_eq!(
            judge_start(
                &found(&[], &[], &[]),
                GateMode::Block,
                GateMode::Block,
                "/x"
            ),
            GateVerdict::Pass { warnings: vec![] }
        );
    }

    #[test]
    fn missing_sources_on_the_volume_are_said_to_be_missing_with_how_to_make_them() {
        let found = StartFindings {
            missing: vec!["/srv/immich/postgres (immich_postgres)".into()],
            ..StartFindings::default()
        };
        let GateVerdict::Block(why) =
            judge_start(&found, GateMode::Block, GateMode::Block, "/srv/immich")
        else {
            panic!("a missing source must block");
        };
        assert!(
            why.contains("do not exist on the mounted volume /srv/immich yet"),
            "{why}"
        );
        assert!(why.contains("mkdir -p /srv/immich/postgres"), "{why}");
        assert!(!why.contains("not on the mounted volume"), "{why}");
    }
}
