//! Audit records: one structured event per control call, transition and alarm, with a stable
//! MESSAGE_ID per kind (listed in docs/security.md) so `journalctl MESSAGE_ID=…` finds them.
//! tracing-journald sends each field of the event as a journal field, upper-cased and without a
//! prefix (logging.rs turns its default `F_` off), so `message_id` is journald's own `MESSAGE_ID`.

/// Stable MESSAGE_IDs. Never change one: operators' journal queries depend on them.
pub mod message_id {
    pub const CONTROL_CALL: &str = "4f1c7c55a3e94f6c9d0f1b5e2f6a9c01";
    pub const CONTROL_DENIED: &str = "4f1c7c55a3e94f6c9d0f1b5e2f6a9c02";
    pub const TRANSITION: &str = "4f1c7c55a3e94f6c9d0f1b5e2f6a9c03";
    pub const ALARM: &str = "4f1c7c55a3e94f6c9d0f1b5e2f6a9c04";
    pub const CONFIG_RELOAD: &str = "4f1c7c55a3e94f6c9d0f1b5e2f6a9c05";
    pub const UNLOCK_RESULT: &str = "4f1c7c55a3e94f6c9d0f1b5e2f6a9c06";
    pub const CONTROL_LIMIT: &str = "4f1c7c55a3e94f6c9d0f1b5e2f6a9c07";
    pub const CONTAINERS_CREATED: &str = "4f1c7c55a3e94f6c9d0f1b5e2f6a9c08";
}

use crate::origin::Origin;
use crate::peer::PeerCredentials;

pub fn control_call(peer: &PeerCredentials, call: &str, result: &str) {
    let origin = origin_of(peer);
    tracing::info!(
        message_id = message_id::CONTROL_CALL,
        vaultd_event = "control-call",
        vaultd_uid = peer.uid,
        vaultd_pid = peer.pid,
        vaultd_via = origin.via(),
        vaultd_ssh_from = origin.ssh_from(),
        vaultd_call = call,
        vaultd_result = result,
        "{call} by uid {} (pid {}, {}): {result}",
        peer.uid,
        peer.pid,
        shown_origin(&origin),
    );
}

pub fn control_denied(peer: &PeerCredentials, call: &str, why: &str) {
    let origin = origin_of(peer);
    tracing::warn!(
        message_id = message_id::CONTROL_DENIED,
        vaultd_event = "control-denied",
        vaultd_uid = peer.uid,
        vaultd_pid = peer.pid,
        vaultd_via = origin.via(),
        vaultd_ssh_from = origin.ssh_from(),
        vaultd_call = call,
        vaultd_result = "permission-denied",
        "{call} by uid {} (pid {}, {}) denied: {why}",
        peer.uid,
        peer.pid,
        shown_origin(&origin),
    );
}

/// A connection refused at accept because its user (or everyone, or root) holds as many
/// connections as allowed. `limit`: `uid-limit`, `connection-limit`, `root-limit`.
pub fn connection_refused(peer: &PeerCredentials, limit: &str, why: &str) {
    let origin = origin_of(peer);
    tracing::warn!(
        message_id = message_id::CONTROL_LIMIT,
        vaultd_event = "connection-refused",
        vaultd_uid = peer.uid,
        vaultd_pid = peer.pid,
        vaultd_via = origin.via(),
        vaultd_ssh_from = origin.ssh_from(),
        vaultd_result = limit,
        "connection by uid {} (pid {}, {}) refused: {why}",
        peer.uid,
        peer.pid,
        shown_origin(&origin),
    );
}

/// The end of a burst whose first record was written in full: how many more came, and over
/// how long. `kind`: `no-access` and `denied` (refusals, as control-denied), `read` (Watch and
/// Check calls carried out, as control-call), or one of connection_refused's limits.
pub fn repeated(kind: &str, uid: u32, call: &str, more: u64, lasted: std::time::Duration) {
    let (message_id, event, result) = match kind {
        "no-access" | "denied" => (
            message_id::CONTROL_DENIED,
            "control-denied",
            "permission-denied",
        ),
        "read" => (message_id::CONTROL_CALL, "control-call", "ok"),
        limit => (message_id::CONTROL_LIMIT, "connection-refused", limit),
    };
    let secs = lasted.as_secs_f64();
    tracing::warn!(
        message_id,
        vaultd_event = event,
        vaultd_uid = uid,
        vaultd_call = call,
        vaultd_result = result,
        vaultd_repeated = more,
        "{call} by uid {uid}: {more} more ({result}) in {secs:.1} s"
    );
}

/// Where the caller came from, looked up when a record is written (not for every connection:
/// status calls write none). The caller is still waiting for its answer then.
fn origin_of(peer: &PeerCredentials) -> Origin {
    crate::origin::origin_of(std::path::Path::new("/proc"), peer.pid)
}

/// Where the caller came from, in words (`local`, `over SSH from 10.8.0.2`), for the notices and
/// the history.
pub fn origin_words(peer: &PeerCredentials) -> String {
    shown_origin(&origin_of(peer))
}

fn shown_origin(origin: &Origin) -> String {
    match origin {
        Origin::Ssh { from: Some(from) } => format!("over SSH from {from}"),
        Origin::Ssh { from: None } => "over SSH".to_owned(),
        Origin::Local => "local".to_owned(),
        Origin::Unknown => "origin unknown".to_owned(),
    }
}

pub fn transition(from: &str, to: &str, phase: &str, reason: &str) {
    tracing::info!(
        message_id = message_id::TRANSITION,
        vaultd_event = "transition",
        vaultd_state_from = from,
        vaultd_state_to = to,
        vaultd_phase = phase,
        vaultd_reason = reason,
        "{from} → {to} ({phase}): {reason}"
    );
}

pub fn alarm(kind: &str, message: &str) {
    tracing::warn!(
        message_id = message_id::ALARM,
        vaultd_event = "alarm",
        vaultd_alarm = kind,
        "ALARM {kind}: {message}"
    );
}

/// `trigger`: `sighup` or `file-change`.
pub fn config_reload(path: &str, trigger: &str, result: &str) {
    tracing::info!(
        message_id = message_id::CONFIG_RELOAD,
        vaultd_event = "config-reload",
        vaultd_config = path,
        vaultd_trigger = trigger,
        vaultd_result = result,
        "config {path} ({trigger}): {result}"
    );
}

/// The outcome of opening the volume: `opened`, `wrong-passphrase` or `failed`.
pub fn unlock_result(uid: u32, pid: u32, result: &str, failures_in_a_row: u32) {
    tracing::warn!(
        message_id = message_id::UNLOCK_RESULT,
        vaultd_event = "unlock-result",
        vaultd_uid = uid,
        vaultd_pid = pid,
        vaultd_result = result,
        vaultd_failures = failures_in_a_row,
        "unlock by uid {uid} (pid {pid}): {result} ({failures_in_a_row} failures in a row)"
    );
}

/// Before a start, `compose create` made (or remade) containers from the owner's compose file.
pub fn containers_created(project: &str, file: &str, what: &str) {
    tracing::info!(
        message_id = message_id::CONTAINERS_CREATED,
        vaultd_event = "containers-created",
        vaultd_project = project,
        vaultd_compose_file = file,
        vaultd_result = what,
        "compose project {project}: {what} from {file}"
    );
}
