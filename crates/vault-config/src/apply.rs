//! Each key's value checked and applied to the [`Config`]: the one place that knows what a
//! key means. Called for every key in the file, and for every default in [`SCHEMA`](crate::SCHEMA)
//! when [`Config::default`] is built.

use std::path::{Path, PathBuf};

use crate::walk::{At, absolute, service_name};
use crate::{ComposeCommand, Config, ConfigError, Fsck, MountBy, PostureGate, UncleanStart};

/// Check `at`'s value and set it in `c`; on an error `c` is left as it was.
pub(crate) fn apply(at: &At<'_>, c: &mut Config) -> Result<(), ConfigError> {
    match at.spec.key {
        "daemon.socket_path" => c.daemon.socket_path = socket_path(at)?,
        "daemon.socket_mode" => c.daemon.socket_mode = socket_mode(at)?,
        "daemon.socket_group" => c.daemon.socket_group = at.group()?,
        "daemon.state_dir" => c.daemon.state_dir = at.absolute_path()?,
        "access.reader_group" => c.access.reader_group = at.group()?,
        "access.admin_group" => c.access.admin_group = at.group()?,
        "storage.device" => c.storage.device = Some(device(at)?),
        "storage.mapping_name" => c.storage.mapping_name = mapping_name(at)?,
        "storage.mountpoint" => {
            let p = at.absolute_path()?;
            if p == Path::new("/") {
                return Err(at.invalid("the mountpoint cannot be /"));
            }
            c.storage.mountpoint = p;
        }
        "storage.filesystem" => {
            let fs = at.string()?;
            if fs.is_empty() || !fs.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '.') {
                return Err(at.invalid(format!("{fs:?} is not a filesystem type")));
            }
            c.storage.filesystem = fs;
        }
        "storage.mount_options" => {
            let options = at.string()?;
            if options.contains(char::is_whitespace) {
                return Err(at.invalid("mount options are separated by commas, without spaces"));
            }
            c.storage.mount_options = options;
        }
        "storage.fsck" => {
            c.storage.fsck = match at.string()?.as_str() {
                "none" => Fsck::None,
                "report" => Fsck::Report,
                "repair" => Fsck::Repair,
                other => {
                    return Err(at.invalid(format!("{other:?} is not one of none, report, repair")));
                }
            }
        }
        "storage.mount_by" => {
            c.storage.mount_by = match at.string()?.as_str() {
                "auto" => MountBy::Auto,
                "systemd" => MountBy::Systemd,
                "vaultd" => MountBy::Vaultd,
                other => {
                    return Err(
                        at.invalid(format!("{other:?} is not one of auto, systemd, vaultd"))
                    );
                }
            }
        }
        "storage.fsck_limit_minutes" => c.storage.fsck_limit_minutes = at.integer()?,
        "storage.full_check_limit_minutes" => c.storage.full_check_limit_minutes = at.integer()?,
        "storage.allow_discards" => c.storage.allow_discards = at.boolean()?,
        "unlock.backoff_initial_secs" => c.unlock.backoff_initial_secs = at.integer()?,
        "unlock.backoff_max_secs" => c.unlock.backoff_max_secs = at.integer()?,
        "stack.project" => c.stack.project = project(at)?,
        "stack.docker_socket" => c.stack.docker_socket = at.absolute_path()?,
        "stack.start_order" => c.stack.start_order = at.list(service_name)?,
        "stack.start_timeout_secs" => c.stack.start_timeout_secs = at.integer()?,
        "stack.default_stop_timeout_secs" => {
            c.stack.default_stop_timeout_secs = at.integer()?;
        }
        "stack.stop_timeouts" => {
            let Some((min, max)) = at.spec.range.bounds() else {
                return Err(at.invalid("the schema gives this key no integer range"));
            };
            c.stack.stop_timeouts = at.per_service(|v| {
                v.as_integer()
                    .filter(|n| (min..=max).contains(n))
                    .and_then(|n| u64::try_from(n).ok())
                    .ok_or_else(|| format!("must be whole seconds, {min}–{max}"))
            })?;
        }
        "stack.stop_signals" => {
            c.stack.stop_signals = at.per_service(|v| {
                let s = v.as_str().unwrap_or_default();
                let name = s.strip_prefix("SIG").unwrap_or(s);
                (!name.is_empty()
                    && name
                        .chars()
                        .all(|ch| ch.is_ascii_uppercase() || ch.is_ascii_digit()))
                .then(|| format!("SIG{name}"))
                .ok_or_else(|| format!("{s:?} is not a signal name like \"SIGINT\""))
            })?;
        }
        "unclean.start" => {
            c.unclean.start = match at.string()?.as_str() {
                "auto" => UncleanStart::Auto,
                "ask" => UncleanStart::Ask,
                other => return Err(at.invalid(format!("{other:?} is not one of auto, ask"))),
            }
        }
        "stack.posture_gate" => {
            c.stack.posture_gate = match at.string()?.as_str() {
                "block" => PostureGate::Block,
                "warn" => PostureGate::Warn,
                other => return Err(at.invalid(format!("{other:?} is not one of block, warn"))),
            }
        }
        "stack.allowed_publish_addresses" => {
            c.stack.allowed_publish_addresses = at.list(|s| {
                s.parse::<std::net::IpAddr>()
                    .map(|ip| ip.to_string())
                    .map_err(|_| format!("{s:?} is not an IP address"))
            })?;
        }
        "stack.allowed_capabilities" => {
            c.stack.allowed_capabilities = at.list(|s| {
                let upper = s.to_ascii_uppercase();
                let bare = upper.strip_prefix("CAP_").unwrap_or(&upper).to_owned();
                (!bare.is_empty() && bare.chars().all(|ch| ch.is_ascii_uppercase() || ch == '_'))
                    .then_some(bare)
                    .ok_or_else(|| {
                        format!("{s:?} is not a capability name like \"NET_BIND_SERVICE\"")
                    })
            })?;
        }
        "stack.fix_restart_policy" => c.stack.fix_restart_policy = at.boolean()?,
        "stack.database_services" => c.stack.database_services = at.list(service_name)?,
        "stack.compose_file" => c.stack.compose_file = Some(at.absolute_path()?),
        "stack.compose_command" => {
            c.stack.compose_command = match at.string()?.as_str() {
                "auto" => ComposeCommand::Auto,
                "docker compose" => ComposeCommand::Plugin,
                "docker-compose" => ComposeCommand::Standalone,
                other => {
                    return Err(at.invalid(format!(
                        "{other:?} is not one of \"auto\", \"docker compose\", \"docker-compose\""
                    )));
                }
            }
        }
        "immich.url" => {
            let url = at.string()?;
            let rest = url.strip_prefix("http://").unwrap_or_default();
            // As the client takes it: a trailing "/" or "/api" is the same server.
            let host_port = rest.trim_end_matches('/').trim_end_matches("/api");
            if host_port.is_empty() || host_port.contains('/') || host_port.contains('@') {
                return Err(at.invalid(format!(
                    "{url:?} is not http://HOST:PORT (vaultd talks plain HTTP to the server on this host)"
                )));
            }
            c.immich.url = url;
        }
        "immich.api_key_file" => c.immich.api_key_file = Some(at.absolute_path()?),
        "immich.request_timeout_ms" => c.immich.request_timeout_ms = at.integer()?,
        "immich.ping_timeout_secs" => c.immich.ping_timeout_secs = at.integer()?,
        "immich.poll_interval_ms" => c.immich.poll_interval_ms = at.integer()?,
        "immich.upload_location" => c.immich.upload_location = Some(at.absolute_path()?),
        "host.wireguard_interface" => {
            let name = at.string()?;
            // Linux interface names: 1–15 bytes, no '/', no whitespace.
            if name.is_empty()
                || name.len() > 15
                || !name
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'))
            {
                return Err(at.invalid(format!("{name:?} is not an interface name")));
            }
            c.host.wireguard_interface = name;
        }
        "host.wireguard_port" => c.host.wireguard_port = Some(at.integer()?),
        "host.allowed_listeners" => {
            c.host.allowed_listeners = at.list(str::parse)?;
        }
        "host.gate" => {
            c.host.gate = match at.string()?.as_str() {
                "block" => PostureGate::Block,
                "warn" => PostureGate::Warn,
                other => return Err(at.invalid(format!("{other:?} is not one of block, warn"))),
            }
        }
        "power.threshold_percent" => c.power.threshold_percent = at.integer()?,
        "power.min_time_to_empty_secs" => {
            c.power.min_time_to_empty_secs = at.integer()?;
        }
        "power.on_battery_debounce_secs" => {
            c.power.on_battery_debounce_secs = at.integer()?;
        }
        "power.low_hold_secs" => c.power.low_hold_secs = at.integer()?,
        "power.max_drain_secs" => c.power.max_drain_secs = at.integer()?,
        "power.drain_safety_margin_secs" => {
            c.power.drain_safety_margin_secs = at.integer()?;
        }
        "power.power_off_after_drain" => c.power.power_off_after_drain = at.boolean()?,
        "power.charge_end_threshold_percent" => {
            c.power.charge_end_threshold_percent = Some(at.integer()?);
        }
        "nut.upses" => {
            c.nut.upses = at.list(|s| {
                s.parse::<vault_nut::UpsAddress>()
                    .map(|a| a.to_string())
                    .map_err(|e| e.to_string())
            })?;
        }
        "nut.username" => {
            let name = at.string()?;
            if name.is_empty() || name.chars().any(char::is_whitespace) {
                return Err(at.invalid(format!("{name:?} is not a upsd.users name")));
            }
            c.nut.username = Some(name);
        }
        "nut.password_file" => c.nut.password_file = Some(at.absolute_path()?),
        "nut.poll_interval_ms" => c.nut.poll_interval_ms = at.integer()?,
        "nut.request_timeout_ms" => c.nut.request_timeout_ms = at.integer()?,
        "backup.drives" => {
            c.backup.drives = at.list(|s| {
                vault_backup::DriveId::parse(s)
                    .map(|d| d.as_str().to_owned())
                    .map_err(|e| e.to_string())
            })?;
        }
        "backup.on_plug" => c.backup.on_plug = at.boolean()?,
        "backup.keep_daily" => c.backup.keep_daily = at.integer()?,
        "backup.keep_weekly" => c.backup.keep_weekly = at.integer()?,
        "backup.keep_monthly" => c.backup.keep_monthly = at.integer()?,
        "backup.keep_yearly" => c.backup.keep_yearly = at.integer()?,
        "backup.include_thumbs" => c.backup.include_thumbs = at.boolean()?,
        "backup.include_encoded_video" => c.backup.include_encoded_video = at.boolean()?,
        "backup.max_age_days" => c.backup.max_age_days = at.integer()?,
        "backup.verify_parts" => c.backup.verify_parts = at.integer()?,
        "backup.sample_files" => c.backup.sample_files = at.integer()?,
        "backup.restic" => c.backup.restic = at.absolute_path()?,
        "backup.offsite_repository" => {
            let text = at.string()?;
            vault_backup::offsite::SftpTarget::parse(
                &text,
                22,
                std::path::Path::new("/"),
                std::path::Path::new("/"),
            )
            .map_err(|e| at.invalid(e.to_string()))?;
            c.backup.offsite_repository = Some(text);
        }
        "backup.offsite_port" => c.backup.offsite_port = at.integer()?,
        "backup.offsite_ssh_key" | "backup.offsite_known_hosts" => {
            let path = at.absolute_path()?;
            if !vault_backup::offsite::safe_path(&path) {
                return Err(at.invalid(
                    vault_backup::offsite::OffsiteError::BadPath(path.display().to_string())
                        .to_string(),
                ));
            }
            if at.spec.key == "backup.offsite_ssh_key" {
                c.backup.offsite_ssh_key = path;
            } else {
                c.backup.offsite_known_hosts = path;
            }
        }
        "backup.offsite_every_hours" => c.backup.offsite_every_hours = at.integer()?,
        "notify.command" => c.notify.command = Some(at.absolute_path()?),
        "notify.command_user" => {
            let name = at.string()?;
            if name.is_empty()
                || name.contains(|ch: char| ch.is_whitespace() || ch == ':' || ch == '/')
            {
                return Err(at.invalid(format!("{name:?} is not a user name")));
            }
            c.notify.command_user = name;
        }
        "notify.command_allow_root" => c.notify.command_allow_root = at.boolean()?,
        "notify.command_timeout_secs" => c.notify.command_timeout_secs = at.integer()?,
        "notify.command_min_severity" => c.notify.command_min_severity = severity(at)?,
        "notify.ntfy_url" => c.notify.ntfy_url = Some(http_url(at, true)?),
        "notify.ntfy_token_file" => c.notify.ntfy_token_file = Some(at.absolute_path()?),
        "notify.ntfy_min_severity" => c.notify.ntfy_min_severity = severity(at)?,
        "notify.gotify_url" => c.notify.gotify_url = Some(http_url(at, false)?),
        "notify.gotify_token_file" => c.notify.gotify_token_file = Some(at.absolute_path()?),
        "notify.gotify_min_severity" => c.notify.gotify_min_severity = severity(at)?,
        "notify.webhook_url" => c.notify.webhook_url = Some(http_url(at, false)?),
        "notify.webhook_min_severity" => c.notify.webhook_min_severity = severity(at)?,
        "notify.rate_limit_per_hour" => c.notify.rate_limit_per_hour = at.integer()?,
        "notify.dedup_secs" => c.notify.dedup_secs = at.integer()?,
        "notify.retry_max_secs" => c.notify.retry_max_secs = at.integer()?,
        "notify.http_timeout_secs" => c.notify.http_timeout_secs = at.integer()?,
        "notify.poweroff_wait_secs" => c.notify.poweroff_wait_secs = at.integer()?,
        "notify.unlock_reminder_mins" => c.notify.unlock_reminder_mins = at.integer()?,
        "history.max_bytes" => c.history.max_bytes = at.integer()?,
        // SCHEMA and this match are kept together; a key in one but not the other is a bug
        // caught by the `schema_defaults_are_valid_and_consistent` test.
        other => return Err(at.invalid(format!("{other} is in the schema but not applied"))),
    }
    Ok(())
}

