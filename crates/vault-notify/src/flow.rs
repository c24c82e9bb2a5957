//! Following the core's flows from the outside, for the history and the notices: when an
//! unlock, a start or a drain begins and ends, who asked and from where, each step's timing and
//! result, and how it ended. Pure: the supervisor tells it what the core did (steps run and
//! done, the status after each message) with the time.

use crate::notice::StepTiming;

/// The core's status as far as flows go.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    /// `LOCKED`, `MOUNTED`, `RUNNING`, `DRAINING`.
    pub state: &'a str,
    pub draining: bool,
    /// No step under way (the power-off after a drain counts as none: the drain is over).
    pub idle: bool,
    /// Why the state was entered, in words.
    pub reason: &'a str,
    /// The failure the reason records, if the last flow failed.
    pub failed: Option<&'a str>,
}

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepEnd {
    Ok,
    WrongPassphrase,
    Interrupted,
    Failed(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowKind {
    /// LOCKED → MOUNTED (→ RUNNING): begins with the passphrase check.
    Unlock,
    /// MOUNTED → RUNNING: `start`, or an unlock of a vault already open.
    Start,
    Drain,
}

impl FlowKind {
    /// The history's kind.
    pub fn name(self) -> &'static str {
        match self {
            FlowKind::Unlock => "unlock",
            FlowKind::Start => "start",
            FlowKind::Drain => "drain",
        }
    }
}

/// How a flow ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// Where it was going: the state it reached.
    Reached,
    WrongPassphrase,
    /// A drain was wanted while it ran (an unlock or a start).
    Interrupted,
    Failed(String),
}

/// A flow that ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub kind: FlowKind,
    pub started_unix: i64,
    pub ended_unix: i64,
    pub millis: u64,
    /// Why it began: the reason the core gave (a command and its caller, the power, SIGTERM).
    pub trigger: String,
    /// `uid N`, for a flow a client asked for.
    pub who: String,
    /// `local`, `over SSH from 10.8.0.2`, … for a flow a client asked for.
    pub origin: String,
    pub steps: Vec<StepTiming>,
    pub end: End,
    /// The state it left the vault in.
    pub state: String,
}

impl Finished {
    /// `ok`, `wrong-passphrase`, `interrupted` or `failed`.
    pub fn outcome(&self) -> &'static str {
        match self.end {
            End::Reached => "ok",
            End::WrongPassphrase => "wrong-passphrase",
            End::Interrupted => "interrupted",
            End::Failed(_) => "failed",
        }
    }
}

/// What a change the tracker was told of means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowEvent {
    DrainStarted {
        trigger: String,
        who: String,
        origin: String,
    },
    Ended(Finished),
}

#[derive(Debug, Clone)]
struct Open {
    kind: FlowKind,
    started_ms: u64,
    started_unix: i64,
    trigger: String,
    who: String,
    origin: String,
    steps: Vec<StepTiming>,
    running: Option<(String, u64)>,
    wrong_passphrase: bool,
}

/// The flow under way, if any.
#[derive(Debug, Clone, Default)]
pub struct Tracker {
    current: Option<Open>,
    /// Who asked for the flow that begins next, and from where.
    caller: Option<(String, String)>,
}

/// A flow never holds more steps than this (a drain has six, an unlock with a rollback eight).
const MAX_STEPS: usize = 32;

impl Tracker {
    /// The next flow was asked for by `who` from `origin` (a command was accepted).
    pub fn set_caller(&mut self, who: String, origin: String) {
        self.caller = Some((who, origin));
    }

    /// Whether a flow is under way.
    pub fn busy(&self) -> bool {
        self.current.is_some()
    }

