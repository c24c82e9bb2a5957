//! Log lines that a local user could repeat at will (refused connections, denied calls, reads,
//! accept errors) are written once per burst: the first in full, the rest counted and summed
//! up in one line when the burst ends (nothing for [`QUIET`], or [`MAX_BURST`] after it began).
//! A flood costs the journal two lines per kind and user, not one per connection.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// A burst ends after this long without a new occurrence...
pub const QUIET: Duration = Duration::from_secs(2);
/// ...or this long after it began, so an endless flood is still reported once a minute.
pub const MAX_BURST: Duration = Duration::from_secs(60);
/// Distinct keys followed at once; past it, further uids share one key (uid [`ANY_UID`]).
const MAX_KEYS: usize = 256;
pub const ANY_UID: u32 = u32::MAX;

/// What is counted: a kind of event, by whom, for which call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    pub kind: &'static str,
    pub uid: u32,
    pub call: &'static str,
}

#[derive(Debug, Clone, Copy)]
struct Burst {
    began: Instant,
    last: Instant,
    more: u64,
}

impl Burst {
    fn ends(&self) -> Instant {
        (self.last + QUIET).min(self.began + MAX_BURST)
    }
}

/// A burst that ended: `more` occurrences after the first, over `lasted`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    pub key: Key,
    pub more: u64,
    pub lasted: Duration,
}

#[derive(Debug, Default)]
pub struct Bursts {
    open: Mutex<HashMap<Key, Burst>>,
    began: Notify,
}

impl Bursts {
    /// Count one occurrence at `now`. True if it begins a burst: the caller logs it in full.
    pub fn hit(&self, mut key: Key, now: Instant) -> bool {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.len() >= MAX_KEYS && !open.contains_key(&key) {
            key.uid = ANY_UID;
        }
        match open.get_mut(&key) {
            Some(burst) => {
                burst.last = now;
                burst.more += 1;
                false
            }
            None => {
                open.insert(
                    key,
                    Burst {
                        began: now,
                        last: now,
                        more: 0,
                    },
                );
                drop(open);
                self.began.notify_one();
                true
            }
        }
    }

    /// When the next open burst ends, if any is open.
    pub fn next_end(&self) -> Option<Instant> {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.values().map(Burst::ends).min()
    }

    /// The bursts that have ended by `now`, closed.
    pub fn take_ended(&self, now: Instant) -> Vec<Ended> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let mut ended = Vec::new();
        open.retain(|key, burst| {
            if burst.ends() > now {
                return true;
            }
            ended.push(Ended {
                key: *key,
                more: burst.more,
                lasted: burst.last - burst.began,
            });
            false
        });
        ended
    }

    /// Resolves when a new burst began (its end is a new deadline to wait for).
    pub async fn began(&self) {
        self.began.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: Key = Key {
        kind: "denied",
        uid: 1000,
        call: "Unlock",
    };

    #[test]
    fn the_first_is_logged_the_rest_are_counted_until_quiet() {
        let bursts = Bursts::default();
        let t0 = Instant::now();
        assert!(bursts.hit(KEY, t0));
        for i in 1..=1000 {
            assert!(!bursts.hit(KEY, t0 + Duration::from_millis(i)));
        }
        let other = Key { uid: 1001, ..KEY };
        assert!(bursts.hit(other, t0), "another uid is its own burst");
        let last = t0 + Duration::from_millis(1000);
        assert_eq!(bursts.next_end(), Some(t0 + QUIET));
        assert!(bursts.take_ended(last).is_empty());
        let ended = bursts.take_ended(last + QUIET);
        assert_eq!(ended.len(), 2);
        let mine = ended.iter().find(|e| e.key == KEY).expect("ended");
        assert_eq!((mine.more, mine.lasted), (1000, Duration::from_secs(1)));
        assert!(bursts.hit(KEY, last + QUIET), "a new burst");
    }

    #[test]
    fn an_endless_flood_is_reported_every_max_burst() {
        let bursts = Bursts::default();
        let t0 = Instant::now();
        bursts.hit(KEY, t0);
        let mut now = t0;
        while now < t0 + MAX_BURST {
            now += Duration::from_millis(500);
            bursts.hit(KEY, now);
        }
        assert_eq!(bursts.next_end(), Some(t0 + MAX_BURST));
        assert_eq!(bursts.take_ended(now).len(), 1);
    }

    #[test]
    fn keys_are_bounded() {
        let bursts = Bursts::default();
        let t0 = Instant::now();
        for uid in 0..u32::try_from(MAX_KEYS).expect("small") {
            assert!(bursts.hit(Key { uid, ..KEY }, t0));
        }
        assert!(bursts.hit(Key { uid: 90_000, ..KEY }, t0));
        assert!(!bursts.hit(Key { uid: 90_001, ..KEY }, t0), "shared key");
        assert_eq!(bursts.take_ended(t0 + QUIET).len(), MAX_KEYS + 1);
    }
}
