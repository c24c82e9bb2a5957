//! An ext2/3/4 superblock as vault-storage reads it (superblock::parse) from the opened volume
//! after an unlock: the disk is whatever was written to it, by vaultd's own kernel or by anyone
//! who had the laptop. Any bytes must parse or be refused, never panic; a parsed one read from
//! a longer block must agree with itself read from the block's first 1024 bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vault_storage::superblock::parse;

fuzz_target!(|data: &[u8]| {
    let parsed = parse(data);
    if data.len() >= 1024 {
        assert_eq!(parsed, parse(&data[..1024]));
    }
    if let Some(state) = parsed {
        // The magic is what made it ext.
        assert_eq!(&data[0x38..0x3A], &[0x53, 0xEF]);
        let _ = state.needs_recovery || state.errors;
    }
});
