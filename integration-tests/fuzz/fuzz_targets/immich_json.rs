//! Immich's answers as the daemon reads them (vault_immich::queues): the server version, the
//! queues in either API family, the error body of a refusal. The server runs in a container the
//! daemon does not trust: whatever it answers, the daemon must read it or refuse it, and a
//! queue name it will put in a URL must be a plain name.
//!
//! Input: an HTTP body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
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
    let message = queues::error_message(data);
    assert!(message.chars().count() <= 200 || serde_json::from_slice::<Value>(data).is_ok());
    let Ok(body) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    if let Ok(version) = queues::parse_version(&body) {
        let _ = version.has_queues_api();
        let _ = version.to_string();
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
