//! The configuration as vaultd uses it: typed, every value checked. What an absent key means
//! comes from [`SCHEMA`]'s typed defaults, applied by the same code as a value in the file, so
//! the defaults are written once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use vault_allowlist::AllowedListener;

use crate::SCHEMA;
use crate::apply::apply;
use crate::walk::At;

/// The whole file. `Config::default()` is what an empty file means: [`SCHEMA`]'s defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub daemon: DaemonConfig,
    pub access: AccessConfig,
    pub storage: StorageConfig,
    pub unlock: UnlockConfig,
    pub stack: StackConfig,
    pub power: PowerConfig,
    pub nut: NutConfig,
    pub backup: BackupConfig,
    pub notify: NotifyConfig,
    pub history: HistoryConfig,
    pub unclean: UncleanConfig,
    pub immich: ImmichConfig,
    pub host: HostConfig,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonConfig {
    pub socket_path: PathBuf,
    /// Mode bits of the socket (e.g. 0o660).
    pub socket_mode: u32,
    pub socket_group: String,
    pub state_dir: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessConfig {
    pub reader_group: String,
    pub admin_group: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageConfig {
    /// `/dev/…` or `UUID=…`; unset until the owner names their LUKS partition.
    pub device: Option<String>,
    pub mapping_name: String,
    pub mountpoint: PathBuf,
    pub filesystem: String,
    pub mount_options: String,
    pub fsck: Fsck,
    /// The longest the fsck before an ordinary mount may take.
    pub fsck_limit_minutes: u64,
    /// The longest the journal replay and the forced full check after an unclean end may take.
    pub full_check_limit_minutes: u64,
    pub allow_discards: bool,
    pub mount_by: MountBy,
}

/// Who makes the mount: vaultd's own mount(2), or PID 1 (a transient `.mount` unit), which a
/// vaultd in a namespace of its own needs for the mount to be the host's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountBy {
    /// systemd when vaultd runs as a systemd service, else vaultd.
    Auto,
    Systemd,
    Vaultd,
}

/// What the unlock does about the filesystem before mounting it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsck {
    None,
    /// `fsck -n`: look, change nothing; problems stop the unlock so the owner decides.
    Report,
    /// `fsck -p`: repair what is safe to repair unattended.
    Repair,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnlockConfig {
    pub backoff_initial_secs: u64,
    pub backoff_max_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackConfig {
    pub project: String,
    pub docker_socket: PathBuf,
    /// For compose v1 projects (no depends_on label): services in start order.
    pub start_order: Vec<String>,
    /// How long a dependency may take to meet its condition.
    pub start_timeout_secs: u64,
    /// Stop timeout when neither `stop_timeouts` nor the container names one.
    pub default_stop_timeout_secs: u64,
    /// Per service.
    pub stop_timeouts: BTreeMap<String, u64>,
    /// Per service, e.g. SIGINT for Postgres.
    pub stop_signals: BTreeMap<String, String>,
    pub posture_gate: PostureGate,
    pub allowed_publish_addresses: Vec<String>,
    pub allowed_capabilities: Vec<String>,
    pub fix_restart_policy: bool,
    /// Services that are databases: `check` warns when their stop timeout is short.
    pub database_services: Vec<String>,
    /// The owner's compose file: its containers are (re)created before a start when missing or
    /// stale. `None`: vaultd only starts and stops the containers that exist.
    pub compose_file: Option<PathBuf>,
    pub compose_command: ComposeCommand,
}

/// Which compose tool runs `stack.compose_file`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComposeCommand {
    /// The v2 plugin if `docker compose version` answers, else `docker-compose`.
    Auto,
    /// `docker compose` (v2).
    Plugin,
    /// `docker-compose` (v1, Debian bookworm's package).
    Standalone,
}

/// What an unlock does after an end that was not a lock (`[unclean]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UncleanConfig {
    pub start: UncleanStart,
}

/// Once the database has recovered alone and the checks passed: start the rest, or ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UncleanStart {
    Auto,
    /// Stop the database again; the owner starts the stack with `vaultctl start`.
    Ask,
}

