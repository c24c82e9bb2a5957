//! A Postgres control file (`global/pg_control`) as vaultd reads it on the host before the
//! database's lone start after an unclean end (vault_docker::postgres::parse_control_state):
//! the data directory is the container's to write, so any bytes must parse or be refused,
//! never panic; only the first 20 bytes may matter.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vault_docker::postgres::parse_control_state;

fuzz_target!(|data: &[u8]| {
    let parsed = parse_control_state(data);
    if data.len() >= 20 {
        assert_eq!(parsed, parse_control_state(&data[..20]));
    } else {
        assert_eq!(parsed, None);
    }
    if let Some(state) = parsed {
        let _ = (state.as_str(), state.needs_crash_recovery());
    }
});
