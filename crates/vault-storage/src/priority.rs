//! Key derivation at a low, but never starved, CPU priority.
//!
//! LUKS2's default PBKDF (argon2id, threads = CPUs) takes every CPU for seconds. Run at normal
//! priority it competes with the daemon's own runtime, and `vaultctl status` over SSH slows
//! down exactly while the owner is watching an unlock. So the derivation runs at SCHED_BATCH
//! (no wakeup preemption of interactive work) with a positive nice value: it yields to the
//! daemon and to interactive work, yet still gets its fair share of the CPUs. Not SCHED_IDLE:
//! that runs only when nothing else wants a CPU, and one busy `nice 19` process (a fuzzer, a
//! build) starved an unlock to 37 s, past the client's 30 s idle timeout.

/// The nice value of the key derivation's thread: low enough to yield to the daemon (nice 0
/// weighs about ten times as much), high enough never to be starved. A process already nicer
/// than this keeps its own value: going back up would need CAP_SYS_NICE.
pub const KDF_NICE: i32 = 10;

/// Run `f` on a thread of its own at SCHED_BATCH and nice [`KDF_NICE`], and wait for it. The
/// threads libcryptsetup starts for argon2 inherit both. A thread of its own, not the caller's
/// lowered and restored: the caller is a runtime's blocking thread, reused afterwards, and
/// raising a nice value back can be refused (RLIMIT_NICE).
pub fn at_kdf_priority<T: Send>(f: impl FnOnce() -> T + Send) -> std::io::Result<T> {
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name("kdf-batch".into())
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

/// A thread's scheduling, as the kernel reports it (for tests and diagnostics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadPriority {
    /// The policy (`libc::SCHED_OTHER`, `libc::SCHED_BATCH`, ...).
    pub policy: i32,
    /// The nice value, -20..=19.
    pub nice: i32,
}

/// The calling thread's policy and nice value.
pub fn this_thread_priority() -> std::io::Result<ThreadPriority> {
    // SAFETY: pid 0 is the calling thread; no pointers are passed.
    let policy = unsafe { libc::sched_getscheduler(0) };
    if policy < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let tid = this_tid();
    // getpriority may rightly return -1, so errno tells failure apart: cleared first.
    // SAFETY: __errno_location returns this thread's errno slot, valid for the thread's life.
    unsafe { *libc::__errno_location() = 0 };
    // SAFETY: PRIO_PROCESS with a thread id reads that one thread's nice value; no pointers.
    let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, tid) };
    let err = std::io::Error::last_os_error();
    if nice == -1 && err.raw_os_error() != Some(0) {
        return Err(err);
    }
    Ok(ThreadPriority { policy, nice })
}

fn this_tid() -> libc::id_t {
    // SAFETY: gettid has no preconditions and cannot fail.
    let tid = unsafe { libc::gettid() };
    libc::id_t::try_from(tid).unwrap_or(0)
}

/// Failure of either call leaves this thread as it was: slower to yield, but the unlock still
/// works, which matters more than its priority.
fn lower_this_thread() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param for SCHED_BATCH (whose
    // priority must be 0).
    let _ = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &raw const param) };
    let current = this_thread_priority().map_or(0, |p| p.nice);
    if current < KDF_NICE {
        // setpriority(PRIO_PROCESS, tid) on Linux sets this one thread's nice value, not the
        // process's: the daemon's other threads keep theirs.
        // SAFETY: a thread id of this process and a nice value in range; no pointers.
        let _ = unsafe { libc::setpriority(libc::PRIO_PROCESS, this_tid(), KDF_NICE) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_work_runs_at_batch_priority_with_a_positive_nice_and_the_caller_is_left_as_it_was() {
        let before = this_thread_priority().expect("own priority");
        let secret = [7u8; 4];
        let (during, sum) = at_kdf_priority(|| {
            (
                this_thread_priority().expect("the thread's priority"),
                secret.iter().map(|b| u32::from(*b)).sum::<u32>(),
            )
        })
        .expect("a thread");
        assert_eq!(
            during.policy,
            libc::SCHED_BATCH,
            "the derivation's thread is at SCHED_BATCH, never SCHED_IDLE"
        );
        assert!(
            during.nice >= KDF_NICE,
            "the derivation's thread is niced: {during:?}"
        );
        assert_eq!(sum, 28, "borrowed data reaches it");
        assert_eq!(this_thread_priority().expect("own priority"), before);
    }

    #[test]
    fn threads_the_derivation_starts_inherit_its_priority() {
        // libcryptsetup's argon2 threads are started from the derivation's thread.
        let child = at_kdf_priority(|| {
            std::thread::spawn(|| this_thread_priority().expect("the child's priority"))
                .join()
                .expect("the child")
        })
        .expect("a thread");
        assert_eq!(child.policy, libc::SCHED_BATCH);
        assert!(child.nice >= KDF_NICE, "{child:?}");
    }
}
