//! The unclean end in the machine: its signs (the session record found at start, the
//! filesystem's own after the open), the stricter filesystem check, the database started alone
//! and checked before the rest, and the session record kept until the checks pass.
//! The rules themselves are [`crate::unclean`]'s.

use std::collections::VecDeque;

use super::*;
use crate::unclean::{CheckFacts, OpenSession, Sign, UncleanStart, judge_checks};

/// What the core knows of the last end.
#[derive(Debug, Clone, Default)]
pub(super) struct UncleanTrack {
    /// Signs not yet answered by checks that passed.
    pub(super) signs: Vec<Sign>,
    pub(super) start: UncleanStart,
    /// What the last data check found (until the core judges it).
    pub(super) facts: Option<CheckFacts>,
}

/// The session record: written when an unlock opens the volume, removed once a lock unmounted
/// (or closed) it with nothing left to check. Found at the next start with the volume closed, the last
/// session never ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionRecord {
    /// Write it unless it is there (an older one, from a session not yet checked, stays).
    /// `unchecked`: this unlock has an unclean end to check (the database alone, the checks),
    /// so the record says so, an older one too: a restart before the checks passed must not
    /// take what runs then (the database alone) for a session that goes on.
    Opened { unchecked: bool },
    /// Write it anew: the checks passed, this session is the one to follow.
    Renewed,
    /// Remove it: the volume is closed and nothing is left to check.
    Closed,
}

impl Core {
    #[must_use]
    pub fn with_unclean_start(mut self, start: UncleanStart) -> Self {
        self.unclean.start = start;
        self
    }

    pub fn set_unclean_start(&mut self, start: UncleanStart) {
        self.unclean.start = start;
    }

    /// The signs of an unclean end not yet answered by checks that passed.
    pub fn unclean_signs(&self) -> &[Sign] {
        &self.unclean.signs
    }

    /// The session record's write (or removal) ended: a failure is an alarm until a later one
    /// succeeds, since without the record only the filesystem's own sign tells of a cut.
    pub(super) fn session_record_written(
        &mut self,
        result: Result<(), String>,
        actions: &mut Vec<Action>,
    ) {
        match result {
            Err(why) => {
                let message = format!(
                    "cannot write the session record ({why}): a power cut would be noticed only \
                     by the filesystem's own sign, and a clean end may be taken for unclean; \
                     see that vaultd's state directory is writable"
                );
                self.alarm(AlarmKind::SessionRecordUnwritable, message, actions);
            }
            Ok(()) => {
                if self
                    .active_alarms
                    .contains_key(AlarmKind::SessionRecordUnwritable.name())
                {
                    let message = "the session record is written again".to_owned();
                    self.alarm(AlarmKind::SessionRecordWritten, message, actions);
                }
            }
        }
    }

    /// The session record was found at start. Written in this boot with the volume open and
    /// nothing left to check: vaultd restarted under a session that goes on (its record is
    /// renewed once it was checked). Otherwise — the volume closed, or open since an earlier
    /// boot (a restart in the middle of the unlock after a cut), or not seen, or its checks
    /// not finished — that session never ended with a lock.
    ///
    /// A record whose checks never finished, found with some of the stack running, means
    /// vaultd died in the middle of them (the database alone, most likely): what runs is
    /// stopped, down to MOUNTED, and the next `vaultctl start` checks again. Adopting it as
    /// RUNNING would leave the checks undone and the rest of the stack never started. It is not
    /// resumed by itself: a check that kills vaultd would then loop under systemd's restarts.
    pub(super) fn session_record_found(
        &mut self,
        now: Millis,
        session: OpenSession,
        this_boot: bool,
        actions: &mut Vec<Action>,
    ) {
        let checks_pending = session.checks_pending;
        let goes_on = this_boot
            && !checks_pending
            && self.seen.is_some_and(|s| s.mapping == MappingSeen::Open);
        if goes_on {
            return;
        }
        self.unclean_signs_seen(vec![Sign::SessionNeverLocked(session)], actions);
        if checks_pending && self.flow.is_none() && self.status.state == State::Running {
            let reason = Reason::Reconciled {
                what: "at start, the checks after an unclean end had not finished: what runs \
                       is stopped; `vaultctl start` checks again"
                    .into(),
            };
            let deadline = now.saturating_add(self.policy.max_drain);
            self.begin_drain(DrainTarget::Mounted, reason, deadline, false, now, actions);
        }
    }

