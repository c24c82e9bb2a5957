//! Every request of the gRPC API as the daemon takes it: the call named by the request path,
//! the message refused above the call's cap (tonic does so before decoding), decoded with
//! prost, and checked as the service checks it (the Unlock's passphrase).
//!
//! Input: one byte choosing the call (or, past the calls, a path to route), then the message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use vault_api::request::{self, Call};
use vault_api::v1 as pb;

fn decode_and_check(call: Call, message: &[u8]) {
    if message.len() > call.max_request_bytes() {
        return;
    }
    let reencoded = match call {
        Call::Unlock => {
            let Ok(req) = pb::UnlockRequest::decode(message) else {
                return;
            };
            let verdict = request::check_passphrase_len(req.passphrase.len());
            assert_eq!(
                verdict.is_ok(),
                (1..=request::MAX_PASSPHRASE_BYTES).contains(&req.passphrase.len())
            );
            // What fits the cap and decodes must round-trip: the daemon sees what was sent.
            let again = pb::UnlockRequest::decode(req.encode_to_vec().as_slice())
                .expect("re-decode");
            assert_eq!(again, req);
            return;
        }
        Call::History => {
            // A time, a kind's name, a count: what fits the cap and decodes round-trips.
            let Ok(req) = pb::HistoryRequest::decode(message) else {
                return;
            };
            let again = pb::HistoryRequest::decode(req.encode_to_vec().as_slice())
                .expect("re-decode");
            assert_eq!(again, req);
            return;
        }
        // A drive's UUID, a snapshot, paths, a recovery passphrase: what fits the cap and
        // decodes round-trips (the service then checks each field: vaultd's backup::api).
        Call::Backup => return round_trip::<pb::BackupRequest>(message),
        Call::BackupInit => {
            if let Ok(req) = pb::BackupInitRequest::decode(message) {
                assert!(req.recovery_passphrase.len() <= request::MAX_UNLOCK_REQUEST_BYTES);
            }
            return round_trip::<pb::BackupInitRequest>(message);
        }
        Call::BackupList => return round_trip::<pb::BackupListRequest>(message),
        Call::BackupRestore => return round_trip::<pb::BackupRestoreRequest>(message),
        Call::Status => pb::StatusRequest::decode(message).map(|m| m.encode_to_vec()),
        Call::Watch => pb::WatchRequest::decode(message).map(|m| m.encode_to_vec()),
        Call::Check => pb::CheckRequest::decode(message).map(|m| m.encode_to_vec()),
        Call::Start => pb::StartRequest::decode(message).map(|m| m.encode_to_vec()),
        Call::Stop => pb::StopRequest::decode(message).map(|m| m.encode_to_vec()),
        Call::Lock => pb::LockRequest::decode(message).map(|m| m.encode_to_vec()),
    };
    // The empty requests carry nothing the daemon reads: unknown fields are skipped.
    if let Ok(bytes) = reencoded {
        assert!(bytes.is_empty(), "an empty request re-encoded to {bytes:?}");
    }
}

fn round_trip<M: Message + Default + PartialEq + std::fmt::Debug>(message: &[u8]) {
    let Ok(req) = M::decode(message) else {
        return;
    };
    let again = M::decode(req.encode_to_vec().as_slice()).expect("re-decode");
    assert_eq!(again, req);
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match Call::ALL.get(usize::from(which)) {
        Some(&call) => decode_and_check(call, rest),
        None => {
            let path = String::from_utf8_lossy(rest);
            if let Some(call) = Call::from_path(&path) {
                assert_eq!(path, format!("/vault.v1.Vault/{}", call.name()));
            }
        }
    }
});
