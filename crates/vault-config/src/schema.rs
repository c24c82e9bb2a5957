//! [`SCHEMA`]: the one list of keys, each with its type, its typed default and its range. The
//! parser walks it, [`Config::default`](crate::Config) is built from its defaults, the range
//! errors quote it, and docs/config.md and vaultd.toml(5) are its renderings.

use std::fmt;

/// One key of the file, for the walker and for the reference in docs/config.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySpec {
    /// `table.key`
    pub key: &'static str,
    pub kind: &'static str,
    /// What an absent key means; applied through the same code as a value in the file.
    pub default: DefaultValue,
    pub range: Range,
    pub doc: &'static str,
}

/// A key's default, typed. Displayed as written in TOML (`(unset)` for optional keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultValue {
    /// An optional key: absent means "not set".
    Unset,
    Int(i64),
    Str(&'static str),
    Bool(bool),
    Strings(&'static [&'static str]),
    /// `{}`: a per-service table with no entries.
    EmptyTable,
}

/// What a key accepts. Integer bounds are data, so that the parser checks and the docs show the
/// same numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// An integer in `min..=max`.
    Ints(i64, i64),
    /// A per-service table of integers, each in `min..=max`.
    PerService(i64, i64),
    /// Checked by the key's own code; this is what the docs say.
    Text(&'static str),
}

impl Range {
    /// The bounds of an integer key (or of each value of a per-service table).
    pub fn bounds(self) -> Option<(i64, i64)> {
        match self {
            Range::Ints(min, max) | Range::PerService(min, max) => Some((min, max)),
            Range::Text(_) => None,
        }
    }
}

impl fmt::Display for DefaultValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DefaultValue::Unset => f.write_str("(unset)"),
            DefaultValue::Int(n) => write!(f, "{n}"),
            DefaultValue::Str(s) => write!(f, "\"{s}\""),
            DefaultValue::Bool(b) => write!(f, "{b}"),
            DefaultValue::Strings(items) => {
                let quoted: Vec<String> = items.iter().map(|s| format!("\"{s}\"")).collect();
                write!(f, "[{}]", quoted.join(", "))
            }
            DefaultValue::EmptyTable => f.write_str("{}"),
        }
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Range::Ints(min, max) => write!(f, "{min}–{max}"),
            Range::PerService(min, max) => write!(f, "service = {min}–{max}"),
            Range::Text(s) => f.write_str(s),
        }
    }
}

impl DefaultValue {
    /// The default as a TOML value, to be applied like one read from the file; `None` when
    /// unset.
    pub(crate) fn to_toml(self) -> Option<toml_edit::Value> {
        Some(match self {
            DefaultValue::Unset => return None,
            DefaultValue::Int(n) => n.into(),
            DefaultValue::Str(s) => s.into(),
            DefaultValue::Bool(b) => b.into(),
            DefaultValue::Strings(items) => {
                toml_edit::Value::Array(items.iter().copied().collect())
            }
            DefaultValue::EmptyTable => {
                toml_edit::Value::InlineTable(toml_edit::InlineTable::new())
            }
        })
    }
}

