//! What the compose tool prints about the owner's compose file, as vaultd reads it before a start
//! (vault_docker::compose): `config --hash='*'` and the resolved file of `config`. The file is the
//! owner's and its values come through as written (an image name, a service name): any text
//! must parse or be refused, never panic, and what parses names at least one service.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vault_docker::compose::{parse_hashes, service_images};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(hashes) = parse_hashes(text) {
        assert!(!hashes.is_empty());
        assert!(
            hashes
                .values()
                .all(|h| h.chars().all(|c| c.is_ascii_hexdigit()))
        );
    }
    if let Ok(images) = service_images(text) {
        assert!(!images.is_empty());
        assert!(images.values().flatten().all(|image| !image.is_empty()));
    }
});
