//! vaultctl's library: the connection to vaultd, the exit codes, and the printers. The binary
//! only parses arguments and calls into here.

pub mod backup;
pub mod connect;
pub mod exit;
pub mod history;
pub mod passphrase;
pub mod print;
