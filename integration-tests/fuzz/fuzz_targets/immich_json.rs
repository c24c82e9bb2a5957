//! Immich's answers as the daemon reads them (vault_immich::queues): the server version, the
//! queues in either API family, the error body of a refusal. The server runs in a container the
//! daemon does not trust: whatever it answers, the daemon must read it or refuse it, and a
//! queue name it will put in a URL must be a plain name.
//!
//! Input: an HTTP body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use vault_immich::error_body::{self, ErrorDetail};
use vault_immich::queues::{self, Family};

fn queue_states(list: &[vault_immich::QueueState]) {
    for q in list {
        if queues::safe_name(&q.name) {
            assert!(
                q.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "an unsafe name passed: {:?}",
                q.name
            );
        }
        let _ = q.active > 0;
    }
}

fuzz_target!(|data: &[u8]| {
    // An error answer, with the bytes also as the X-Correlation-ID header's value: whatever
    // it says, what the daemon keeps of it is bounded and has no control character.
    let header = std::str::from_utf8(data).ok();
    let shown = ErrorDetail::read(data, header).to_string();
    assert!(shown.chars().count() <= error_body::MAX_SHOWN, "unbounded: {}", shown.len());
    assert!(!shown.chars().any(char::is_control), "a control character: {shown:?}");
    let Ok(body) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    if let Ok(version) = queues::parse_version(&body) {
        let _ = version.has_queues_api();
        let _ = version.to_string();
    }
    for q in ["integrityCheck", "editor", "thumbnailGeneration"] {
        let _ = queues::drain_waits_for(q);
    }
    if let Ok(list) = queues::parse_queues(&body) {
        queue_states(&list);
    }
    if let Ok(list) = queues::parse_jobs(&body) {
        assert!(list.windows(2).all(|w| w[0].name <= w[1].name), "jobs not sorted");
        queue_states(&list);
    }
    for family in [Family::Queues, Family::Jobs] {
        let _ = queues::pause_body(family, true);
    }
});
