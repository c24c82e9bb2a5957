//! Logging: structured records to the journal when stderr is the journal's stream (under
//! systemd), else text on stderr; the level from `VAULTD_LOG` (default `info`): a level, or
//! `target=level` directives joined by commas (`debug,zbus=info`).

use std::io;

use tracing_subscriber::filter::{LevelFilter, Targets};

/// Install the subscriber, once, before anything logs.
pub fn init() {
    use tracing_subscriber::prelude::*;
    let (filter, bad_filter) = log_filter(std::env::var("VAULTD_LOG").ok().as_deref());
    // Under systemd, stderr is connected to the journal: send structured records instead.
    let journald = stderr_is_journal()
        .then(|| tracing_journald::layer().ok())
        .flatten()
        // No `F_` prefix: the audit records' `message_id` must be journald's MESSAGE_ID, and
        // their fields the VAULTD_* names docs/security.md lists.
        // INFO is journald's "info" (6), not tracing-journald's default "notice" (5).
        .map(|layer| {
            use tracing_journald::{Priority, PriorityMappings};
            layer
                .with_syslog_identifier("vaultd".into())
                .with_field_prefix(None)
                .with_priority_mappings(PriorityMappings {
                    info: Priority::Informational,
                    debug: Priority::Debug,
                    ..PriorityMappings::new()
                })
        });
    let fmt = journald.is_none().then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(io::stderr)
            .with_target(false)
            .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(journald)
        .with(fmt)
        .init();
    if let Some(value) = bad_filter {
        tracing::warn!("VAULTD_LOG={value:?} is not a level or target=level list; logging at info");
    }
}

/// `Targets`, not `EnvFilter`: the directives the daemon needs (a level per target) without
/// EnvFilter's span and field matching, whose regex engine is about a megabyte of code the
/// daemon would keep mapped all its life (idle RSS, issue 22). Returns the filter and, when the
/// value does not parse, the value, to be reported once logging works.
fn log_filter(value: Option<&str>) -> (Targets, Option<String>) {
    let info = Targets::new().with_default(LevelFilter::INFO);
    let Some(value) = value else {
        return (info, None);
    };
    // Each directive trimmed, empty ones dropped (`debug,` or `debug, zbus=info`): `Targets`
    // reads an empty directive as the level ERROR and keeps spaces in a target's name.
    let directives: Vec<String> = value
        .split(',')
        .map(|d| match d.split_once('=') {
            Some((target, level)) => format!("{}={}", target.trim(), level.trim()),
            None => d.trim().to_owned(),
        })
        .filter(|d| !d.is_empty())
        .collect();
    if directives.is_empty() {
        return (info, None);
    }
    // A bare word must be a level: `Targets` would read `warnn` as a target to trace with
    // every other target off, silencing the daemon over a typo. Spans and fields
    // (`x[span]=debug`, EnvFilter's) are not supported: refused, not silently never matched.
    let well_formed = directives.iter().all(|d| match d.split_once('=') {
        None => d.parse::<LevelFilter>().is_ok(),
        Some((target, level)) => {
            !target.is_empty()
                && !target.contains(['[', ']', '{', '}', ' '])
                && !level.is_empty()
                && level.parse::<LevelFilter>().is_ok()
        }
    });
    match well_formed
        .then(|| directives.join(",").parse::<Targets>().ok())
        .flatten()
    {
        Some(targets) => (targets, None),
        None => (info, Some(value.to_owned())),
    }
}

/// sd_journal_stream_fd(3): systemd sets JOURNAL_STREAM=<dev>:<inode> of the stream it gave us;
/// it is ours only if stderr is still that stream (a child started with stderr redirected to a
/// file inherits the variable but not the stream).
fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    // fstat, not stat of /proc/self/fd/2: the journal stream is a socket.
    let Ok(stderr) = nix::sys::stat::fstat(io::stderr()) else {
        return false;
    };
    dev.parse() == Ok(stderr.st_dev) && ino.parse() == Ok(stderr.st_ino)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    fn enabled(value: Option<&str>, target: &str, level: Level) -> bool {
        log_filter(value).0.would_enable(target, &level)
    }

    #[test]
    fn unset_or_empty_logs_at_info() {
        for value in [None, Some(""), Some("  ")] {
            assert_eq!(log_filter(value).1, None);
            assert!(enabled(value, "vaultd", Level::INFO));
            assert!(!enabled(value, "vaultd", Level::DEBUG));
        }
    }

    #[test]
    fn a_level_and_per_target_levels() {
        assert!(!enabled(Some("warn"), "vaultd", Level::INFO));
        assert!(enabled(Some("warn"), "vaultd", Level::WARN));
        let value = Some("debug,zbus=info");
        assert!(enabled(value, "vaultd::supervisor", Level::DEBUG));
        assert!(!enabled(value, "zbus::connection", Level::DEBUG));
        assert!(enabled(value, "zbus::connection", Level::INFO));
        assert_eq!(log_filter(value).1, None);
    }

    #[test]
    fn spaces_and_empty_directives_are_ignored() {
        for value in ["debug,", "debug, zbus=info", " debug ,,zbus = info "] {
            assert_eq!(log_filter(Some(value)).1, None, "{value:?}");
            assert!(enabled(Some(value), "vaultd", Level::DEBUG), "{value:?}");
        }
        assert!(!enabled(
            Some("debug, zbus=info"),
            "zbus::proxy",
            Level::DEBUG
        ));
        assert!(enabled(
            Some("debug, zbus=info"),
            "zbus::proxy",
            Level::INFO
        ));
        assert!(!enabled(Some("OFF"), "vaultd", Level::ERROR));
        assert!(enabled(Some("WARN"), "vaultd", Level::WARN));
    }

    #[test]
    fn a_typo_keeps_info_and_is_reported() {
        for bad in [
            "warnn",
            "debug,zbus=loud",
            "info,verbose",
            "x[span]=debug",
            "=debug",
            "zbus=",
        ] {
            let (_, reported) = log_filter(Some(bad));
            assert_eq!(reported.as_deref(), Some(bad));
            assert!(enabled(Some(bad), "vaultd", Level::INFO), "{bad}");
            assert!(!enabled(Some(bad), "vaultd", Level::DEBUG), "{bad}");
        }
    }
}
