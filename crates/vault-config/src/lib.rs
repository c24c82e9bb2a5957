//! vaultd's configuration: `/etc/vaultd/vaultd.toml`.
//!
//! The file is parsed with `toml_edit`, which keeps every key's position, and walked against
//! [`SCHEMA`], so that an unknown key, a wrong type or an out-of-range value is reported with
//! the file, the line and the dotted key. [`SCHEMA`] is the one list of keys: docs/config.md is
//! checked against it by a test, and [`man_page`] renders vaultd.toml(5) from it.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use toml_edit::{Document, Item, Key, TableLike, Value};

mod man;
pub use man::man_page;

/// Where vaultd looks for its configuration unless told otherwise (`--config`).
pub const DEFAULT_PATH: &str = "/etc/vaultd/vaultd.toml";

/// The whole file. `Config::default()` is what an empty file means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub daemon: DaemonConfig,
    pub access: AccessConfig,
    pub storage: StorageConfig,
    pub unlock: UnlockConfig,
    pub stack: StackConfig,
    pub power: PowerConfig,
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
    /// `PROTO/PORT` or `PROTO/PORT@ADDRESS`, parsed by the host check's own parser.
    pub allowed_listeners: Vec<vault_hostcheck::AllowedListener>,
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

impl Default for Config {
    fn default() -> Self {
        Self {
            daemon: DaemonConfig {
                socket_path: "/run/vaultd/vaultd.sock".into(),
                socket_mode: 0o660,
                socket_group: "vaultd".into(),
                state_dir: "/var/lib/vaultd".into(),
            },
            access: AccessConfig {
                reader_group: "vaultd".into(),
                admin_group: "vaultd-admin".into(),
            },
            storage: StorageConfig {
                device: None,
                mapping_name: "immich-data".into(),
                mountpoint: "/srv/immich".into(),
                filesystem: "ext4".into(),
                mount_options: "noatime,nodev,nosuid".into(),
                fsck: Fsck::Report,
                mount_by: MountBy::Auto,
                allow_discards: false,
            },
            unlock: UnlockConfig {
                backoff_initial_secs: 1,
                backoff_max_secs: 300,
            },
            stack: StackConfig {
                project: "immich".into(),
                docker_socket: "/var/run/docker.sock".into(),
                start_order: Vec::new(),
                start_timeout_secs: 120,
                default_stop_timeout_secs: 30,
                stop_timeouts: BTreeMap::new(),
                stop_signals: BTreeMap::new(),
                posture_gate: PostureGate::Block,
                allowed_publish_addresses: Vec::new(),
                allowed_capabilities: Vec::new(),
                fix_restart_policy: false,
                database_services: vec!["database".into()],
            },
            power: PowerConfig {
                threshold_percent: 30,
                min_time_to_empty_secs: 600,
                on_battery_debounce_secs: 5,
                low_hold_secs: 5,
                max_drain_secs: 300,
                drain_safety_margin_secs: 60,
                power_off_after_drain: true,
                charge_end_threshold_percent: None,
            },
            immich: ImmichConfig {
                url: "http://127.0.0.1:2283".into(),
                api_key_file: None,
                request_timeout_ms: 2000,
                ping_timeout_secs: 20,
                poll_interval_ms: 500,
                upload_location: None,
            },
            host: HostConfig {
                wireguard_interface: "wg0".into(),
                wireguard_port: None,
                allowed_listeners: ["udp/68", "udp/546"]
                    .into_iter()
                    .filter_map(|s| s.parse().ok())
                    .collect(),
                gate: PostureGate::Block,
            },
        }
    }
}

/// One key of the file, for the walker and for the reference in docs/config.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySpec {
    /// `table.key`
    pub key: &'static str,
    pub kind: &'static str,
    /// As written in TOML; `(unset)` for optional keys.
    pub default: &'static str,
    pub range: &'static str,
    pub doc: &'static str,
}

