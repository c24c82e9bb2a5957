//! upsd's answers as vault-nut reads them (a UPS on another host is reached over the VPN: its
//! answers are a peer's bytes): the word splitter, a `LIST VAR` answer line by line, and the
//! reading made of the variables. Each word quoted again must read back as itself; a complete
//! list holds at most the bound of variables; a reading's numbers are in range.
//!
//! Input: the answer's text; its first line names the UPS.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vault_nut::proto::{self, MAX_VARS, VarList};
use vault_nut::UpsReading;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let ups = lines.next().unwrap_or_default();
    if let Ok(words) = proto::split_words(ups) {
        for word in &words {
            assert_eq!(
                proto::split_words(&proto::quote(word)).as_deref(),
                Ok(std::slice::from_ref(word)),
                "a quoted word must read back as itself"
            );
        }
    }
    let mut list = VarList::new(ups);
    for line in lines {
        match list.feed(line) {
            Ok(true) => {
                assert!(list.vars.len() <= MAX_VARS);
                if let Ok(r) = UpsReading::from_vars(&list.vars) {
                    assert!(r.charge_percent.is_none_or(|p| (0.0..=100.0).contains(&p)));
                    assert!(r.runtime_secs.is_none_or(|s| s <= 1_000_000_000));
                }
                return;
            }
            Ok(false) => {}
            Err(_) => return,
        }
    }
});
