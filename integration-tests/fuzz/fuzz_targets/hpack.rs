//! The HPACK mirror that mends `:authority` (crates/vault-h2authority): a client's header
//! blocks, one after another on one connection (each a length byte, then the block). A mended
//! block must need no mending the second time, and leave the table as the client's own block
//! did.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vault_h2authority::hpack::Mirror;

fuzz_target!(|data: &[u8]| {
    let mut mirror = Mirror::default();
    let mut rest = data;
    // Each block: a length byte, then up to that many bytes.
    while let Some((&len, tail)) = rest.split_first() {
        let (block, tail) = tail.split_at(usize::from(len).min(tail.len()));
        rest = tail;
        let before = mirror.clone();
        match mirror.rewrite(block) {
            Ok(None) => {}
            Ok(Some(mended)) => {
                let mut again = before;
                assert_eq!(
                    again.rewrite(&mended),
                    Ok(None),
                    "a mended block needs mending again"
                );
                assert_eq!(again, mirror, "the mended block left another table");
            }
            // The connection's blocks go on unchanged from here (h2 judges them).
            Err(_) => return,
        }
    }
});