/// Every key the file may hold, grouped by table: the walker accepts exactly these, and
/// docs/config.md and packaging/vaultd.toml are tested against them.
pub const SCHEMA: &[KeySpec] = &[
    KeySpec {
        key: "daemon.socket_path",
        kind: "path",
        default: "\"/run/vaultd/vaultd.sock\"",
        range: "absolute path",
        doc: "the control socket vaultctl talks to",
    },
    KeySpec {
        key: "daemon.socket_mode",
        kind: "string",
        default: "\"0660\"",
        range: "octal mode, no write for others",
        doc: "the socket's permission bits",
    },
    KeySpec {
        key: "daemon.socket_group",
        kind: "group",
        default: "\"vaultd\"",
        range: "an existing group name",
        doc: "the group that owns the socket; readers and admins must be in it to connect",
    },
    KeySpec {
        key: "daemon.state_dir",
        kind: "path",
        default: "\"/var/lib/vaultd\"",
        range: "absolute path",
        doc: "where vaultd keeps what must survive a restart",
    },
    KeySpec {
        key: "access.reader_group",
        kind: "group",
        default: "\"vaultd\"",
        range: "group name",
        doc: "members may call Status, Watch and Check",
    },
    KeySpec {
        key: "access.admin_group",
        kind: "group",
        default: "\"vaultd-admin\"",
        range: "group name",
        doc: "members may also Unlock, Start, Stop and Lock",
    },
    KeySpec {
        key: "storage.device",
        kind: "string",
        default: "(unset)",
        range: "absolute path or UUID=…",
        doc: "the LUKS2 partition holding the photos",
    },
    KeySpec {
        key: "storage.mapping_name",
        kind: "string",
        default: "\"immich-data\"",
        range: "1–127 of A–Z a–z 0–9 . _ -",
        doc: "the device-mapper name: /dev/mapper/<name>",
    },
    KeySpec {
        key: "storage.mountpoint",
        kind: "path",
        default: "\"/srv/immich\"",
        range: "absolute path, not /",
        doc: "where the volume is mounted; the stack's data path",
    },
    KeySpec {
        key: "storage.filesystem",
        kind: "string",
        default: "\"ext4\"",
        range: "a filesystem type the kernel knows",
        doc: "the filesystem inside the LUKS volume",
    },
    KeySpec {
        key: "storage.mount_options",
        kind: "string",
        default: "\"noatime,nodev,nosuid\"",
        range: "comma-separated, as in fstab",
        doc: "options for mounting it",
    },
    KeySpec {
        key: "storage.fsck",
        kind: "string",
        default: "\"report\"",
        range: "none, report, repair",
        doc: "before mounting: nothing, fsck -n (problems stop the unlock), or fsck -p",
    },
    KeySpec {
        key: "storage.mount_by",
        kind: "string",
        default: "\"auto\"",
        range: "auto, systemd, vaultd",
        doc: "who mounts and unmounts the volume: systemd (a transient .mount unit, needed under the hardened unit), vaultd (mount(2)), or auto: systemd when vaultd runs as a systemd service",
    },
    KeySpec {
        key: "storage.allow_discards",
        kind: "bool",
        default: "false",
        range: "true, false",
        doc: "pass TRIM through the encryption (leaks which blocks are free)",
    },
    KeySpec {
        key: "unlock.backoff_initial_secs",
        kind: "integer",
        default: "1",
        range: "0–60",
        doc: "after a wrong passphrase the next unlock waits this long; the wait doubles with each further failure",
    },
    KeySpec {
        key: "unlock.backoff_max_secs",
        kind: "integer",
        default: "300",
        range: "1–86400",
        doc: "the longest wait between failed unlocks",
    },
    KeySpec {
        key: "stack.project",
        kind: "string",
        default: "\"immich\"",
        range: "compose project name: [a-z0-9][a-z0-9_-]*",
        doc: "the compose project (label com.docker.compose.project) vaultd starts and stops",
    },
    KeySpec {
        key: "stack.docker_socket",
        kind: "path",
        default: "\"/var/run/docker.sock\"",
        range: "absolute path",
        doc: "the Docker Engine's API socket",
    },
    KeySpec {
        key: "stack.start_order",
        kind: "list of strings",
        default: "[]",
        range: "service names",
        doc: "for compose v1 projects, which write no depends_on label: the services in start order (each waits for the one before: healthy if it has a healthcheck, else started); ignored when the labels are there",
    },
    KeySpec {
        key: "stack.start_timeout_secs",
        kind: "integer",
        default: "120",
        range: "5–3600",
        doc: "how long a dependency may take to become started or healthy before the start fails and is rolled back",
    },
    KeySpec {
        key: "stack.default_stop_timeout_secs",
        kind: "integer",
        default: "30",
        range: "1–3600",
        doc: "the stop timeout (signal, then SIGKILL) for a service that has none in stop_timeouts or in its container (compose stop_grace_period)",
    },
    KeySpec {
        key: "stack.stop_timeouts",
        kind: "table of integers",
        default: "{}",
        range: "service = 1–3600",
        doc: "per-service stop timeouts in seconds, e.g. { database = 120 }; a drain's deadline can shorten them",
    },
    KeySpec {
        key: "stack.stop_signals",
        kind: "table of strings",
        default: "{}",
        range: "service = SIGNAME",
        doc: "per-service stop signals, e.g. { database = \"SIGINT\" } (Postgres' fast shutdown); else the container's own",
    },
    KeySpec {
        key: "stack.posture_gate",
        kind: "string",
        default: "\"block\"",
        range: "block, warn",
        doc: "whether posture findings at error level stop a start (block) or are only reported (warn)",
    },
    KeySpec {
        key: "stack.allowed_publish_addresses",
        kind: "list of strings",
        default: "[]",
        range: "IP addresses",
        doc: "host addresses containers may publish ports on besides loopback, e.g. the WireGuard address",
    },
    KeySpec {
        key: "stack.allowed_capabilities",
        kind: "list of strings",
        default: "[]",
        range: "capability names",
        doc: "capabilities containers may add (cap_add); any other is a finding at error level",
    },
    KeySpec {
        key: "stack.fix_restart_policy",
        kind: "bool",
        default: "false",
        range: "true, false",
        doc: "set always/unless-stopped restart policies to \"no\" through the Docker API before each start (the compose file is not touched)",
    },
    KeySpec {
        key: "stack.database_services",
        kind: "list of strings",
        default: "[\"database\"]",
        range: "compose service names",
        doc: "services that are databases: `check` warns when their stop timeout is under 30 s (Postgres needs its fast shutdown, not a SIGKILL)",
    },
    KeySpec {
        key: "power.threshold_percent",
        kind: "integer",
        default: "30",
        range: "1–95",
        doc: "drain when on battery and the charge is at or below this",
    },
    KeySpec {
        key: "power.min_time_to_empty_secs",
        kind: "integer",
        default: "600",
        range: "0–86400",
        doc: "drain when on battery and the time to empty is at or below this (0 turns it off)",
    },
    KeySpec {
        key: "power.on_battery_debounce_secs",
        kind: "integer",
        default: "5",
        range: "0–300",
        doc: "on battery must last this long before it counts (power flickers)",
    },
    KeySpec {
        key: "power.low_hold_secs",
        kind: "integer",
        default: "5",
        range: "0–300",
        doc: "a low reading must hold this long before it counts (a gauge's stray 1 % does not drain)",
    },
    KeySpec {
        key: "power.max_drain_secs",
        kind: "integer",
        default: "300",
        range: "10–3600",
        doc: "the longest a drain may take",
    },
    KeySpec {
        key: "power.drain_safety_margin_secs",
        kind: "integer",
        default: "60",
        range: "0–3600",
        doc: "kept in reserve below the battery's time to empty",
    },
    KeySpec {
        key: "power.power_off_after_drain",
        kind: "bool",
        default: "true",
        range: "true, false",
        doc: "power the host off (logind) after a power-loss drain",
    },
    KeySpec {
        key: "power.charge_end_threshold_percent",
        kind: "integer",
        default: "(unset)",
        range: "20–100",
        doc: "at start, set the battery's charge_control_end_threshold to this (e.g. 60, to keep an always-plugged battery healthy); a battery without the attribute is reported, not an error",
    },
    KeySpec {
        key: "immich.url",
        kind: "string",
        default: "\"http://127.0.0.1:2283\"",
        range: "http://HOST:PORT",
        doc: "Immich's server on this host, as the compose file publishes it",
    },
    KeySpec {
        key: "immich.api_key_file",
        kind: "path",
        default: "(unset)",
        range: "absolute path; root-owned, mode 0600 or 0640",
        doc: "a file holding an admin's API key (scopes queue.read + queue.update, or job.read + job.create before v2.4); unset: the queues are not paused before a drain",
    },
    KeySpec {
        key: "immich.request_timeout_ms",
        kind: "integer",
        default: "2000",
        range: "100–30000",
        doc: "each API request's limit: a server that is down or stuck never holds a drain up for longer",
    },
    KeySpec {
        key: "immich.ping_timeout_secs",
        kind: "integer",
        default: "20",
        range: "0–300",
        doc: "after the stack starts, how long the start waits for the server to answer and then resumes the queues vaultd paused; if it answers later, the health check (every 10 s while RUNNING) resumes them then. A drain wanted meanwhile waits at most this long",
    },
    KeySpec {
        key: "immich.poll_interval_ms",
        kind: "integer",
        default: "500",
        range: "50–10000",
        doc: "how often a drain looks at the active job counts while it waits for them",
    },
    KeySpec {
        key: "immich.upload_location",
        kind: "path",
        default: "(unset)",
        range: "absolute path",
        doc: "the host directory Immich's UPLOAD_LOCATION names (unset: the mountpoint); `check` looks for the `.immich` markers of its folders",
    },
    KeySpec {
        key: "host.wireguard_interface",
        kind: "string",
        default: "\"wg0\"",
        range: "an interface name",
        doc: "the WireGuard interface the phones come in through: it must exist and be up; its addresses may be listened on",
    },
    KeySpec {
        key: "host.wireguard_port",
        kind: "integer",
        default: "(unset)",
        range: "1–65535",
        doc: "the UDP port WireGuard must listen on (unset: whatever it listens on)",
    },
    KeySpec {
        key: "host.allowed_listeners",
        kind: "list of strings",
        default: "[\"udp/68\", \"udp/546\"]",
        range: "PROTO/PORT or PROTO/PORT@ADDRESS",
        doc: "sockets that may listen beyond loopback and WireGuard (the defaults are the DHCP clients)",
    },
    KeySpec {
        key: "host.gate",
        kind: "string",
        default: "\"block\"",
        range: "block, warn",
        doc: "host findings at error level (a listener off WireGuard, no firewall, WireGuard down): \"block\" the start, or only \"warn\"",
    },
];

