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
        if !bytes.is_empty() {
            exclude_from_dumps(&bytes);
        }
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

/// MADV_DONTDUMP on the pages holding the buffer: belt and braces with PR_SET_DUMPABLE 0, in
/// case someone turns dumps back on. madvise works on whole pages; marking a neighbour's bytes
/// too only keeps them out of a dump.
fn exclude_from_dumps(bytes: &Vec<u8>) {
    // SAFETY: sysconf has no preconditions.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    let start = bytes.as_ptr() as usize & !(page - 1);
    let end = (bytes.as_ptr() as usize + bytes.capacity()).div_ceil(page) * page;
    // SAFETY: the range covers whole pages of the live heap mapping that holds the buffer;
    // MADV_DONTDUMP changes only what a core dump includes, never the memory's contents.
    unsafe {
        libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTDUMP);
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
