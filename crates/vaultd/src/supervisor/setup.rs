//! What the daemon hands the supervisor beside its host: the UPSes, the notice sender, the
//! session record, and whether a device is configured at all.

use std::time::Duration;

use super::{Host, Supervisor};

impl<H: Host> Supervisor<H> {
    /// The UPSes the config names, each a power source the core judges.
    #[must_use]
    pub fn with_upses(mut self, names: impl IntoIterator<Item = String>) -> Self {
        self.core = self.core.with_upses(names);
        self
    }

    /// Tell the owner through `notices` (vault-notify's sender task); the power-off waits at
    /// most `poweroff_wait` for its own notice.
    #[must_use]
    pub fn with_notices(
        mut self,
        notices: vault_notify::Notifier,
        poweroff_wait: Duration,
    ) -> Self {
        self.notices = notices;
        self.telling.poweroff_wait = poweroff_wait;
        self
    }

    /// Keep the session record in `file`, and tell the core what it held at start; after an
    /// unclean end, `start` is what the unlock does once the checks passed.
    #[must_use]
    pub fn with_session(
        mut self,
        file: crate::session::SessionFile,
        start: vault_core::unclean::UncleanStart,
    ) -> Self {
        self.session_found = file.found();
        self.session = Some(file);
        self.core.set_unclean_start(start);
        self
    }

    /// How long each step may take (the fsck limits come from the config).
    #[must_use]
    pub fn with_step_limits(mut self, limits: vault_core::StepLimits) -> Self {
        self.core = self.core.with_step_limits(limits);
        self
    }

    /// No `storage.device` in the config: the core refuses every unlock, saying so.
    #[must_use]
    pub fn without_device(mut self) -> Self {
        self.core = self.core.without_device();
        self
    }
}