/// Why a configuration file was refused. Every variant but `Read` names the line; every variant
/// but `Read` and `Syntax` names the dotted key. Display is one line, `file:line: key …`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: not valid TOML: {message}", path.display())]
    Syntax {
        path: PathBuf,
        line: usize,
        /// Counted in characters, from 1.
        column: usize,
        message: String,
    },
    #[error("{}:{line}: key `{key}` is unknown; {accepted}", path.display())]
    UnknownKey {
        path: PathBuf,
        line: usize,
        key: String,
        /// What the enclosing table accepts, e.g. "[daemon] accepts: socket_path, …".
        accepted: String,
    },
    #[error("{}:{line}: key `{key}` must be {expected}, not {found}", path.display())]
    WrongType {
        path: PathBuf,
        line: usize,
        key: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error("{}:{line}: key `{key}`: {value} is out of range ({allowed})", path.display())]
    OutOfRange {
        path: PathBuf,
        line: usize,
        key: String,
        value: String,
        /// The key's [`KeySpec::range`].
        allowed: &'static str,
    },
    #[error("{}:{line}: key `{key}`: {why}", path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        key: String,
        why: String,
    },
}

impl ConfigError {
    /// The 1-based line the error is on; `None` when the file could not be read.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Syntax { line, .. }
            | ConfigError::UnknownKey { line, .. }
            | ConfigError::WrongType { line, .. }
            | ConfigError::OutOfRange { line, .. }
            | ConfigError::Invalid { line, .. } => Some(*line),
        }
    }

    /// The dotted key (`power.threshold_percent`, or just the table for an unknown table).
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Read { .. } | ConfigError::Syntax { .. } => None,
            ConfigError::UnknownKey { key, .. }
            | ConfigError::WrongType { key, .. }
            | ConfigError::OutOfRange { key, .. }
            | ConfigError::Invalid { key, .. } => Some(key),
        }
    }
}

