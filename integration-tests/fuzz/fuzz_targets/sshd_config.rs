//! `sshd -T`'s output as vault-hostcheck judges it (the ssh posture): whatever sshd prints,
//! the judge names at most the three password doors, each once.
//!
//! Input: the text `sshd -T` would print.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vault_hostcheck::ssh;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let auth = ssh::parse_sshd_t(&text);
    let findings = ssh::judge(&auth);
    assert!(findings.len() <= 3);
    assert!(findings.iter().all(|f| f.area == "ssh"));
});
