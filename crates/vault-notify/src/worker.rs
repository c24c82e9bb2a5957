//! The sender task: the supervisor only enqueues (a bounded queue, `try_send`: it never
//! waits); this task de-duplicates, filters per channel, delivers, spools what could not be
//! delivered and retries it with back-off, and appends history records.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::channel::{DeliveryError, Target, deliver};
use crate::notice::{Notice, Severity};
use crate::policy::{ChannelGate, Dedup, Verdict, retry_after};
use crate::record::{History, Record};
use crate::spool::{Spool, Spooled};

/// One configured channel.
#[derive(Debug, Clone)]
pub struct ChannelSettings {
    pub target: Target,
    pub min_severity: Severity,
    pub per_hour: u32,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub channels: Vec<ChannelSettings>,
    pub dedup_secs: u64,
    pub retry_max: Duration,
    /// Each HTTP delivery's limit.
    pub http_timeout: Duration,
    pub state_dir: PathBuf,
    pub history: History,
    /// This host's name, in every notice.
    pub host: String,
}

/// What the supervisor sends.
#[derive(Debug)]
enum Item {
    Notice(u64, Box<Notice>),
    Record(Box<Record>),
}

/// The supervisor's side: enqueue, never wait (but for [`Notifier::delivered`], which a
/// power-off step awaits off the supervisor's loop).
#[derive(Debug, Clone)]
pub struct Notifier {
    tx: Option<mpsc::Sender<Item>>,
    processed: watch::Receiver<u64>,
    seq: Arc<AtomicU64>,
    prefix: String,
}

/// How many notices and records may wait for the sender task.
const QUEUE: usize = 1024;

impl Notifier {
    /// One that drops everything (no channel and no history: tests of other parts).
    pub fn off() -> Self {
        let (_, processed) = watch::channel(0);
        Self {
            tx: None,
            processed,
            seq: Arc::new(AtomicU64::new(0)),
            prefix: String::new(),
        }
    }

    /// Enqueue a notice; returns its sequence number (for [`Notifier::delivered`]).
    pub fn notice(&self, mut notice: Notice) -> u64 {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        notice.id = format!("{}-{seq}", self.prefix);
        if notice.at_unix == 0 {
            notice.at_unix = unix_now();
        }
        if let Some(tx) = &self.tx
            && tx.try_send(Item::Notice(seq, Box::new(notice))).is_err()
        {
            tracing::warn!("the notice queue is full: a notice was dropped");
        }
        seq
    }

    pub fn record(&self, record: Record) {
        if let Some(tx) = &self.tx
            && tx.try_send(Item::Record(Box::new(record))).is_err()
        {
            tracing::warn!("the notice queue is full: a history record was dropped");
        }
    }