/// What posture findings at error level do to a start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostureGate {
    /// They stop it (the default).
    Block,
    /// They are reported and audited; the start goes on.
    Warn,
}

/// The host's posture: listeners, firewall, WireGuard (`vaultctl check` and the start gate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostConfig {
    pub wireguard_interface: String,
    pub wireguard_port: Option<u16>,
    /// `PROTO/PORT` or `PROTO/PORT@ADDRESS`.
    pub allowed_listeners: Vec<AllowedListener>,
    pub gate: PostureGate,
}

/// Immich's API: pause its queues before a drain, resume after a start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImmichConfig {
    pub url: String,
    /// Unset: vaultd does not touch the queues (and `check` says so).
    pub api_key_file: Option<PathBuf>,
    pub request_timeout_ms: u64,
    pub ping_timeout_secs: u64,
    pub poll_interval_ms: u64,
    /// Where Immich's UPLOAD_LOCATION is on the host; unset: the mountpoint.
    pub upload_location: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PowerConfig {
    pub threshold_percent: u32,
    pub min_time_to_empty_secs: u64,
    pub on_battery_debounce_secs: u64,
    pub low_hold_secs: u64,
    pub max_drain_secs: u64,
    pub drain_safety_margin_secs: u64,
    pub power_off_after_drain: bool,
    /// Set the battery's charge_control_end_threshold to this at start; unset: leave it.
    pub charge_end_threshold_percent: Option<u32>,
}

/// UPSes followed through NUT's upsd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NutConfig {
    /// `UPSNAME@HOST:PORT`, each as written back in that canonical form.
    pub upses: Vec<String>,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub poll_interval_ms: u64,
    pub request_timeout_ms: u64,
}

/// Backups to LUKS2 drives in restic's format (issue 19).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupConfig {
    /// LUKS2 UUIDs, lowercase.
    pub drives: Vec<String>,
    pub on_plug: bool,
    pub keep_daily: u32,
    pub keep_weekly: u32,
    pub keep_monthly: u32,
    pub keep_yearly: u32,
    pub include_thumbs: bool,
    pub include_encoded_video: bool,
    pub max_age_days: u32,
    pub verify_parts: u32,
    pub sample_files: u32,
    pub restic: PathBuf,
    /// `sftp:USER@HOST:/PATH`, checked.
    pub offsite_repository: Option<String>,
    pub offsite_port: u16,
    pub offsite_ssh_key: PathBuf,
    pub offsite_known_hosts: PathBuf,
    pub offsite_every_hours: u32,
}

/// Notices to the owner: the exec hook, ntfy, Gotify, a webhook, and their rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyConfig {
    pub command: Option<PathBuf>,
    pub command_user: String,
    pub command_allow_root: bool,
    pub command_timeout_secs: u64,
    /// `info`, `warning` or `critical`, for each channel.
    pub command_min_severity: String,
    pub ntfy_url: Option<String>,
    pub ntfy_token_file: Option<PathBuf>,
    pub ntfy_min_severity: String,
    pub gotify_url: Option<String>,
    pub gotify_token_file: Option<PathBuf>,
    pub gotify_min_severity: String,
    pub webhook_url: Option<String>,
    pub webhook_min_severity: String,
    pub rate_limit_per_hour: u32,
    pub dedup_secs: u64,
    pub retry_max_secs: u64,
    pub http_timeout_secs: u64,
    pub poweroff_wait_secs: u64,
    pub unlock_reminder_mins: u64,
}

/// The history file's budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryConfig {
    pub max_bytes: u64,
}

impl Default for Config {
    /// [`SCHEMA`]'s defaults. Each is applied as if it were written in the file; that every one
    /// is a valid value is the `schema_defaults_are_valid_and_consistent` test.
    fn default() -> Self {
        let mut config = Config::blank();
        let origin = Path::new("(the schema's defaults)");
        for spec in SCHEMA {
            let Some(value) = spec.default.to_toml() else {
                continue;
            };
            let at = At {
                spec,
                line: 0,
                value: &value,
                origin,
            };
            if let Err(error) = apply(&at, &mut config) {
                panic!("SCHEMA's default of `{}` is invalid: {error}", spec.key);
            }
        }
        config
    }
}