/// Reads and validates the file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, path)
}

/// Validates `text`; `origin` is only used to name the file in errors. The first problem found,
/// in file order, is returned.
pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
    let doc = Document::parse(text).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        let (line, column) = line_col(text, offset);
        ConfigError::Syntax {
            path: origin.to_owned(),
            line,
            column,
            message: one_line(e.message()),
        }
    })?;
    let walker = Walker { text, origin };
    let tables = tables();
    let mut config = Config::default();
    let root = doc.as_table();
    for (name, item) in root.iter() {
        let line = walker.line(root.key(name).and_then(Key::span).or_else(|| item.span()));
        if !tables.contains(&name) {
            return Err(ConfigError::UnknownKey {
                path: origin.to_owned(),
                line,
                key: name.to_owned(),
                accepted: format!("the tables are: {}", tables.join(", ")),
            });
        }
        // `[power]`, `power.x = …` and `power = { … }` are the same table in TOML; accept all.
        let Some(table) = item.as_table_like() else {
            return Err(ConfigError::WrongType {
                path: origin.to_owned(),
                line,
                key: name.to_owned(),
                expected: "a table ([section])",
                found: type_name(item),
            });
        };
        walker.table(name, table, &mut config)?;
    }
    Ok(config)
}

/// The tables SCHEMA knows, in SCHEMA's order.
fn tables() -> Vec<&'static str> {
    let mut tables: Vec<&'static str> = Vec::new();
    for (table, _) in SCHEMA.iter().filter_map(|s| s.key.split_once('.')) {
        if !tables.contains(&table) {
            tables.push(table);
        }
    }
    tables
}

