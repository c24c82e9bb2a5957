//! `/proc/self/mountinfo` as vault-storage reads it (parse_mountinfo, mount_at): whether the
//! vault's mountpoint is mounted from its mapping. The kernel writes the table, but the paths
//! and a FUSE mount's source are whatever a user named them. Any text must parse or be refused
//! with its line; and a mountpoint escaped as the kernel escapes it must read back as itself.
//!
//! Input: one byte (bit 0: a whole table, else a path to escape), then the text.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use vault_storage::{mount_at, parse_mountinfo};

/// The kernel's escaping of a path in mountinfo (show_mountinfo: mangle " \t\n\\").
fn escape(path: &str) -> String {
    let mut out = String::new();
    for c in path.chars() {
        match c {
            ' ' | '\t' | '\n' | '\\' => out.push_str(&format!("\\{:03o}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    if flags & 1 != 0 {
        if let Ok(entries) = parse_mountinfo(&text) {
            for e in &entries {
                let found = mount_at(&entries, &e.mount_point).expect("its own mountpoint");
                assert_eq!(found.mount_point, e.mount_point);
            }
        }
        return;
    }
    // A path the kernel would print: absolute, no NUL (a path cannot hold one).
    if text.contains('\0') || text.is_empty() {
        return;
    }
    let path = format!("/{text}");
    let line = format!(
        "36 22 253:0 / {} rw,noatime shared:20 - fuse.sshfs {} rw,user_id=1000\n",
        escape(&path),
        escape(&path)
    );
    let entries = parse_mountinfo(&line).expect("a line the kernel writes");
    assert_eq!(entries[0].mount_point, Path::new(&path));
    assert_eq!(entries[0].source, path);
    assert_eq!((entries[0].major, entries[0].minor), (253, 0));
});
