//! restic's output as vaultd reads it (vault-backup's `progress`): a `backup --json` line,
//! `snapshots --json`, and `ls --json`. restic is a child vaultd runs, but its output crosses a
//! version boundary and names the owner's files: nothing in it may panic, and a percentage is
//! always within 0..=100.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vault_backup::progress::{self, Line};

fuzz_target!(|data: &[u8]| {
    if let Ok(Line::Status(p)) = progress::parse_line(data) {
        assert!((0.0..=100.0).contains(&p.percent), "percent {}", p.percent);
    }
    let _ = progress::parse_snapshots(data);
    for node in progress::parse_nodes(data) {
        let _ = (node.path.len(), node.size);
    }
});