struct Walker<'a> {
    text: &'a str,
    origin: &'a Path,
}

impl Walker<'_> {
    fn line(&self, span: Option<std::ops::Range<usize>>) -> usize {
        line_col(self.text, span.map_or(0, |s| s.start)).0
    }

    fn table(
        &self,
        name: &str,
        table: &dyn TableLike,
        config: &mut Config,
    ) -> Result<(), ConfigError> {
        for (key, item) in table.iter() {
            let dotted = format!("{name}.{key}");
            let line = self.line(table.key(key).and_then(Key::span).or_else(|| item.span()));
            let Some(spec) = SCHEMA.iter().find(|s| s.key == dotted) else {
                let accepted: Vec<&str> = SCHEMA
                    .iter()
                    .filter_map(|s| s.key.strip_prefix(name)?.strip_prefix('.'))
                    .collect();
                return Err(ConfigError::UnknownKey {
                    path: self.origin.to_owned(),
                    line,
                    key: dotted,
                    accepted: format!("[{name}] accepts: {}", accepted.join(", ")),
                });
            };
            let Some(value) = item.as_value() else {
                return Err(ConfigError::WrongType {
                    path: self.origin.to_owned(),
                    line,
                    key: dotted,
                    expected: "a value",
                    found: type_name(item),
                });
            };
            let at = At {
                spec,
                line,
                value,
                origin: self.origin,
            };
            apply(&at, config)?;
        }
        Ok(())
    }
}

/// One key's value, with what is needed to report on it.
struct At<'a> {
    spec: &'static KeySpec,
    line: usize,
    value: &'a Value,
    origin: &'a Path,
}

