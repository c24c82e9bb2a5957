//! A Watch stream is authorised again while it runs: before each event it sends, and every
//! [`RECHECK`] while it is quiet. Once its caller may no longer read (removed from the reader
//! group, the group deleted or given another gid), the stream ends with PERMISSION_DENIED and
//! the refusal is audited like any other.

use std::future::Future;
use std::pin::Pin;
use std::sync::RwLock;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};
use tokio_stream::Stream;
use tonic::Status;

use crate::access::{AccessPolicy, Need};
use crate::audit;
use crate::peer::PeerCredentials;

/// How long a quiet Watch goes without its caller being authorised again.
pub const RECHECK: Duration = Duration::from_secs(2);

/// Authorise `peer` for `need` under the current policy, as a call would be: a refusal is
/// audited and becomes PERMISSION_DENIED.
pub fn recheck(
    access: &RwLock<AccessPolicy>,
    peer: &PeerCredentials,
    call: &str,
    need: Need,
) -> Result<(), Status> {
    let policy = access.read().map(|p| p.clone()).unwrap_or_default();
    policy.authorize(peer, need).map_err(|denied| {
        audit::control_denied(peer, call, denied.why);
        Status::permission_denied(format!("{denied}; the {call} ends"))
    })
}

type Check = Box<dyn FnMut() -> Result<(), Status> + Send>;

/// `inner`, ended by the first failed `check`: with that error as its last item.
pub struct Reauthorized<S> {
    inner: S,
    check: Check,
    every: Duration,
    tick: Pin<Box<Sleep>>,
    done: bool,
}

impl<S> std::fmt::Debug for Reauthorized<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reauthorized")
            .field("every", &self.every)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<S> Reauthorized<S> {
    pub fn new(inner: S, every: Duration, check: Check) -> Self {
        Self {
            inner,
            check,
            every,
            tick: Box::pin(tokio::time::sleep(every)),
            done: false,
        }
    }

    /// The check; on a refusal the stream is done and the refusal is its last item.
    fn verdict<T>(&mut self) -> Option<Result<T, Status>> {
        let denied = (self.check)().err()?;
        self.done = true;
        Some(Err(denied))
    }
}

impl<S, T> Stream for Reauthorized<S>
where
    S: Stream<Item = Result<T, Status>> + Unpin,
{
    type Item = Result<T, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(item)) => {
                if let Some(denied) = this.verdict() {
                    return Poll::Ready(Some(denied));
                }
                // Just checked: the quiet period starts again.
                let next = Instant::now() + this.every;
                this.tick.as_mut().reset(next);
                return Poll::Ready(Some(item));
            }
            Poll::Ready(None) => {
                this.done = true;
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }
        // Quiet: look again when the period is over (and arm the timer for the next one).
        while this.tick.as_mut().poll(cx).is_ready() {
            if let Some(denied) = this.verdict() {
                return Poll::Ready(Some(denied));
            }
            let next = Instant::now() + this.every;
            this.tick.as_mut().reset(next);
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use tokio_stream::StreamExt;

    use super::*;

    /// Short, so the tests run on real time (no paused clock in this build).
    const EVERY: Duration = Duration::from_millis(50);

    fn allowed_while(flag: Arc<AtomicBool>, checks: Arc<AtomicUsize>) -> Check {
        Box::new(move || {
            checks.fetch_add(1, Ordering::SeqCst);
            if flag.load(Ordering::SeqCst) {
                Ok(())
            } else {
                Err(Status::permission_denied("no longer"))
            }
        })
    }

    #[tokio::test]
    async fn a_quiet_stream_ends_with_permission_denied_once_the_caller_loses_access() {
        let allowed = Arc::new(AtomicBool::new(true));
        let checks = Arc::new(AtomicUsize::new(0));
        // Never sends anything after its first item.
        let inner = tokio_stream::once(Ok::<_, Status>(1)).chain(tokio_stream::pending());
        let mut stream = Reauthorized::new(
            Box::pin(inner),
            EVERY,
            allowed_while(allowed.clone(), checks.clone()),
        );
        assert_eq!(stream.next().await.map(|r| r.ok()), Some(Some(1)));
        // Still allowed: the periodic checks pass and nothing is sent.
        let quiet = tokio::time::timeout(EVERY * 3, stream.next()).await;
        assert!(quiet.is_err(), "nothing to send");
        assert!(checks.load(Ordering::SeqCst) >= 2, "checked while quiet");
        allowed.store(false, Ordering::SeqCst);
        let started = Instant::now();
        let end = stream.next().await.expect("the refusal");
        assert_eq!(
            end.expect_err("denied").code(),
            tonic::Code::PermissionDenied
        );
        assert!(started.elapsed() < EVERY * 4, "within about one period");
        assert!(stream.next().await.is_none(), "and then nothing");
    }

    #[tokio::test]
    async fn every_event_is_checked_before_it_is_sent() {
        let allowed = Arc::new(AtomicBool::new(true));
        let checks = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Result<u32, Status>>();
        let mut stream = Reauthorized::new(
            tokio_stream::wrappers::UnboundedReceiverStream::new(rx),
            EVERY,
            allowed_while(allowed.clone(), checks.clone()),
        );
        tx.send(Ok(1)).expect("send");
        assert_eq!(stream.next().await.map(|r| r.ok()), Some(Some(1)));
        allowed.store(false, Ordering::SeqCst);
        tx.send(Ok(2)).expect("send");
        let end = stream.next().await.expect("the refusal");
        assert!(end.is_err(), "event 2 is not sent");
        assert!(stream.next().await.is_none());
    }

    #[tokio::test]
    async fn the_end_of_the_inner_stream_ends_it() {
        let allowed = Arc::new(AtomicBool::new(true));
        let checks = Arc::new(AtomicUsize::new(0));
        let mut stream = Reauthorized::new(
            tokio_stream::iter([Ok::<_, Status>(1)]),
            EVERY,
            allowed_while(allowed, checks),
        );
        assert!(stream.next().await.is_some());
        assert!(stream.next().await.is_none());
    }
}