    /// A step began; `view` is the core's status as it emitted the step.
    pub fn step_started(
        &mut self,
        now_ms: u64,
        now_unix: i64,
        step: &str,
        view: &View<'_>,
    ) -> Vec<FlowEvent> {
        let events = self.status(now_ms, now_unix, view);
        if self.current.is_none() {
            let kind = match step {
                "opening-mapping" => Some(FlowKind::Unlock),
                "checking-filesystem" | "mounting" | "starting-stack" => Some(FlowKind::Start),
                // A resume of the queues alone, the power-off after a drain: not flows of
                // their own in the history.
                _ => None,
            };
            if let Some(kind) = kind {
                self.begin(kind, now_ms, now_unix, view.reason);
            }
        }
        if let Some(open) = &mut self.current {
            open.running = Some((step.to_owned(), now_ms));
        }
        events
    }

    /// A step ended.
    pub fn step_done(&mut self, now_ms: u64, step: &str, end: StepEnd) {
        let Some(open) = &mut self.current else {
            return;
        };
        let Some((running, started)) = open.running.take_if(|(s, _)| s == step) else {
            return;
        };
        if end == StepEnd::WrongPassphrase {
            open.wrong_passphrase = true;
        }
        if open.steps.len() < MAX_STEPS {
            open.steps.push(StepTiming {
                step: running,
                millis: now_ms.saturating_sub(started),
                result: match end {
                    StepEnd::Ok => "ok".to_owned(),
                    StepEnd::WrongPassphrase => "wrong passphrase".to_owned(),
                    StepEnd::Interrupted => "interrupted".to_owned(),
                    StepEnd::Failed(why) => why,
                },
            });
        }
    }

    /// The core's status after a message: a drain begun, a flow ended.
    pub fn status(&mut self, now_ms: u64, now_unix: i64, view: &View<'_>) -> Vec<FlowEvent> {
        let mut events = Vec::new();
        if view.draining {
            if self
                .current
                .as_ref()
                .is_some_and(|o| o.kind == FlowKind::Drain)
            {
                return events;
            }
            if let Some(open) = self.current.take() {
                events.push(FlowEvent::Ended(close(
                    open,
                    End::Interrupted,
                    now_ms,
                    now_unix,
                    view.state,
                )));
            }
            self.begin(FlowKind::Drain, now_ms, now_unix, view.reason);
            let open = self.current.as_ref().expect("just begun");
            events.push(FlowEvent::DrainStarted {
                trigger: open.trigger.clone(),
                who: open.who.clone(),
                origin: open.origin.clone(),
            });
            return events;
        }
        let ends = match &self.current {
            Some(open) if open.kind == FlowKind::Drain => true,
            Some(_) => view.idle,
            None => false,
        };
        if ends && let Some(open) = self.current.take() {
            let end = if open.wrong_passphrase {
                End::WrongPassphrase
            } else if let Some(why) = view.failed {
                End::Failed(why.to_owned())
            } else {
                End::Reached
            };
            events.push(FlowEvent::Ended(close(
                open, end, now_ms, now_unix, view.state,
            )));
        }
        // A command that began no flow (a lock of a locked vault): its caller is not the next
        // flow's.
        if self.current.is_none() && view.idle {
            self.caller = None;
        }
        events
    }

    fn begin(&mut self, kind: FlowKind, now_ms: u64, now_unix: i64, reason: &str) {
        let (who, origin) = self.caller.take().unwrap_or_default();
        self.current = Some(Open {
            kind,
            started_ms: now_ms,
            started_unix: now_unix,
            trigger: reason.to_owned(),
            who,
            origin,
            steps: Vec::new(),
            running: None,
            wrong_passphrase: false,
        });
    }
}

fn close(mut open: Open, end: End, now_ms: u64, now_unix: i64, state: &str) -> Finished {
    // A step still running when its flow ends was cut short (a drain took over).
    if let Some((step, started)) = open.running.take()
        && open.steps.len() < MAX_STEPS
    {
        open.steps.push(StepTiming {
            step,
            millis: now_ms.saturating_sub(started),
            result: "interrupted".to_owned(),
        });
    }
    Finished {
        kind: open.kind,
        started_unix: open.started_unix,
        ended_unix: now_unix,
        millis: now_ms.saturating_sub(open.started_ms),
        trigger: open.trigger,
        who: open.who,
        origin: open.origin,
        steps: open.steps,
        end,
        state: state.to_owned(),
    }
}

#[cfg(test)]
mod tests;