impl At<'_> {
    fn wrong(&self, expected: &'static str) -> ConfigError {
        ConfigError::WrongType {
            path: self.origin.to_owned(),
            line: self.line,
            key: self.spec.key.to_owned(),
            expected,
            found: value_type(self.value),
        }
    }

    fn invalid(&self, why: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.origin.to_owned(),
            line: self.line,
            key: self.spec.key.to_owned(),
            why: why.into(),
        }
    }

    fn string(&self) -> Result<String, ConfigError> {
        let s = self.value.as_str().ok_or_else(|| self.wrong("a string"))?;
        // Every string ends up in a path, a name or a syscall argument: a NUL cannot be passed
        // on, and a newline or escape would garble the logs that quote it. Refusing them here
        // beats an obscure failure at unlock time.
        if s.contains(char::is_control) {
            return Err(self.invalid(format!("{s:?} contains a control character")));
        }
        Ok(s.to_owned())
    }

    fn boolean(&self) -> Result<bool, ConfigError> {
        self.value
            .as_bool()
            .ok_or_else(|| self.wrong("true or false"))
    }

    /// An integer in `min..=max`; the error quotes the key's `range` from SCHEMA, which the
    /// `integer_bounds_match_the_schema` test holds to the same bounds.
    fn integer<T: TryFrom<i64>>(&self, min: i64, max: i64) -> Result<T, ConfigError> {
        let n = self
            .value
            .as_integer()
            .ok_or_else(|| self.wrong("an integer"))?;
        if !(min..=max).contains(&n) {
            return Err(ConfigError::OutOfRange {
                path: self.origin.to_owned(),
                line: self.line,
                key: self.spec.key.to_owned(),
                value: n.to_string(),
                allowed: self.spec.range,
            });
        }
        T::try_from(n).map_err(|_| self.invalid(format!("{n} does not fit")))
    }

    /// An absolute path, returned normalised (no `//`, `/./` or trailing `/`) so that later
    /// comparisons, e.g. of the mountpoint against a container's mounts, see one spelling.
    fn absolute_path(&self) -> Result<PathBuf, ConfigError> {
        let s = self.string()?;
        absolute(&s).map_err(|why| self.invalid(why))
    }

    /// An array of strings, each checked by `item`.
    fn list<T: PartialEq + std::fmt::Debug>(
        &self,
        item: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Vec<T>, ConfigError> {
        let array = self
            .value
            .as_array()
            .ok_or_else(|| self.wrong("a list of strings ([\"…\"])"))?;
        let mut out = Vec::new();
        for v in array {
            let s = v
                .as_str()
                .ok_or_else(|| self.wrong("a list of strings ([\"…\"])"))?;
            let parsed = item(s).map_err(|why| self.invalid(why))?;
            if out.contains(&parsed) {
                return Err(self.invalid(format!("{s:?} is listed twice")));
            }
            out.push(parsed);
        }
        Ok(out)
    }

    /// An inline table keyed by compose service name, each value checked by `value`.
    fn per_service<T>(
        &self,
        value: impl Fn(&Value) -> Result<T, String>,
    ) -> Result<BTreeMap<String, T>, ConfigError> {
        let table = self
            .value
            .as_inline_table()
            .ok_or_else(|| self.wrong("a table of services ({ service = … })"))?;
        let mut out = BTreeMap::new();
        for (service, v) in table.iter() {
            let service = service_name(service).map_err(|why| self.invalid(why))?;
            let v = value(v).map_err(|why| self.invalid(format!("{service}: {why}")))?;
            out.insert(service, v);
        }
        Ok(out)
    }

    fn group(&self) -> Result<String, ConfigError> {
        let s = self.string()?;
        // The portable subset useradd/groupadd accept by default (Debian's NAME_REGEX).
        let valid_start = s
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
        let valid_rest = s
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'));
        if s.len() > 32 || !valid_start || !valid_rest {
            return Err(self.invalid(format!(
                "{s:?} is not a group name (lower-case letters, digits, _ and -, at most 32)"
            )));
        }
        Ok(s)
    }
}

/// Checks that `s` is an absolute path without `..` and returns it normalised.
fn absolute(s: &str) -> Result<PathBuf, String> {
    let path = Path::new(s);
    if !path.has_root() {
        return Err(format!("{s:?} must be an absolute path"));
    }
    // `..` would let "/srv/immich/.." pass the "not /" check and would make the path mean
    // something else once a symlink sits in it; nothing here needs it.
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(format!("{s:?} must not contain `..`"));
    }
    Ok(path.components().collect())
}