impl Config {
    /// Every field empty, zero or off: only the ground [`Default`] applies SCHEMA's defaults
    /// on. Not a configuration anyone should run with.
    fn blank() -> Self {
        Self {
            daemon: DaemonConfig {
                socket_path: PathBuf::new(),
                socket_mode: 0,
                socket_group: String::new(),
                state_dir: PathBuf::new(),
            },
            access: AccessConfig {
                reader_group: String::new(),
                admin_group: String::new(),
            },
            storage: StorageConfig {
                device: None,
                mapping_name: String::new(),
                mountpoint: PathBuf::new(),
                filesystem: String::new(),
                mount_options: String::new(),
                fsck: Fsck::None,
                fsck_limit_minutes: 0,
                full_check_limit_minutes: 0,
                allow_discards: false,
                mount_by: MountBy::Auto,
            },
            unlock: UnlockConfig {
                backoff_initial_secs: 0,
                backoff_max_secs: 0,
            },
            stack: StackConfig {
                project: String::new(),
                docker_socket: PathBuf::new(),
                start_order: Vec::new(),
                start_timeout_secs: 0,
                default_stop_timeout_secs: 0,
                stop_timeouts: BTreeMap::new(),
                stop_signals: BTreeMap::new(),
                posture_gate: PostureGate::Warn,
                allowed_publish_addresses: Vec::new(),
                allowed_capabilities: Vec::new(),
                fix_restart_policy: false,
                database_services: Vec::new(),
                compose_file: None,
                compose_command: ComposeCommand::Auto,
            },
            power: PowerConfig {
                threshold_percent: 0,
                min_time_to_empty_secs: 0,
                on_battery_debounce_secs: 0,
                low_hold_secs: 0,
                max_drain_secs: 0,
                drain_safety_margin_secs: 0,
                power_off_after_drain: false,
                charge_end_threshold_percent: None,
            },
            nut: NutConfig {
                upses: Vec::new(),
                username: None,
                password_file: None,
                poll_interval_ms: 0,
                request_timeout_ms: 0,
            },
            backup: BackupConfig {
                drives: Vec::new(),
                on_plug: false,
                keep_daily: 0,
                keep_weekly: 0,
                keep_monthly: 0,
                keep_yearly: 0,
                include_thumbs: false,
                include_encoded_video: false,
                max_age_days: 0,
                verify_parts: 0,
                sample_files: 0,
                restic: PathBuf::new(),
                offsite_repository: None,
                offsite_port: 0,
                offsite_ssh_key: PathBuf::new(),
                offsite_known_hosts: PathBuf::new(),
                offsite_every_hours: 0,
            },
            notify: NotifyConfig {
                command: None,
                command_user: String::new(),
                command_allow_root: false,
                command_timeout_secs: 0,
                command_min_severity: String::new(),
                ntfy_url: None,
                ntfy_token_file: None,
                ntfy_min_severity: String::new(),
                gotify_url: None,
                gotify_token_file: None,
                gotify_min_severity: String::new(),
                webhook_url: None,
                webhook_min_severity: String::new(),
                rate_limit_per_hour: 0,
                dedup_secs: 0,
                retry_max_secs: 0,
                http_timeout_secs: 0,
                poweroff_wait_secs: 0,
                unlock_reminder_mins: 0,
            },
            history: HistoryConfig { max_bytes: 0 },
            unclean: UncleanConfig {
                start: UncleanStart::Auto,
            },
            immich: ImmichConfig {
                url: String::new(),
                api_key_file: None,
                request_timeout_ms: 0,
                ping_timeout_secs: 0,
                poll_interval_ms: 0,
                upload_location: None,
            },
            host: HostConfig {
                wireguard_interface: String::new(),
                wireguard_port: None,
                allowed_listeners: Vec::new(),
                gate: PostureGate::Warn,
            },
        }
    }
}
