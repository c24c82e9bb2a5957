//! The passphrase while the daemon holds it: zeroised when dropped, locked against swap, never
//! printed. Together with the zeroing allocator (main.rs) and PR_SET_DUMPABLE 0, no copy of it
//! outlives the unlock in memory, on disk or in a dump.
//!
//! Each Secret lives on whole pages of its own. mlock, munlock and madvise act on pages, and
//! locks do not count: a munlock unlocks the page for everyone on it. On pages shared with other
//! allocations, dropping one Secret would unlock another's bytes; on pages of its own, a Secret
//! unlocks only itself.

use std::alloc::Layout;
use std::ptr::NonNull;

use zeroize::Zeroize;

pub struct Secret {
    /// Page-aligned, a whole number of pages, nothing else on them.
    pages: NonNull<u8>,
    layout: Layout,
    len: usize,
    locked: bool,
}

// SAFETY: a Secret owns its pages alone (like a Box<[u8]>); nothing else points into them.
unsafe impl Send for Secret {}
// SAFETY: shared access is read-only (`expose` hands out `&[u8]`).
unsafe impl Sync for Secret {}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(page)
        .ok()
        .filter(|p| p.is_power_of_two())
        .unwrap_or(4096)
}

impl Secret {
    /// Moves `bytes` onto pages of its own, locked and excluded from dumps, and zeroes the
    /// buffer they came in (its whole capacity).
    pub fn new(mut bytes: Vec<u8>) -> Self {
        let page = page_size();
        let size = bytes.len().max(1).div_ceil(page).saturating_mul(page);
        let layout = match Layout::from_size_align(size, page) {
            Ok(layout) => layout,
            // Only a length near usize::MAX gets here, which no Vec has.
            Err(_) => std::alloc::handle_alloc_error(Layout::new::<u8>()),
        };
        // SAFETY: `layout` has a non-zero size.
        let raw = unsafe { std::alloc::alloc_zeroed(layout) };
        let Some(pages) = NonNull::new(raw) else {
            std::alloc::handle_alloc_error(layout);
        };
        // SAFETY: `pages` is a fresh allocation of `size` bytes, page-aligned, whole pages; it
        // is locked as a whole and marked as a whole (nothing else shares these pages).
        let (locked, lock_error) = unsafe {
            let locked = libc::mlock(pages.as_ptr().cast(), size) == 0;
            // Taken before madvise can overwrite errno.
            let lock_error = std::io::Error::last_os_error();
            libc::madvise(pages.as_ptr().cast(), size, libc::MADV_DONTDUMP);
            (locked, lock_error)
        };
        if !locked {
            // Said, not fatal: the unit locks within LimitMEMLOCK= and holds no CAP_IPC_LOCK,
            // so a limit set too low by a drop-in shows here (the guest checks it never does).
            let error = lock_error;
            tracing::warn!(
                %error,
                "the passphrase's buffer could not be locked against swap ({size} bytes; LimitMEMLOCK= too low?)"
            );
        }
        // SAFETY: `bytes.len() <= size`; the source and the fresh allocation do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), pages.as_ptr(), bytes.len());
        }
        let len = bytes.len();
        // The whole capacity: the decoder may have over-allocated.
        bytes.zeroize();
        Self {
            pages,
            layout,
            len,
            locked,
        }
    }

    pub fn expose(&self) -> &[u8] {
        // SAFETY: the first `len` bytes of the allocation were written in `new`, and it lives as
        // long as `self`.
        unsafe { std::slice::from_raw_parts(self.pages.as_ptr(), self.len) }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The address range of the pages it owns.
    #[cfg(test)]
    fn pages(&self) -> std::ops::Range<usize> {
        let start = self.pages.as_ptr() as usize;
        start..start + self.layout.size()
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        let size = self.layout.size();
        // SAFETY: the allocation of `size` bytes made in `new`, still owned by `self`.
        unsafe { std::slice::from_raw_parts_mut(self.pages.as_ptr(), size) }.zeroize();
        // SAFETY: the pages locked and marked in `new` (ours alone), then freed with the
        // layout they were allocated with.
        unsafe {
            if self.locked {
                libc::munlock(self.pages.as_ptr().cast(), size);
            }
            libc::madvise(self.pages.as_ptr().cast(), size, libc::MADV_DODUMP);
            std::alloc::dealloc(self.pages.as_ptr(), self.layout);
        }
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_secret_has_whole_pages_of_its_own() {
        let page = page_size();
        let a = Secret::new(b"first".to_vec());
        let b = Secret::new(b"second".to_vec());
        let big = Secret::new(vec![7; page + 1]);
        for s in [&a, &b, &big] {
            let r = s.pages();
            assert_eq!(r.start % page, 0, "page-aligned");
            assert_eq!((r.end - r.start) % page, 0, "whole pages");
        }
        assert_eq!(big.pages().len(), 2 * page);
        let disjoint = |x: &Secret, y: &Secret| {
            x.pages().end <= y.pages().start || y.pages().end <= x.pages().start
        };
        assert!(disjoint(&a, &b) && disjoint(&a, &big) && disjoint(&b, &big));
        // So dropping one unlocks only its own pages.
        drop(a);
        assert_eq!(b.expose(), b"second");
        assert_eq!(big.expose().len(), page + 1);
    }

    #[test]
    fn empty_and_debug() {
        let empty = Secret::new(Vec::new());
        assert!(empty.is_empty());
        assert_eq!(empty.expose(), b"");
        let s = Secret::new(b"hunter2".to_vec());
        assert_eq!(s.len(), 7);
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
    }
}