fn apply(at: &At<'_>, c: &mut Config) -> Result<(), ConfigError> {
    match at.spec.key {
        "daemon.socket_path" => c.daemon.socket_path = at.absolute_path()?,
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
        "storage.allow_discards" => c.storage.allow_discards = at.boolean()?,
        "unlock.backoff_initial_secs" => c.unlock.backoff_initial_secs = at.integer(0, 60)?,
        "unlock.backoff_max_secs" => c.unlock.backoff_max_secs = at.integer(1, 86_400)?,
        "stack.project" => c.stack.project = project(at)?,
        "stack.docker_socket" => c.stack.docker_socket = at.absolute_path()?,
        "stack.start_order" => c.stack.start_order = at.list(service_name)?,
        "stack.start_timeout_secs" => c.stack.start_timeout_secs = at.integer(5, 3600)?,
        "stack.default_stop_timeout_secs" => {
            c.stack.default_stop_timeout_secs = at.integer(1, 3600)?;
        }
        "stack.stop_timeouts" => {
            c.stack.stop_timeouts = at.per_service(|v| {
                v.as_integer()
                    .filter(|n| (1..=3600).contains(n))
                    .and_then(|n| u64::try_from(n).ok())
                    .ok_or_else(|| "must be whole seconds, 1–3600".to_owned())
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
        "immich.request_timeout_ms" => c.immich.request_timeout_ms = at.integer(100, 30_000)?,
        "immich.ping_timeout_secs" => c.immich.ping_timeout_secs = at.integer(0, 300)?,
        "immich.poll_interval_ms" => c.immich.poll_interval_ms = at.integer(50, 10_000)?,
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
        "host.wireguard_port" => c.host.wireguard_port = Some(at.integer(1, 65_535)?),
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
        "power.threshold_percent" => c.power.threshold_percent = at.integer(1, 95)?,
        "power.min_time_to_empty_secs" => {
            c.power.min_time_to_empty_secs = at.integer(0, 86_400)?;
        }
        "power.on_battery_debounce_secs" => {
            c.power.on_battery_debounce_secs = at.integer(0, 300)?;
        }
        "power.low_hold_secs" => c.power.low_hold_secs = at.integer(0, 300)?,
        "power.max_drain_secs" => c.power.max_drain_secs = at.integer(10, 3600)?,
        "power.drain_safety_margin_secs" => {
            c.power.drain_safety_margin_secs = at.integer(0, 3600)?;
        }
        "power.power_off_after_drain" => c.power.power_off_after_drain = at.boolean()?,
        "power.charge_end_threshold_percent" => {
            c.power.charge_end_threshold_percent = Some(at.integer(20, 100)?);
        }
        // SCHEMA and this match are kept together; a key in one but not the other is a bug
        // caught by the `every_schema_key_is_applied_with_its_default` test.
        other => return Err(at.invalid(format!("{other} is in the schema but not applied"))),
    }
    Ok(())
}

/// A compose service name (compose allows [a-zA-Z0-9._-]).
fn service_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!("{s:?} is not a compose service name"))
    }
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

/// 1-based line and column of a byte offset. Columns count characters, as editors do.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    // An offset inside a character should not happen; counting bytes then is good enough.
    let column = text
        .get(line_start..offset)
        .map_or(offset - line_start, |s| s.chars().count());
    (line, column + 1)
}

/// toml_edit's messages can span lines; an error here is one line.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

fn type_name(item: &Item) -> &'static str {
    match item {
        Item::None => "nothing",
        Item::Value(v) => value_type(v),
        Item::Table(_) => "a table",
        Item::ArrayOfTables(_) => "an array of tables",
    }
}

fn value_type(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date-time",
        Value::Array(_) => "an array",
        Value::InlineTable(_) => "an inline table",
    }
}

#[cfg(test)]
mod tests;
