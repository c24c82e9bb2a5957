//! What the daemon checks of a request before it acts on it, apart from who sent it: which
//! call a request path names, how large each call's message may be, and the Unlock's
//! passphrase. Pure, so that the fuzz target `api_request` (integration-tests/fuzz) runs the
//! daemon's own checks on what it decodes.

use crate::v1::vault_server::SERVICE_NAME;

/// The longest passphrase the daemon takes (vaultctl refuses longer ones before sending).
pub const MAX_PASSPHRASE_BYTES: usize = 512;
/// The largest Unlock message: a passphrase of at most [`MAX_PASSPHRASE_BYTES`] and its
/// framing. Larger ones are refused by tonic before they are decoded.
pub const MAX_UNLOCK_REQUEST_BYTES: usize = 1024;
/// The largest of any other request: all of them are empty messages but History's (a time, a
/// kind's name, a count: a few bytes each) and the backup calls' (a drive's UUID).
pub const MAX_REQUEST_BYTES: usize = 64;

/// The calls of `vault.v1.Vault`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    Status,
    Watch,
    Check,
    History,
    Unlock,
    Start,
    Stop,
    Lock,
    Backup,
    BackupInit,
    BackupList,
    BackupRestore,
}

impl Call {
    pub const ALL: [Call; 12] = [
        Call::Status,
        Call::Watch,
        Call::Check,
        Call::History,
        Call::Unlock,
        Call::Start,
        Call::Stop,
        Call::Lock,
        Call::Backup,
        Call::BackupInit,
        Call::BackupList,
        Call::BackupRestore,
    ];

    /// The method's name in the schema (and in the path).
    pub fn name(self) -> &'static str {
        match self {
            Call::Status => "Status",
            Call::Watch => "Watch",
            Call::Check => "Check",
            Call::History => "History",
            Call::Unlock => "Unlock",
            Call::Start => "Start",
            Call::Stop => "Stop",
            Call::Lock => "Lock",
            Call::Backup => "Backup",
            Call::BackupInit => "BackupInit",
            Call::BackupList => "BackupList",
            Call::BackupRestore => "BackupRestore",
        }
    }

    /// Whether the call changes the vault's state (rather than reading it).
    /// The backup drive's calls count as changes: each opens the drive, and a restore writes.
    pub fn changes_state(self) -> bool {
        !matches!(
            self,
            Call::Status | Call::Watch | Call::Check | Call::History
        )
    }

    /// Whether the request carries more than a few bytes (a passphrase, paths): it is decoded
    /// with the larger bound.
    pub fn carries_data(self) -> bool {
        matches!(self, Call::Unlock | Call::BackupInit | Call::BackupRestore)
    }

    /// The call a request path (`/vault.v1.Vault/Status`) names; `None` for anything else.
    pub fn from_path(path: &str) -> Option<Call> {
        path.strip_prefix('/')
            .and_then(|p| p.split_once('/'))
            .filter(|(service, _)| *service == SERVICE_NAME)
            .and_then(|(_, method)| Call::ALL.into_iter().find(|c| c.name() == method))
    }

    /// The largest message of this call the daemon decodes.
    pub fn max_request_bytes(self) -> usize {
        match self {
            // A passphrase (Unlock's, the recovery passphrase), or a restore's two paths.
            Call::Unlock | Call::BackupInit | Call::BackupRestore => MAX_UNLOCK_REQUEST_BYTES,
            _ => MAX_REQUEST_BYTES,
        }
    }
}

/// A request the daemon refuses for what it carries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRequest {
    #[error("the passphrase must be 1 to {MAX_PASSPHRASE_BYTES} bytes long")]
    PassphraseLength,
}

/// An Unlock's passphrase, by its length (the daemon checks it once it holds the bytes in
/// locked memory, so a refused one is zeroised like any other).
pub fn check_passphrase_len(len: usize) -> Result<(), InvalidRequest> {
    if len == 0 || len > MAX_PASSPHRASE_BYTES {
        return Err(InvalidRequest::PassphraseLength);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_the_calls_of_the_service_and_nothing_else() {
        assert_eq!(
            Call::from_path("/vault.v1.Vault/Status"),
            Some(Call::Status)
        );
        assert_eq!(
            Call::from_path("/vault.v1.Vault/Unlock"),
            Some(Call::Unlock)
        );
        assert_eq!(Call::from_path("/vault.v1.Vault/Nope"), None);
        assert_eq!(Call::from_path("/other.Service/Unlock"), None);
        assert_eq!(Call::from_path("Unlock"), None);
        assert_eq!(Call::from_path("/vault.v1.Vault/Unlock/x"), None);
        for call in Call::ALL {
            let path = format!("/{SERVICE_NAME}/{}", call.name());
            assert_eq!(Call::from_path(&path), Some(call));
        }
    }

    #[test]
    fn a_passphrase_is_one_to_512_bytes() {
        assert!(check_passphrase_len(0).is_err());
        assert!(check_passphrase_len(1).is_ok());
        assert!(check_passphrase_len(MAX_PASSPHRASE_BYTES).is_ok());
        assert!(check_passphrase_len(MAX_PASSPHRASE_BYTES + 1).is_err());
    }

    #[test]
    fn the_unlock_cap_holds_the_longest_passphrase() {
        use prost::Message;
        let longest = crate::v1::UnlockRequest {
            passphrase: vec![0xff; MAX_PASSPHRASE_BYTES],
            no_start: true,
        };
        assert!(longest.encoded_len() <= MAX_UNLOCK_REQUEST_BYTES);
    }
}
