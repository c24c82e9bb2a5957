//! Key derivation at the lowest CPU priority.
//!
//! LUKS2's default PBKDF (argon2id, threads = CPUs) takes every CPU for seconds. Run at normal
//! priority it competes with the daemon's own runtime, and `vaultctl status` over SSH slows
//! down exactly while the owner is watching an unlock. SCHED_IDLE yields to everything else.

/// Run `f` on a thread of its own at SCHED_IDLE, and wait for it. The threads libcryptsetup
/// starts for argon2 inherit the policy. A thread of its own, not the caller's lowered and
/// restored: the caller is a runtime's blocking thread, reused afterwards, and going back from
/// SCHED_IDLE can be refused (RLIMIT_NICE).
pub fn at_idle_priority<T: Send>(f: impl FnOnce() -> T + Send) -> std::io::Result<T> {
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name("kdf-idle".into())
            .spawn_scoped(scope, || {
                lower_this_thread();
                f()
            })?;
        match handle.join() {
            Ok(out) => Ok(out),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

fn lower_this_thread() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param for SCHED_IDLE (whose
    // priority must be 0). Failure leaves the policy as it was, which is harmless.
    let _ = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &raw const param) };
}

/// Whether the calling thread runs at SCHED_IDLE (for tests).
pub fn this_thread_is_idle() -> bool {
    // SAFETY: pid 0 is the calling thread; no pointers are passed.
    unsafe { libc::sched_getscheduler(0) == libc::SCHED_IDLE }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_work_runs_at_idle_priority_and_the_caller_is_left_as_it_was() {
        assert!(!this_thread_is_idle());
        let secret = [7u8; 4];
        let (idle, sum) = at_idle_priority(|| {
            (
                this_thread_is_idle(),
                secret.iter().map(|b| u32::from(*b)).sum::<u32>(),
            )
        })
        .expect("a thread");
        assert!(idle, "the derivation's thread is at SCHED_IDLE");
        assert_eq!(sum, 28, "borrowed data reaches it");
        assert!(!this_thread_is_idle());
    }
}
