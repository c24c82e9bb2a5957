//! A file checked: [`Checked`] holds the config as far as it is valid, every error and warning,
//! and where each key is written. The checks across keys (two values that are each valid but
//! contradict each other) live here; those that ask the host are in `host`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::{Config, ConfigError, ConfigErrors, ConfigWarning};

/// What checking a file found. `config` holds every valid value of the file and the default of
/// every other key; it is only for running when `errors` is empty ([`Checked::into_result`]).
#[derive(Debug)]
pub struct Checked {
    /// The file, as errors name it.
    pub path: PathBuf,
    pub config: Config,
    pub(crate) errors: Vec<ConfigError>,
    pub warnings: Vec<ConfigWarning>,
    /// The line of every known key written in the file.
    pub(crate) lines: BTreeMap<&'static str, usize>,
    /// Keys whose value was refused: they hold their default, which later checks must not judge
    /// in their place.
    pub(crate) refused: BTreeSet<&'static str>,
    /// Whether the text could be walked at all (it is TOML); if not, no key's value is known.
    pub(crate) walked: bool,
}

impl Checked {
    pub(crate) fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            config: Config::default(),
            errors: Vec::new(),
            warnings: Vec::new(),
            lines: BTreeMap::new(),
            refused: BTreeSet::new(),
            walked: false,
        }
    }

    /// The line `key` is written on; `None` when the file does not set it.
    pub fn line_of(&self, key: &str) -> Option<usize> {
        self.lines.get(key).copied()
    }

    /// Every error so far, in the order of the file's lines (errors about defaults last).
    pub fn errors(&self) -> Vec<&ConfigError> {
        let mut errors: Vec<&ConfigError> = self.errors.iter().collect();
        errors.sort_by_key(|e| e.line().unwrap_or(usize::MAX));
        errors
    }

    pub fn is_valid(&self) -> bool {
        self.errors.is_empty()
    }

    /// The config, or every error (in line order).
    pub fn into_result(mut self) -> Result<Config, ConfigErrors> {
        if self.errors.is_empty() {
            return Ok(self.config);
        }
        // Stable: errors on one line stay in the order they were found.
        self.errors.sort_by_key(|e| e.line().unwrap_or(usize::MAX));
        Err(ConfigErrors(self.errors))
    }

    /// Whether `key`'s value, from the file or its default, stands and may be judged further.
    pub(crate) fn judged(&self, key: &str) -> bool {
        self.walked && !self.refused.contains(key)
    }

    /// `` `key` (value, line N) `` or `` `key` (value, its default) ``, for naming the other
    /// key of a conflict.
    fn named(&self, key: &str, value: impl std::fmt::Display) -> String {
        match self.line_of(key) {
            Some(line) => format!("`{key}` ({value}, line {line})"),
            None => format!("`{key}` ({value}, its default)"),
        }
    }

    /// `a` and `b` contradict each other: one error, on the line of the later of the two in the
    /// file. Two defaults never conflict (a test holds SCHEMA to that), so at least one is set.
    fn conflict(&mut self, a: &'static str, b: &'static str, why: String) {
        let (key, other, line) = match (self.line_of(a), self.line_of(b)) {
            (Some(la), Some(lb)) if la > lb => (a, b, la),
            (_, Some(lb)) => (b, a, lb),
            (Some(la), None) => (a, b, la),
            (None, None) => return,
        };
        self.errors.push(ConfigError::Conflict {
            path: self.path.clone(),
            line,
            key,
            other,
            why,
        });
    }

    /// The pairs of keys that must agree.
    pub(crate) fn check_across_keys(&mut self) {
        const INITIAL: &str = "unlock.backoff_initial_secs";
        const MAX: &str = "unlock.backoff_max_secs";
        const THRESHOLD: &str = "power.threshold_percent";
        const CHARGE_END: &str = "power.charge_end_threshold_percent";
        const TIME_TO_EMPTY: &str = "power.min_time_to_empty_secs";
        const MARGIN: &str = "power.drain_safety_margin_secs";
        let both = |c: &Self, a, b| c.judged(a) && c.judged(b);

        let unlock = &self.config.unlock;
        let (initial, max) = (unlock.backoff_initial_secs, unlock.backoff_max_secs);
        if both(self, INITIAL, MAX) && initial > max {
            let why = format!(
                "{} is above {}: the wait after a failed unlock starts at the first and is capped at the second",
                self.named(INITIAL, initial),
                self.named(MAX, max)
            );
            self.conflict(INITIAL, MAX, why);
        }

        let power = &self.config.power;
        let threshold = power.threshold_percent;
        if let Some(end) = power.charge_end_threshold_percent
            && both(self, THRESHOLD, CHARGE_END)
            && end <= threshold
        {
            let why = format!(
                "{} is at or below {}: the battery would never charge past the level that starts a drain, so every power cut would drain at once",
                self.named(CHARGE_END, end),
                self.named(THRESHOLD, threshold)
            );
            self.conflict(THRESHOLD, CHARGE_END, why);
        }

        const USERNAME: &str = "nut.username";
        const PASSWORD: &str = "nut.password_file";
        let nut = &self.config.nut;
        let login = (nut.username.is_some(), nut.password_file.is_some());
        if both(self, USERNAME, PASSWORD) && login.0 != login.1 {
            let why = format!(
                "{} and {} go together: upsd takes a USERNAME only with its PASSWORD",
                self.named(USERNAME, if login.0 { "set" } else { "unset" }),
                self.named(PASSWORD, if login.1 { "set" } else { "unset" })
            );
            self.conflict(USERNAME, PASSWORD, why);
        }

        const HOOK_USER: &str = "notify.command_user";
        const ALLOW_ROOT: &str = "notify.command_allow_root";
        let notify = &self.config.notify;
        if both(self, HOOK_USER, ALLOW_ROOT)
            && notify.command_user == "root"
            && !notify.command_allow_root
        {
            let why = format!(
                "{} would run the hook with every privilege vaultd has, and {} does not allow it: name an unprivileged user (the default is \"nobody\")",
                self.named(HOOK_USER, "root"),
                self.named(ALLOW_ROOT, false)
            );
            self.conflict(HOOK_USER, ALLOW_ROOT, why);
        }
        const GOTIFY: &str = "notify.gotify_url";
        const GOTIFY_TOKEN: &str = "notify.gotify_token_file";
        let notify = &self.config.notify;
        if both(self, GOTIFY, GOTIFY_TOKEN)
            && notify.gotify_url.is_some()
            && notify.gotify_token_file.is_none()
        {
            let why = format!(
                "{} needs {}: Gotify takes messages only with an application token",
                self.named(GOTIFY, "set"),
                self.named(GOTIFY_TOKEN, "unset")
            );
            self.conflict(GOTIFY, GOTIFY_TOKEN, why);
        }

        const DAILY: &str = "backup.keep_daily";
        const YEARLY: &str = "backup.keep_yearly";
        let b = &self.config.backup;
        if both(self, DAILY, YEARLY)
            && [b.keep_daily, b.keep_weekly, b.keep_monthly, b.keep_yearly] == [0; 4]
        {
            let why = format!(
                "{} and every other backup.keep_* are 0: the rotation would keep no snapshot (restic refuses to forget without a policy)",
                self.named(DAILY, 0)
            );
            self.conflict(DAILY, YEARLY, why);
        }

        let power = &self.config.power;
        let (tte, margin) = (power.min_time_to_empty_secs, power.drain_safety_margin_secs);
        if both(self, TIME_TO_EMPTY, MARGIN) && tte != 0 && tte <= margin {
            let why = format!(
                "{} is at or below {}: a drain started by the time to empty would have no time left (0 turns that trigger off)",
                self.named(TIME_TO_EMPTY, tte),
                self.named(MARGIN, margin)
            );
            self.conflict(TIME_TO_EMPTY, MARGIN, why);
        }
    }
}