fn severity(at: &At<'_>) -> Result<String, ConfigError> {
    let s = at.string()?;
    match s.as_str() {
        "info" | "warning" | "critical" => Ok(s),
        other => Err(at.invalid(format!("{other:?} is not one of info, warning, critical"))),
    }
}

/// `http://HOST[:PORT][/PATH]`; `path_needed`: ntfy's topic is the path. Plain HTTP only: the
/// servers are reached over WireGuard, and vaultd carries no TLS stack.
fn http_url(at: &At<'_>, path_needed: bool) -> Result<String, ConfigError> {
    let url = at.string()?;
    if url.starts_with("https://") {
        return Err(at.invalid(format!(
            "{url:?}: only http:// — reach the server over WireGuard, which encrypts (vaultd carries no TLS stack)"
        )));
    }
    let rest = url.strip_prefix("http://").unwrap_or_default();
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    if host.is_empty() || host.contains('@') || host.contains(char::is_whitespace) {
        return Err(at.invalid(format!(
            "{url:?} is not http://HOST[:PORT]/PATH (no user or password in the URL)"
        )));
    }
    if path_needed && path.trim_matches('/').is_empty() {
        return Err(at.invalid(format!(
            "{url:?}: name the topic, as in http://HOST:PORT/TOPIC"
        )));
    }
    Ok(url)
}

