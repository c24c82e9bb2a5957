//! A global allocator that zeroes every block before it is freed, for vaultd and vaultctl: the
//! buffers a passphrase passes through (the request, the protobuf encoding, the HTTP/2 frames,
//! a terminal line as it grew) keep no copy of it once they are freed.
//!
//! ```text
//! #[global_allocator]
//! static ALLOCATOR: vault_zeroalloc::ZeroOnFree = vault_zeroalloc::ZeroOnFree;
//! ```

/// The system allocator, zeroing on free.
#[derive(Debug, Clone, Copy, Default)]
pub struct ZeroOnFree;

// SAFETY: delegates to the system allocator; `dealloc` only writes within the block it frees.
unsafe impl std::alloc::GlobalAlloc for ZeroOnFree {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed through unchanged.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: `ptr` is a live block of `layout.size()` bytes owned by the caller, which is
        // handing it back; it is zeroed, then freed. black_box keeps the zeroing from being
        // optimised away as a store to memory about to be freed.
        unsafe {
            std::ptr::write_bytes(ptr, 0, layout.size());
            std::hint::black_box(ptr);
            std::alloc::System.dealloc(ptr, layout);
        }
    }
}