    /// New signs of an unclean end: raise (or widen) the alarm, and if an unlock is under way
    /// make its remaining steps the stricter ones.
    pub(super) fn unclean_signs_seen(&mut self, signs: Vec<Sign>, actions: &mut Vec<Action>) {
        let before = self.unclean.signs.len();
        for sign in signs {
            if !self.unclean.signs.contains(&sign) {
                self.unclean.signs.push(sign);
            }
        }
        if self.unclean.signs.len() == before {
            return;
        }
        let listed: Vec<String> = self.unclean.signs.iter().map(ToString::to_string).collect();
        let message = format!(
            "the vault did not end cleanly: {}; the next start checks the filesystem fully and starts the database alone first",
            listed.join("; ")
        );
        self.alarm(AlarmKind::UncleanEnd, message, actions);
        let fs = self.filesystem_steps();
        let start = self.start_steps();
        if let Some(flow) = &mut self.flow
            && matches!(flow.kind, FlowKind::Unlock | FlowKind::Start)
        {
            let mut remaining = VecDeque::new();
            let mut starts = false;
            for step in flow.remaining.drain(..) {
                match step {
                    Step::CheckFilesystem => remaining.extend(fs.iter().copied()),
                    // The start, planned anew below: the ordinary one, or the strict one of an
                    // earlier sign (which would otherwise run twice).
                    Step::StartStack
                    | Step::ResumeQueues
                    | Step::StartDatabase
                    | Step::CheckData
                    | Step::StopStack => starts = true,
                    other => remaining.push_back(other),
                }
            }
            if starts {
                remaining.extend(start);
            }
            flow.remaining = remaining;
        }
    }

    /// The filesystem check before the mount: the configured one, or after an unclean end the
    /// journal replayed first and a forced full check.
    pub(super) fn filesystem_steps(&self) -> Vec<Step> {
        if self.unclean.signs.is_empty() {
            vec![Step::CheckFilesystem]
        } else {
            vec![Step::ReplayJournal, Step::CheckFilesystemFully]
        }
    }

    /// The start of the stack: after an unclean end the database alone first and the checks,
    /// then the rest (or, asked to, the database stopped again to wait for `vaultctl start`).
    pub(super) fn start_steps(&self) -> Vec<Step> {
        if self.unclean.signs.is_empty() {
            return vec![Step::StartStack, Step::ResumeQueues];
        }
        let mut steps = vec![Step::StartDatabase, Step::CheckData];
        match self.unclean.start {
            UncleanStart::Auto => steps.extend([Step::StartStack, Step::ResumeQueues]),
            UncleanStart::Ask => steps.push(Step::StopStack),
        }
        steps
    }

    pub(super) fn data_checked(&mut self, facts: CheckFacts) {
        self.unclean.facts = Some(facts);
    }

    /// The data check's step ended well: judge what it found. `Err` with why the rest must
    /// not start.
    pub(super) fn judge_data_check(&mut self, actions: &mut Vec<Action>) -> Result<(), String> {
        let facts = self
            .unclean
            .facts
            .take()
            .ok_or_else(|| "the checks reported nothing".to_owned())?;
        let summary = judge_checks(&facts)?;
        let then = match self.unclean.start {
            UncleanStart::Auto => "the rest of the stack starts now",
            UncleanStart::Ask => {
                "the database is stopped again; start the stack with `vaultctl start` (unclean.start = \"ask\")"
            }
        };
        self.unclean.signs.clear();
        self.alarm(
            AlarmKind::UncleanChecked,
            format!("{summary}; {then}"),
            actions,
        );
        Ok(())
    }

    /// A step of an unlock or a lock that the session record follows.
    pub(super) fn record_session_after(
        &self,
        kind: FlowKind,
        step: Step,
        actions: &mut Vec<Action>,
    ) {
        match (kind, step) {
            (FlowKind::Unlock, Step::OpenMapping) => {
                let unchecked = !self.unclean.signs.is_empty();
                actions.push(Action::RecordSession(SessionRecord::Opened { unchecked }));
            }
            // Once the filesystem is unmounted it is clean, whatever happens to the mapping
            // after (a crash while closing it is not an unclean end). Kept while signs are
            // unanswered: the next start must still check.
            (_, Step::Unmount | Step::CloseMapping) if self.unclean.signs.is_empty() => {
                actions.push(Action::RecordSession(SessionRecord::Closed));
            }
            // The checks passed: the record is renewed, this session is the one to follow. Asked
            // to stop the database again, only once it is stopped: a restart during that stop
            // must still find the record marked, or it would take the database, running alone,
            // for a session that goes on.
            (FlowKind::Unlock | FlowKind::Start, Step::CheckData)
                if self.unclean.signs.is_empty() && self.unclean.start == UncleanStart::Auto =>
            {
                actions.push(Action::RecordSession(SessionRecord::Renewed));
            }
            (FlowKind::Unlock | FlowKind::Start, Step::StopStack)
                if self.unclean.signs.is_empty() =>
            {
                actions.push(Action::RecordSession(SessionRecord::Renewed));
            }
            _ => {}
        }
    }
}