/// The longest path a Unix socket can be bound at: `sun_path` holds 108 bytes with the NUL.
const SOCKET_PATH_MAX: usize = 107;

fn socket_path(at: &At<'_>) -> Result<PathBuf, ConfigError> {
    let path = at.absolute_path()?;
    let len = path.as_os_str().len();
    if len > SOCKET_PATH_MAX {
        return Err(at.invalid(format!(
            "{} is {len} bytes long; a Unix socket's path can have at most {SOCKET_PATH_MAX}",
            path.display()
        )));
    }
    Ok(path)
}

fn socket_mode(at: &At<'_>) -> Result<u32, ConfigError> {
    let s = at.string()?;
    let digits = s.strip_prefix("0o").unwrap_or(&s);
    // Checked by hand: from_str_radix would also take a sign ("+660").
    let octal = !digits.is_empty()
        && digits.len() <= 4
        && digits.bytes().all(|b| b.is_ascii_digit() && b < b'8');
    let mode = octal
        .then(|| u32::from_str_radix(digits, 8).ok())
        .flatten()
        .ok_or_else(|| at.invalid(format!("{s:?} is not an octal mode like \"0660\"")))?;
    if mode & 0o002 != 0 {
        return Err(at.invalid(format!(
            "{s:?} lets every local user write to the socket, i.e. send commands; access goes by group, use e.g. \"0660\""
        )));
    }
    if mode & 0o7000 != 0 {
        return Err(at.invalid(format!(
            "{s:?}: setuid, setgid and sticky bits mean nothing on a socket"
        )));
    }
    Ok(mode)
}

