//! Logging: structured records to the journal when stderr is the journal's stream (under
//! systemd), else text on stderr; the level from `VAULTD_LOG` (default `info`).

use std::io;

/// Install the subscriber, once, before anything logs.
pub fn init() {
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_from_env("VAULTD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
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