    /// Wait until the notice `seq` was tried on every channel (delivered, or spooled for a
    /// retry), at most `within`. True if it was.
    pub async fn delivered(&self, seq: u64, within: Duration) -> bool {
        if self.tx.is_none() {
            return true;
        }
        let mut processed = self.processed.clone();
        tokio::time::timeout(within, processed.wait_for(|done| *done >= seq))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// The newest history record of each kind, for status.
pub type LastRecords = watch::Receiver<Arc<BTreeMap<String, Record>>>;

/// Start the sender task. It ends when every [`Notifier`] is dropped, having saved the spool.
pub fn spawn(settings: Settings) -> (Notifier, LastRecords, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let (processed_tx, processed) = watch::channel(0);
    let history = settings.history.clone();
    let (last_tx, last) = watch::channel(Arc::new(history.last_of_each()));
    let notifier = Notifier {
        tx: Some(tx),
        processed,
        seq: Arc::new(AtomicU64::new(0)),
        prefix: unix_now().to_string(),
    };
    let worker = Worker {
        gates: settings
            .channels
            .iter()
            .map(|c| ChannelGate::new(c.min_severity, c.per_hour))
            .collect(),
        spool: Spool::load(&settings.state_dir),
        dedup: Dedup::new(settings.dedup_secs),
        settings,
        processed: processed_tx,
        last: last_tx,
    };
    let handle = tokio::spawn(worker.run(rx));
    (notifier, last, handle)
}

struct Worker {
    settings: Settings,
    gates: Vec<ChannelGate>,
    spool: Spool,
    dedup: Dedup,
    processed: watch::Sender<u64>,
    last: watch::Sender<Arc<BTreeMap<String, Record>>>,
}

impl Worker {
    async fn run(mut self, mut rx: mpsc::Receiver<Item>) {
        if !self.spool.entries.is_empty() {
            tracing::info!(
                "{} undelivered notices from before the restart: retrying",
                self.spool.entries.len()
            );
            for entry in &mut self.spool.entries {
                entry.next_at = 0;
            }
        }
        loop {
            let wake = [
                self.spool.next_at(),
                self.dedup.next_due().and_then(|d| i64::try_from(d).ok()),
            ]
            .into_iter()
            .flatten()
            .min();
            let sleep = wake.map(|at| {
                let secs = u64::try_from(at.saturating_sub(unix_now())).unwrap_or(0);
                tokio::time::Instant::now() + Duration::from_secs(secs)
            });
            tokio::select! {
                item = rx.recv() => match item {
                    Some(Item::Notice(seq, notice)) => {
                        self.notice(*notice).await;
                        self.processed.send_replace(seq);
                    }
                    Some(Item::Record(record)) => self.record(*record),
                    None => break,
                },
                () = async { tokio::time::sleep_until(sleep.expect("guarded")).await }, if sleep.is_some() => {
                    self.retry_due().await;
                    let now = now_secs();
                    for held in self.dedup.due(now) {
                        self.send(held).await;
                    }
                }
            }
        }
        if let Err(error) = self.spool.save() {
            tracing::error!(%error, "cannot save the undelivered notices");
        }
    }

    fn record(&mut self, record: Record) {
        if let Err(error) = self.settings.history.append(&record) {
            tracing::error!(%error, "a history record was lost");
        }
        self.last.send_modify(|last| {
            Arc::make_mut(last).insert(record.kind.clone(), record);
        });
    }

    async fn notice(&mut self, mut notice: Notice) {
        notice.host = self.settings.host.clone();
        if let Some(notice) = self.dedup.offer(notice, now_secs()) {
            self.send(notice).await;
        }
    }

    /// Through each channel's gate, then out on all of them at once.
    async fn send(&mut self, notice: Notice) {
        let now = now_secs();
        let mut deliveries = JoinSet::new();
        for (i, channel) in self.settings.channels.iter().enumerate() {
            let mut notice = notice.clone();
            match self.gates[i].offer(notice.severity, now) {
                Verdict::BelowMinimum => continue,
                Verdict::RateLimited => {
                    tracing::info!(
                        channel = channel.target.name(),
                        kind = notice.kind.name(),
                        "notice dropped by the rate limit"
                    );
                    continue;
                }
                Verdict::Send { suppressed } if suppressed > 0 => {
                    notice.message = format!(
                        "{} (+{suppressed} notices dropped by the rate limit)",
                        notice.message
                    );
                }
                Verdict::Send { .. } => {}
            }
            let target = channel.target.clone();
            let timeout = self.settings.http_timeout;
            deliveries.spawn(async move {
                let result = deliver(&target, &notice, timeout).await;
                (i, notice, result)
            });
        }
        let mut changed = false;
        let mut back = Vec::new();
        while let Some(done) = deliveries.join_next().await {
            let Ok((i, notice, result)) = done else {
                continue;
            };
            if result.is_ok() {
                back.push(self.settings.channels[i].target.name());
            }
            changed |= self.settle(i, notice, 0, result);
        }
        // A channel that took a notice is up again: what waits for it goes now, not at the
        // end of its back-off.
        let mut now_due = false;
        for entry in &mut self.spool.entries {
            if back.contains(&entry.channel.as_str()) {
                entry.next_at = 0;
                now_due = true;
            }
        }
        if now_due {
            self.retry_due().await;
        } else if changed {
            self.save_spool();
        }
    }

    /// Handle a delivery's result: spool a failure worth retrying. True if the spool changed.
    fn settle(
        &mut self,
        i: usize,
        notice: Notice,
        attempts: u32,
        result: Result<(), DeliveryError>,
    ) -> bool {
        let channel = self.settings.channels[i].target.name();
        match result {
            Ok(()) => false,
            Err(DeliveryError::Permanent(why)) => {
                tracing::error!(
                    channel,
                    kind = notice.kind.name(),
                    "a notice was refused and is dropped: {why}"
                );
                false
            }
            Err(DeliveryError::Retry(why)) => {
                let attempts = attempts + 1;
                let wait = retry_after(attempts - 1, self.settings.retry_max);
                tracing::warn!(
                    channel,
                    kind = notice.kind.name(),
                    attempts,
                    "a notice could not be delivered, kept for a retry in {} s: {why}",
                    wait.as_secs()
                );
                self.spool.push(Spooled {
                    channel: channel.to_owned(),
                    attempts,
                    next_at: unix_now()
                        .saturating_add(i64::try_from(wait.as_secs()).unwrap_or(i64::MAX)),
                    notice,
                });
                true
            }
        }
    }

    /// Try again what is due in the spool (one pass: a failure is pushed back with its wait).
    async fn retry_due(&mut self) {
        let now = unix_now();
        let (due, waiting): (Vec<Spooled>, Vec<Spooled>) = std::mem::take(&mut self.spool.entries)
            .into_iter()
            .partition(|e| e.next_at <= now);
        self.spool.entries = waiting;
        if due.is_empty() {
            return;
        }
        for entry in due {
            let Some(i) = self
                .settings
                .channels
                .iter()
                .position(|c| c.target.name() == entry.channel)
            else {
                tracing::warn!(
                    channel = entry.channel,
                    "an undelivered notice for a channel no longer configured is dropped"
                );
                continue;
            };
            let target = self.settings.channels[i].target.clone();
            let result = deliver(&target, &entry.notice, self.settings.http_timeout).await;
            if result.is_ok() {
                tracing::info!(
                    channel = entry.channel,
                    kind = entry.notice.kind.name(),
                    attempts = entry.attempts,
                    "a kept notice was delivered"
                );
            }
            self.settle(i, entry.notice, entry.attempts, result);
        }
        self.save_spool();
    }

    fn save_spool(&self) {
        if let Err(error) = self.spool.save() {
            tracing::error!(%error, "cannot save the undelivered notices: they will not survive a restart");
        }
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn now_secs() -> u64 {
    u64::try_from(unix_now()).unwrap_or(0)
}