fn device(at: &At<'_>) -> Result<String, ConfigError> {
    let s = at.string()?;
    if let Some(uuid) = s.strip_prefix("UUID=") {
        let ok = !uuid.is_empty() && uuid.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
        if !ok {
            return Err(at.invalid(format!(
                "{s:?}: UUID= must be followed by the partition's UUID (see `blkid`)"
            )));
        }
    } else if !s.starts_with('/') {
        return Err(at.invalid(format!(
            "{s:?} must be an absolute device path or UUID=<uuid>"
        )));
    } else {
        absolute(&s).map_err(|why| at.invalid(why))?;
    }
    Ok(s)
}

fn mapping_name(at: &At<'_>) -> Result<String, ConfigError> {
    let s = at.string()?;
    let chars_ok = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    // The kernel's limit is DM_NAME_LEN (128) including the NUL; "." and ".." cannot be
    // entries under /dev/mapper.
    if s.is_empty() || s.len() > 127 || !chars_ok || s == "." || s == ".." {
        return Err(at.invalid(format!(
            "{s:?} is not a device-mapper name (1–127 of A–Z a–z 0–9 . _ -, not . or ..)"
        )));
    }
    Ok(s)
}

fn project(at: &At<'_>) -> Result<String, ConfigError> {
    let s = at.string()?;
    // docker compose normalises project names to this form; a name outside it would never
    // match the containers' com.docker.compose.project label.
    let first_ok = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok = s
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'));
    if !first_ok || !rest_ok {
        return Err(at.invalid(format!(
            "{s:?} is not a compose project name ([a-z0-9][a-z0-9_-]*)"
        )));
    }
    Ok(s)
}
