//! The simulated queues: BullMQ's counts over time, and the state the connections share.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::dialect::{Correlation, Dialect};

pub(crate) fn to_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// One simulated BullMQ queue.
#[derive(Debug)]
pub(crate) struct Queue {
    pub(crate) name: String,
    pub(crate) paused: bool,
    /// When each active job finishes.
    pub(crate) active: Vec<Instant>,
    pub(crate) waiting: u64,
    pub(crate) completed: u64,
    pub(crate) failed: u64,
    /// The earliest moment the next waiting job may start (the last finish, resume or enqueue).
    pub(crate) ready_at: Instant,
}

impl Queue {
    /// Brings the queue forward to `now`: finishes due jobs and runs waiting ones, one at a time.
    pub(crate) fn advance(&mut self, now: Instant, job: Duration) {
        let before = self.active.len();
        let mut last_finish: Option<Instant> = None;
        self.active.retain(|&done| {
            if done <= now {
                last_finish = Some(last_finish.map_or(done, |l| l.max(done)));
                false
            } else {
                true
            }
        });
        self.completed += to_u64(before - self.active.len());
        if let Some(last) = last_finish {
            self.ready_at = self.ready_at.max(last);
        }
        if self.paused || !self.active.is_empty() || self.waiting == 0 {
            return;
        }
        // Jobs that started and finished back to back since ready_at, then the one running now.
        let runs = if job.is_zero() {
            self.waiting
        } else {
            let elapsed = now.saturating_duration_since(self.ready_at);
            u64::try_from(elapsed.as_nanos() / job.as_nanos())
                .unwrap_or(u64::MAX)
                .min(self.waiting)
        };
        self.waiting -= runs;
        self.completed += runs;
        self.ready_at += job.saturating_mul(u32::try_from(runs).unwrap_or(u32::MAX));
        if self.waiting > 0 {
            self.waiting -= 1;
            self.active.push(self.ready_at + job);
        }
    }

    /// `QueueStatisticsDto`.
    pub(crate) fn statistics(&self) -> Value {
        let (waiting, paused) = if self.paused {
            (0, self.waiting)
        } else {
            (self.waiting, 0)
        };
        json!({
            "active": self.active.len(),
            "completed": self.completed,
            "delayed": 0,
            "failed": self.failed,
            "paused": paused,
            "waiting": waiting,
        })
    }

    /// `QueueResponseDto`.
    pub(crate) fn dto(&self) -> Value {
        json!({
            "name": self.name,
            "isPaused": self.paused,
            "statistics": self.statistics(),
        })
    }

    /// `QueueResponseLegacyDto`.
    pub(crate) fn legacy_dto(&self) -> Value {
        json!({
            "jobCounts": self.statistics(),
            "queueStatus": {
                "isActive": !self.active.is_empty(),
                "isPaused": self.paused,
            },
        })
    }
}

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) queues: Vec<Queue>,
    pub(crate) job: Duration,
}

impl State {
    pub(crate) fn advance_all(&mut self, now: Instant) {
        let job = self.job;
        for queue in &mut self.queues {
            queue.advance(now, job);
        }
    }

    /// Changes one queue as of `now` (brought up to date before and after) and returns it.
    pub(crate) fn change(
        &mut self,
        name: &str,
        now: Instant,
        f: impl FnOnce(&mut Queue),
    ) -> &Queue {
        let job = self.job;
        let queue = self
            .queues
            .iter_mut()
            .find(|q| q.name == name)
            .expect("queue names are checked before a change");
        queue.advance(now, job);
        f(queue);
        queue.ready_at = queue.ready_at.max(now);
        queue.advance(now, job);
        queue
    }

    pub(crate) fn any_running(&self) -> bool {
        self.queues.iter().any(|q| !q.paused)
    }
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) state: Mutex<State>,
    pub(crate) api_key: String,
    pub(crate) version: (u64, u64, u64),
    pub(crate) dialect: Dialect,
    pub(crate) correlation: Correlation,
}

impl Shared {
    /// The state, also after a panic in another thread (the simulation stays usable).
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn has_queues_api(&self) -> bool {
        self.version >= (2, 4, 0)
    }

    pub(crate) fn queue_names(&self) -> Vec<String> {
        self.state().queues.iter().map(|q| q.name.clone()).collect()
    }
}