/// Every key the file may hold, grouped by table: the walker accepts exactly these, and
/// docs/config.md and packaging/vaultd.toml are tested against them.
pub const SCHEMA: &[KeySpec] = &[
    KeySpec {
        key: "daemon.socket_path",
        kind: "path",
        default: DefaultValue::Str("/run/vaultd/vaultd.sock"),
        range: Range::Text("absolute path"),
        doc: "the control socket vaultctl talks to",
    },
    KeySpec {
        key: "daemon.socket_mode",
        kind: "string",
        default: DefaultValue::Str("0660"),
        range: Range::Text("octal mode, no write for others"),
        doc: "the socket's permission bits",
    },
    KeySpec {
        key: "daemon.socket_group",
        kind: "group",
        default: DefaultValue::Str("vaultd"),
        range: Range::Text("an existing group name"),
        doc: "the group that owns the socket; readers and admins must be in it to connect",
    },
    KeySpec {
        key: "daemon.state_dir",
        kind: "path",
        default: DefaultValue::Str("/var/lib/vaultd"),
        range: Range::Text("absolute path"),
        doc: "where vaultd keeps what must survive a restart",
    },
    KeySpec {
        key: "access.reader_group",
        kind: "group",
        default: DefaultValue::Str("vaultd"),
        range: Range::Text("group name"),
        doc: "members may call Status, Watch and Check",
    },
    KeySpec {
        key: "access.admin_group",
        kind: "group",
        default: DefaultValue::Str("vaultd-admin"),
        range: Range::Text("group name"),
        doc: "members may also Unlock, Start, Stop and Lock",
    },
    KeySpec {
        key: "storage.device",
        kind: "string",
        default: DefaultValue::Unset,
        range: Range::Text("absolute path or UUID=…"),
        doc: "the LUKS2 partition holding the photos",
    },
    KeySpec {
        key: "storage.mapping_name",
        kind: "string",
        default: DefaultValue::Str("immich-data"),
        range: Range::Text("1–127 of A–Z a–z 0–9 . _ -"),
        doc: "the device-mapper name: /dev/mapper/<name>",
    },
    KeySpec {
        key: "storage.mountpoint",
        kind: "path",
        default: DefaultValue::Str("/srv/immich"),
        range: Range::Text("absolute path, not /"),
        doc: "where the volume is mounted; the stack's data path",
    },
    KeySpec {
        key: "storage.filesystem",
        kind: "string",
        default: DefaultValue::Str("ext4"),
        range: Range::Text("a filesystem type the kernel knows"),
        doc: "the filesystem inside the LUKS volume",
    },
    KeySpec {
        key: "storage.mount_options",
        kind: "string",
        default: DefaultValue::Str("noatime,nodev,nosuid"),
        range: Range::Text("comma-separated, as in fstab"),
        doc: "options for mounting it",
    },
    KeySpec {
        key: "storage.fsck",
        kind: "string",
        default: DefaultValue::Str("report"),
        range: Range::Text("none, report, repair"),
        doc: "before mounting: nothing, fsck -n (problems stop the unlock), or fsck -p",
    },
    KeySpec {
        key: "storage.mount_by",
        kind: "string",
        default: DefaultValue::Str("auto"),
        range: Range::Text("auto, systemd, vaultd"),
        doc: "who mounts and unmounts the volume: systemd (a transient .mount unit, needed under the hardened unit), vaultd (mount(2)), or auto: systemd when vaultd runs as a systemd service",
    },
    KeySpec {
        key: "storage.allow_discards",
        kind: "bool",
        default: DefaultValue::Bool(false),
        range: Range::Text("true, false"),
        doc: "pass TRIM through the encryption (leaks which blocks are free)",
    },
    KeySpec {
        key: "unlock.backoff_initial_secs",
        kind: "integer",
        default: DefaultValue::Int(1),
        range: Range::Ints(0, 60),
        doc: "after a wrong passphrase the next unlock waits this long; the wait doubles with each further failure",
    },
    KeySpec {
        key: "unlock.backoff_max_secs",
        kind: "integer",
        default: DefaultValue::Int(300),
        range: Range::Ints(1, 86400),
        doc: "the longest wait between failed unlocks",
    },
    KeySpec {
        key: "stack.project",
        kind: "string",
        default: DefaultValue::Str("immich"),
        range: Range::Text("compose project name: [a-z0-9][a-z0-9_-]*"),
        doc: "the compose project (label com.docker.compose.project) vaultd starts and stops",
    },
    KeySpec {
        key: "stack.docker_socket",
        kind: "path",
        default: DefaultValue::Str("/var/run/docker.sock"),
        range: Range::Text("absolute path"),
        doc: "the Docker Engine's API socket",
    },
    KeySpec {
        key: "stack.start_order",
        kind: "list of strings",
        default: DefaultValue::Strings(&[]),
        range: Range::Text("service names"),
        doc: "for compose v1 projects, which write no depends_on label: the services in start order (each waits for the one before: healthy if it has a healthcheck, else started); ignored when the labels are there",
    },
    KeySpec {
        key: "stack.start_timeout_secs",
        kind: "integer",
        default: DefaultValue::Int(120),
        range: Range::Ints(5, 3600),
        doc: "how long a dependency may take to become started or healthy before the start fails and is rolled back",
    },
    KeySpec {
        key: "stack.default_stop_timeout_secs",
        kind: "integer",
        default: DefaultValue::Int(30),
        range: Range::Ints(1, 3600),
        doc: "the stop timeout (signal, then SIGKILL) for a service that has none in stop_timeouts or in its container (compose stop_grace_period)",
    },
    KeySpec {
        key: "stack.stop_timeouts",
        kind: "table of integers",
        default: DefaultValue::EmptyTable,
        range: Range::PerService(1, 3600),
        doc: "per-service stop timeouts in seconds, e.g. { database = 120 }; a drain's deadline can shorten them",
    },
    KeySpec {
        key: "stack.stop_signals",
        kind: "table of strings",
        default: DefaultValue::EmptyTable,
        range: Range::Text("service = SIGNAME"),
        doc: "per-service stop signals, e.g. { database = \"SIGINT\" } (Postgres' fast shutdown); else the container's own",
    },
    KeySpec {
        key: "stack.posture_gate",
        kind: "string",
        default: DefaultValue::Str("block"),
        range: Range::Text("block, warn"),
        doc: "whether posture findings at error level stop a start (block) or are only reported (warn)",
    },
    KeySpec {
        key: "stack.allowed_publish_addresses",
        kind: "list of strings",
        default: DefaultValue::Strings(&[]),
        range: Range::Text("IP addresses"),
        doc: "host addresses containers may publish ports on besides loopback, e.g. the WireGuard address",
    },
    KeySpec {
        key: "stack.allowed_capabilities",
        kind: "list of strings",
        default: DefaultValue::Strings(&[]),
        range: Range::Text("capability names"),
        doc: "capabilities containers may add (cap_add); any other is a finding at error level",
    },
    KeySpec {
        key: "stack.fix_restart_policy",
        kind: "bool",
        default: DefaultValue::Bool(false),
        range: Range::Text("true, false"),
        doc: "set always/unless-stopped restart policies to \"no\" through the Docker API before each start (the compose file is not touched)",
    },
    KeySpec {
        key: "stack.database_services",
        kind: "list of strings",
        default: DefaultValue::Strings(&["database"]),
        range: Range::Text("compose service names"),
        doc: "services that are databases: `check` warns when their stop timeout is under 30 s (Postgres needs its fast shutdown, not a SIGKILL)",
    },
    KeySpec {
        key: "power.threshold_percent",
        kind: "integer",
        default: DefaultValue::Int(30),
        range: Range::Ints(1, 95),
        doc: "drain when on battery and the charge is at or below this",
    },
    KeySpec {
        key: "power.min_time_to_empty_secs",
        kind: "integer",
        default: DefaultValue::Int(600),
        range: Range::Ints(0, 86400),
        doc: "drain when on battery and the time to empty is at or below this (0 turns it off)",
    },
    KeySpec {
        key: "power.on_battery_debounce_secs",
        kind: "integer",
        default: DefaultValue::Int(5),
        range: Range::Ints(0, 300),
        doc: "on battery must last this long before it counts (power flickers)",
    },
    KeySpec {
        key: "power.low_hold_secs",
        kind: "integer",
        default: DefaultValue::Int(5),
        range: Range::Ints(0, 300),
        doc: "a low reading must hold this long before it counts (a gauge's stray 1 % does not drain)",
    },
    KeySpec {
        key: "power.max_drain_secs",
        kind: "integer",
        default: DefaultValue::Int(300),
        range: Range::Ints(10, 3600),
        doc: "the longest a drain may take",
    },
    KeySpec {
        key: "power.drain_safety_margin_secs",
        kind: "integer",
        default: DefaultValue::Int(60),
        range: Range::Ints(0, 3600),
        doc: "kept in reserve below the battery's time to empty",
    },
    KeySpec {
        key: "power.power_off_after_drain",
        kind: "bool",
        default: DefaultValue::Bool(true),
        range: Range::Text("true, false"),
        doc: "power the host off (logind) after a power-loss drain",
    },
    KeySpec {
        key: "power.charge_end_threshold_percent",
        kind: "integer",
        default: DefaultValue::Unset,
        range: Range::Ints(20, 100),
        doc: "at start, set the battery's charge_control_end_threshold to this (e.g. 60, to keep an always-plugged battery healthy); a battery without the attribute is reported, not an error",
    },
    KeySpec {
        key: "nut.upses",
        kind: "list of strings",
        default: DefaultValue::Strings(&[]),
        range: Range::Text("UPSNAME@HOST or UPSNAME@HOST:PORT"),
        doc: "UPSes to follow through NUT's upsd, each a power source beside the laptop's battery: FSD, or LB off line power, drains at once; on battery below power.threshold_percent or power.min_time_to_empty_secs after the debounce and the hold (a restart applies a change)",
    },
    KeySpec {
        key: "nut.username",
        kind: "string",
        default: DefaultValue::Unset,
        range: Range::Text("a upsd.users name"),
        doc: "log in to upsd as this user (USERNAME/PASSWORD) where its ACLs ask for one; with nut.password_file",
    },
    KeySpec {
        key: "nut.password_file",
        kind: "path",
        default: DefaultValue::Unset,
        range: Range::Text("absolute path; root-owned, mode 0600 or 0640"),
        doc: "a file holding nut.username's password",
    },
    KeySpec {
        key: "nut.poll_interval_ms",
        kind: "integer",
        default: DefaultValue::Int(2000),
        range: Range::Ints(200, 60000),
        doc: "how often each UPS's variables are read (upsd has no push): a change is seen within this",
    },
    KeySpec {
        key: "nut.request_timeout_ms",
        kind: "integer",
        default: DefaultValue::Int(2000),
        range: Range::Ints(100, 30000),
        doc: "each connection and request to upsd's limit: a upsd that hangs is a UPS that does not answer",
    },
    KeySpec {
        key: "backup.drives",
        kind: "list of strings",
        default: DefaultValue::Strings(&[]),
        range: Range::Text("LUKS2 UUIDs, as `vaultctl backup init` prints them"),
        doc: "the backup drives: plugging one in while the vault is unlocked starts a backup (backup.on_plug); its key is on the vault volume",
    },
    KeySpec {
        key: "backup.on_plug",
        kind: "bool",
        default: DefaultValue::Bool(true),
        range: Range::Text("true, false"),
        doc: "back up when a drive of backup.drives is plugged in (while LOCKED: once the vault is unlocked); false: only `vaultctl backup`",
    },
    KeySpec {
        key: "backup.keep_daily",
        kind: "integer",
        default: DefaultValue::Int(7),
        range: Range::Ints(0, 10000),
        doc: "snapshots kept: the last of each of this many days (restic forget --keep-daily)",
    },
    KeySpec {
        key: "backup.keep_weekly",
        kind: "integer",
        default: DefaultValue::Int(4),
        range: Range::Ints(0, 10000),
        doc: "snapshots kept: the last of each of this many weeks",
    },
    KeySpec {
        key: "backup.keep_monthly",
        kind: "integer",
        default: DefaultValue::Int(12),
        range: Range::Ints(0, 10000),
        doc: "snapshots kept: the last of each of this many months",
    },
    KeySpec {
        key: "backup.keep_yearly",
        kind: "integer",
        default: DefaultValue::Int(3),
        range: Range::Ints(0, 10000),
        doc: "snapshots kept: the last of each of this many years",
    },
    KeySpec {
        key: "backup.include_thumbs",
        kind: "bool",
        default: DefaultValue::Bool(false),
        range: Range::Text("true, false"),
        doc: "back up Immich's thumbnails too (they can be regenerated from the originals)",
    },
    KeySpec {
        key: "backup.include_encoded_video",
        kind: "bool",
        default: DefaultValue::Bool(false),
        range: Range::Text("true, false"),
        doc: "back up Immich's transcoded videos too (they can be regenerated from the originals)",
    },
    KeySpec {
        key: "backup.max_age_days",
        kind: "integer",
        default: DefaultValue::Int(7),
        range: Range::Ints(1, 3650),
        doc: "`vaultctl check` warns when the last good backup is older than this",
    },
    KeySpec {
        key: "backup.verify_parts",
        kind: "integer",
        default: DefaultValue::Int(12),
        range: Range::Ints(1, 1000),
        doc: "each run reads back one part in this many of the repository's data (restic check --read-data-subset), so all of it is read over this many runs",
    },
    KeySpec {
        key: "backup.sample_files",
        kind: "integer",
        default: DefaultValue::Int(8),
        range: Range::Ints(0, 1000),
        doc: "each run restores this many random unchanged files onto the drive and compares them byte for byte with the vault",
    },
    KeySpec {
        key: "backup.restic",
        kind: "path",
        default: DefaultValue::Str("/usr/bin/restic"),
        range: Range::Text("absolute path"),
        doc: "the restic binary (Debian's package)",
    },
    KeySpec {
        key: "immich.url",
        kind: "string",
        default: DefaultValue::Str("http://127.0.0.1:2283"),
        range: Range::Text("http://HOST:PORT"),
        doc: "Immich's server on this host, as the compose file publishes it",
    },
    KeySpec {
        key: "immich.api_key_file",
        kind: "path",
        default: DefaultValue::Unset,
        range: Range::Text("absolute path; root-owned, mode 0600 or 0640"),
        doc: "a file holding an admin's API key (scopes queue.read + queue.update, or job.read + job.create before v2.4); unset: the queues are not paused before a drain",
    },
    KeySpec {
        key: "immich.request_timeout_ms",
        kind: "integer",
        default: DefaultValue::Int(2000),
        range: Range::Ints(100, 30000),
        doc: "each API request's limit: a server that is down or stuck never holds a drain up for longer",
    },
    KeySpec {
        key: "immich.ping_timeout_secs",
        kind: "integer",
        default: DefaultValue::Int(20),
        range: Range::Ints(0, 300),
        doc: "after the stack starts, how long the start waits for the server to answer and then resumes the queues vaultd paused; if it answers later, the health check (every 10 s while RUNNING) resumes them then. A drain wanted meanwhile waits at most this long",
    },
    KeySpec {
        key: "immich.poll_interval_ms",
        kind: "integer",
        default: DefaultValue::Int(500),
        range: Range::Ints(50, 10000),
        doc: "how often a drain looks at the active job counts while it waits for them",
    },
    KeySpec {
        key: "immich.upload_location",
        kind: "path",
        default: DefaultValue::Unset,
        range: Range::Text("absolute path"),
        doc: "the host directory Immich's UPLOAD_LOCATION names (unset: the mountpoint); `check` looks for the `.immich` markers of its folders",
    },
    KeySpec {
        key: "host.wireguard_interface",
        kind: "string",
        default: DefaultValue::Str("wg0"),
        range: Range::Text("an interface name"),
        doc: "the WireGuard interface the phones come in through: it must exist and be up; its addresses may be listened on",
    },
    KeySpec {
        key: "host.wireguard_port",
        kind: "integer",
        default: DefaultValue::Unset,
        range: Range::Ints(1, 65535),
        doc: "the UDP port WireGuard must listen on (unset: whatever it listens on)",
    },
    KeySpec {
        key: "host.allowed_listeners",
        kind: "list of strings",
        default: DefaultValue::Strings(&["udp/68", "udp/546"]),
        range: Range::Text("PROTO/PORT or PROTO/PORT@ADDRESS"),
        doc: "sockets that may listen beyond loopback and WireGuard (the defaults are the DHCP clients)",
    },
    KeySpec {
        key: "host.gate",
        kind: "string",
        default: DefaultValue::Str("block"),
        range: Range::Text("block, warn"),
        doc: "host findings at error level (a listener off WireGuard, no firewall, WireGuard down): \"block\" the start, or only \"warn\"",
    },
    KeySpec {
        key: "notify.command",
        kind: "path",
        default: DefaultValue::Unset,
        range: Range::Text("absolute path"),
        doc: "a program run once per notice, like NUT's NOTIFYCMD: the notice in VAULTD_NOTICE_* variables and as JSON on stdin (unset: no hook)",
    },
    KeySpec {
        key: "notify.command_user",
        kind: "string",
        default: DefaultValue::Str("nobody"),
        range: Range::Text("a user name"),
        doc: "the user the hook runs as (under systemd, PID 1 starts it as this user; by hand, vaultd switches to it and drops its groups); root is refused unless notify.command_allow_root",
    },
    KeySpec {
        key: "notify.command_allow_root",
        kind: "bool",
        default: DefaultValue::Bool(false),
        range: Range::Text("true, false"),
        doc: "let notify.command_user be root: the hook then runs with every privilege vaultd has",
    },
    KeySpec {
        key: "notify.command_timeout_secs",
        kind: "integer",
        default: DefaultValue::Int(10),
        range: Range::Ints(1, 300),
        doc: "how long the hook may run; past it, its process group is killed and the notice is kept for a retry",
    },
    KeySpec {
        key: "notify.command_min_severity",
        kind: "string",
        default: DefaultValue::Str("info"),
        range: Range::Text("info, warning, critical"),
        doc: "the least severity the hook is run for",
    },
    KeySpec {
        key: "notify.ntfy_url",
        kind: "string",
        default: DefaultValue::Unset,
        range: Range::Text("http://HOST[:PORT]/TOPIC"),
        doc: "a self-hosted ntfy server and topic, reached over the VPN: each notice is POSTed there (unset: no ntfy)",
    },
    KeySpec {
        key: "notify.ntfy_token_file",
        kind: "path",
        default: DefaultValue::Unset,
        range: Range::Text("absolute path; root-owned, mode 0600 or 0640"),
        doc: "a file holding an ntfy access token, sent as Authorization: Bearer (unset: no auth)",
    },
    KeySpec {
        key: "notify.ntfy_min_severity",
        kind: "string",
        default: DefaultValue::Str("info"),
        range: Range::Text("info, warning, critical"),
        doc: "the least severity sent to ntfy",
    },
    KeySpec {
        key: "notify.gotify_url",
        kind: "string",
        default: DefaultValue::Unset,
        range: Range::Text("http://HOST[:PORT][/PATH]"),
        doc: "a self-hosted Gotify server, reached over the VPN: notices are POSTed to its /message (unset: no Gotify); with notify.gotify_token_file",
    },
    KeySpec {
        key: "notify.gotify_token_file",
        kind: "path",
        default: DefaultValue::Unset,
        range: Range::Text("absolute path; root-owned, mode 0600 or 0640"),
        doc: "a file holding the Gotify application token, sent as X-Gotify-Key",
    },
    KeySpec {
        key: "notify.gotify_min_severity",
        kind: "string",
        default: DefaultValue::Str("info"),
        range: Range::Text("info, warning, critical"),
        doc: "the least severity sent to Gotify",
    },
    KeySpec {
        key: "notify.webhook_url",
        kind: "string",
        default: DefaultValue::Unset,
        range: Range::Text("http://HOST[:PORT]/PATH"),
        doc: "a URL each notice is POSTed to as JSON (unset: no webhook)",
    },
    KeySpec {
        key: "notify.webhook_min_severity",
        kind: "string",
        default: DefaultValue::Str("info"),
        range: Range::Text("info, warning, critical"),
        doc: "the least severity sent to the webhook",
    },
    KeySpec {
        key: "notify.rate_limit_per_hour",
        kind: "integer",
        default: DefaultValue::Int(30),
        range: Range::Ints(1, 3600),
        doc: "at most this many notices an hour on each channel; critical ones pass (and count); the next one sent says how many were dropped",
    },
    KeySpec {
        key: "notify.dedup_secs",
        kind: "integer",
        default: DefaultValue::Int(300),
        range: Range::Ints(0, 86400),
        doc: "a flapping alarm (or power source): within this window, its first notice and one change back are sent, later ones are held and the latest sent at the window's end with their count (0: off)",
    },
    KeySpec {
        key: "notify.retry_max_secs",
        kind: "integer",
        default: DefaultValue::Int(300),
        range: Range::Ints(1, 86400),
        doc: "the longest wait between tries of a notice that could not be delivered (5 s, doubling); kept in the state directory until delivered, across restarts",
    },
    KeySpec {
        key: "notify.http_timeout_secs",
        kind: "integer",
        default: DefaultValue::Int(10),
        range: Range::Ints(1, 60),
        doc: "each HTTP delivery's limit (ntfy, Gotify, webhook)",
    },
    KeySpec {
        key: "notify.poweroff_wait_secs",
        kind: "integer",
        default: DefaultValue::Int(5),
        range: Range::Ints(0, 60),
        doc: "before powering the host off, wait at most this long (and never past the drain's deadline) for the powering-off notice to go out",
    },
    KeySpec {
        key: "notify.unlock_reminder_mins",
        kind: "integer",
        default: DefaultValue::Int(60),
        range: Range::Ints(0, 10080),
        doc: "if vaultd started (at boot) and the vault is still LOCKED and was never unlocked this long after, say so once (0: off)",
    },
    KeySpec {
        key: "history.max_bytes",
        kind: "integer",
        default: DefaultValue::Int(1048576),
        range: Range::Ints(65536, 1073741824),
        doc: "the history of unlocks, drains, alarms and power changes in the state directory (history.jsonl and its one rotation) holds at most this much",
    },
];
