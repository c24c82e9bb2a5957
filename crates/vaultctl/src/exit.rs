//! Exit codes, documented in docs/operations.md and `vaultctl --help`. Scripts rely on them:
//! never renumber.

use std::io;
use std::process::ExitCode;

/// What went wrong, as a script sees it.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The socket is missing, refuses connections, or the daemon went away mid-call.
    #[error("{0}")]
    Unreachable(String),
    /// The socket's mode, or the daemon's SO_PEERCRED check, refused this user.
    #[error("{0}")]
    PermissionDenied(String),
    /// The daemon refused the command in its current state (busy, not allowed, cannot observe).
    #[error("{0}")]
    Refused(String),
    /// This daemon does not implement the call yet.
    #[error("{0}")]
    Unimplemented(String),
    /// `check` found at least one error-level finding.
    #[error("{0}")]
    CheckFailed(String),
    /// The flow started, then failed at a step; the daemon rolled back to a safe state.
    #[error("{0}")]
    FlowFailed(String),
    /// Bad input on this side (e.g. a passphrase that is too long, an unreadable key file).
    #[error("{0}")]
    Input(String),
    #[error("{0}")]
    Other(String),
}

impl Failure {
    pub fn code(&self) -> u8 {
        match self {
            Failure::Other(_) => 1,
            Failure::Input(_) => 2,
            Failure::Unreachable(_) => 3,
            Failure::PermissionDenied(_) => 4,
            Failure::Refused(_) => 5,
            Failure::Unimplemented(_) => 6,
            Failure::CheckFailed(_) => 7,
            Failure::FlowFailed(_) => 8,
        }
    }

    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code())
    }

    pub fn from_status(status: &tonic::Status) -> Self {
        let message = status.message().to_owned();
        match status.code() {
            tonic::Code::PermissionDenied | tonic::Code::Unauthenticated => {
                Failure::PermissionDenied(format!("permission denied: {message}"))
            }
            tonic::Code::FailedPrecondition | tonic::Code::ResourceExhausted => {
                Failure::Refused(message)
            }
            tonic::Code::Unimplemented => Failure::Unimplemented(message),
            tonic::Code::Unavailable | tonic::Code::Cancelled => {
                Failure::Unreachable(format!("vaultd is not answering: {message}"))
            }
            tonic::Code::InvalidArgument => Failure::Input(message),
            _ => Failure::Other(message),
        }
    }

    pub fn from_connect(socket: &std::path::Path, error: &io::Error) -> Self {
        let socket = socket.display();
        match error.kind() {
            io::ErrorKind::NotFound => Failure::Unreachable(format!(
                "vaultd is not running: {socket} does not exist (systemctl status vaultd)"
            )),
            io::ErrorKind::ConnectionRefused => Failure::Unreachable(format!(
                "vaultd is not running: {socket} refuses connections (a stale socket?)"
            )),
            io::ErrorKind::PermissionDenied => Failure::PermissionDenied(format!(
                "permission denied on {socket}: join the reader group (status) or the admin \
                 group (changes), or use sudo"
            )),
            _ => Failure::Unreachable(format!("cannot connect to {socket}: {error}")),
        }
    }
}
