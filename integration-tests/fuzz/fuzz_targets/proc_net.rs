//! `/proc/net/{tcp,tcp6,udp,udp6}` as vault-hostcheck reads them (listeners::parse_proc_net):
//! the kernel writes them, but the host check must not fall over on a line it does not expect
//! (a newer kernel's columns, a truncated read). Each listener it finds must be one the table
//! says: its endpoint prints, and it is in the table's rows.
//!
//! Input: one byte (bit 0: UDP rather than TCP), then the table's text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vault_hostcheck::listeners::{self, Proto};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, table)) = data.split_first() else {
        return;
    };
    let proto = if flags & 1 != 0 { Proto::Udp } else { Proto::Tcp };
    let text = String::from_utf8_lossy(table);
    let rows: Vec<_> = listeners::socket_rows(&text).collect();
    let found = listeners::parse_proc_net(&text, proto);
    assert!(found.len() <= rows.len());
    for l in &found {
        assert!(
            rows.iter().any(|r| r.local == (l.addr, l.port) && r.inode == l.inode),
            "a listener that is not in the table"
        );
        let endpoint = l.endpoint();
        assert!(endpoint.ends_with(&format!(":{}", l.port)));
    }
});
