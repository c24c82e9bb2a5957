//! The notify port: vault-notify's sender task, set up from `[notify]` and `[history]`. A
//! channel that cannot be set up (a hook user that does not exist or is root, a URL it cannot
//! use) is left out with an error in the log; the others go on.

use std::path::Path;
use std::time::Duration;

use vault_config::Config;
use vault_notify::channel::{HttpUrl, Target};
use vault_notify::exec::{Hook, resolve_user};
use vault_notify::{ChannelSettings, History, Settings, Severity};

/// The history file of the state directory, bounded by `history.max_bytes`.
pub fn history(config: &Config) -> History {
    History::new(&config.daemon.state_dir, config.history.max_bytes)
}

fn severity(s: &str) -> Severity {
    Severity::parse(s).unwrap_or(Severity::Info)
}

fn url(key: &str, value: &str) -> Option<HttpUrl> {
    HttpUrl::parse(value)
        .map_err(|why| tracing::error!("{key}: {why}; this channel is off"))
        .ok()
}

/// The sender task's settings.
pub fn settings(config: &Config) -> Settings {
    let n = &config.notify;
    let mut channels = Vec::new();
    let mut add = |target: Target, min: &str| {
        channels.push(ChannelSettings {
            target,
            min_severity: severity(min),
            per_hour: n.rate_limit_per_hour,
        });
    };
    if let Some(command) = &n.command {
        match resolve_user(&n.command_user, n.command_allow_root) {
            Ok(run_as) => add(
                Target::Command(Hook {
                    command: command.clone(),
                    run_as,
                    timeout: Duration::from_secs(n.command_timeout_secs),
                }),
                &n.command_min_severity,
            ),
            Err(error) => tracing::error!("{error}; the notify hook is off"),
        }
    }
    if let Some(u) = n
        .ntfy_url
        .as_deref()
        .and_then(|u| url("notify.ntfy_url", u))
    {
        add(
            Target::Ntfy {
                url: u,
                token_file: n.ntfy_token_file.clone(),
            },
            &n.ntfy_min_severity,
        );
    }
    if let Some(u) = n
        .gotify_url
        .as_deref()
        .and_then(|u| url("notify.gotify_url", u))
    {
        match &n.gotify_token_file {
            Some(token_file) => add(
                Target::Gotify {
                    url: u,
                    token_file: token_file.clone(),
                },
                &n.gotify_min_severity,
            ),
            None => {
                tracing::error!("notify.gotify_url needs notify.gotify_token_file; Gotify is off")
            }
        }
    }
    if let Some(u) = n
        .webhook_url
        .as_deref()
        .and_then(|u| url("notify.webhook_url", u))
    {
        add(Target::Webhook { url: u }, &n.webhook_min_severity);
    }
    for c in &channels {
        tracing::info!(
            channel = c.target.name(),
            min_severity = c.min_severity.name(),
            "notices go out on {}",
            c.target.name()
        );
    }
    Settings {
        channels,
        dedup_secs: n.dedup_secs,
        retry_max: Duration::from_secs(n.retry_max_secs),
        http_timeout: Duration::from_secs(n.http_timeout_secs),
        state_dir: config.daemon.state_dir.clone(),
        history: history(config),
        host: host_name(),
    }
}

fn host_name() -> String {
    // The kernel's (UTS) host name, as `hostname` prints it.
    std::fs::read_to_string(Path::new("/proc/sys/kernel/hostname"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}
