//! The passphrase while the daemon holds it: zeroised when dropped, locked against swap, never
//! printed. Together with the zeroing allocator (main.rs) and PR_SET_DUMPABLE 0, no copy of it
//! outlives the unlock in memory, on disk or in a dump.

use zeroize::Zeroize;

pub const MAX_PASSPHRASE_BYTES: usize = 512;

pub struct Secret {
    bytes: Vec<u8>,
    locked: bool,
}

impl Secret {
    /// Takes the buffer as it is (no copy).
    pub fn new(bytes: Vec<u8>) -> Self {
        let locked = !bytes.is_empty() && {
            // SAFETY: the pointer and length describe the Vec's live buffer, which is not
            // reallocated while the Secret owns it (it is never pushed to).
            unsafe { libc::mlock(bytes.as_ptr().cast(), bytes.capacity()) == 0 }
        };
        Self { bytes, locked }
    }

    pub fn expose(&self) -> &[u8] {
        &self.bytes
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        // Zero the whole capacity, not just the length: the decoder may have over-allocated.
        self.bytes.zeroize();
        if self.locked {
            // SAFETY: the same live buffer that was locked in `new`.
            unsafe { libc::munlock(self.bytes.as_ptr().cast(), self.bytes.capacity()) };
        }
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}
