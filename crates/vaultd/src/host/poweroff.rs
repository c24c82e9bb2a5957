//! The power-off port of the real host: after a drain, when `power.power_off_after_drain` asks
//! for it, the host is powered off through logind.

use super::StepFailure;

/// Power the host off through logind (on the system bus).
pub(super) async fn power_off() -> Result<(), StepFailure> {
    let conn = vault_power::system_bus()
        .await
        .map_err(|e| StepFailure::new(e.to_string()))?;
    let logind = vault_power::logind::Logind::new(&conn)
        .await
        .map_err(|e| StepFailure::new(e.to_string()))?;
    tracing::warn!("powering the host off through logind after the drain");
    logind
        .power_off()
        .await
        .map_err(|e| StepFailure::new(e.to_string()))
}
