//! Each key's checks, one problem at a time.

use super::*;

/// A valid file of several tables; `bad` replaces the line that starts like it (same key), so
/// an error can be placed on a known line of a realistic file.
fn with_line(bad: &str) -> (String, usize) {
    let base = [
        "# vaultd",
        "[daemon]",
        "socket_path = \"/run/vaultd/vaultd.sock\"",
        "socket_mode = \"0660\"",
        "",
        "[storage]",
        "mapping_name = \"immich-data\"",
        "mountpoint = \"/srv/immich\"",
        "",
        "[power]",
        "threshold_percent = 30",
        "max_drain_secs = 300",
    ];
    let key = bad.split('=').next().expect("key").trim();
    let index = base
        .iter()
        .position(|l| l.split('=').next().is_some_and(|k| k.trim() == key))
        .unwrap_or_else(|| panic!("no line for {key}"));
    let mut lines: Vec<&str> = base.to_vec();
    lines[index] = bad;
    (lines.join("\n") + "\n", index + 1)
}

#[test]
fn an_empty_file_is_all_defaults() {
    assert_eq!(parse("", p()).expect("parse"), Config::default());
    assert_eq!(
        parse("# only a comment\n\n[power]\n", p()).expect("parse"),
        Config::default()
    );
}

#[test]
fn a_full_file_sets_every_key() {
    let text = r#"
[daemon]
socket_path = "/run/v/v.sock"
socket_mode = "0640"
socket_group = "photos"
state_dir = "/var/lib/v"

[access]
reader_group = "photos"
admin_group = "wheel"

[storage]
device = "UUID=0123abcd-0000-4000-8000-00000000beef"
mapping_name = "photos"
mountpoint = "/srv/photos"
filesystem = "xfs"
mount_options = "noatime"
fsck = "repair"
fsck_limit_minutes = 45
full_check_limit_minutes = 600
allow_discards = true
mount_by = "systemd"

[unlock]
backoff_initial_secs = 2
backoff_max_secs = 600

[stack]
project = "photos-2"
docker_socket = "/run/docker.sock"
start_order = ["database", "redis", "immich-server"]
start_timeout_secs = 300
default_stop_timeout_secs = 20
stop_timeouts = { database = 120, "immich-server" = 30 }
stop_signals = { database = "INT" }
posture_gate = "warn"
allowed_publish_addresses = ["10.8.0.1", "fd00::0001"]
allowed_capabilities = ["cap_net_bind_service"]
compose_file = "/srv/immich-app//docker-compose.yml"
compose_command = "docker-compose"
fix_restart_policy = true

[power]
threshold_percent = 25
min_time_to_empty_secs = 900
on_battery_debounce_secs = 10
max_drain_secs = 600
drain_safety_margin_secs = 120
power_off_after_drain = false
charge_end_threshold_percent = 60

[nut]
upses = ["myups@127.0.0.1", "rack@[fd00::2]:3500"]
username = "vaultd"
password_file = "/etc/vaultd/nut-password"
poll_interval_ms = 1000
request_timeout_ms = 500

[immich]
url = "http://127.0.0.1:3001"
api_key_file = "/etc/vaultd/immich-api-key"
request_timeout_ms = 1500
ping_timeout_secs = 60
poll_interval_ms = 250
upload_location = "/srv/photos/immich"

[host]
wireguard_interface = "wg-home"
wireguard_port = 51820
allowed_listeners = ["udp/68", "tcp/22@192.168.1.5"]
gate = "warn"

[notify]
command = "/usr/local/lib/vaultd/notify-hook"
command_user = "vaultd-notify"
command_timeout_secs = 20
command_min_severity = "warning"
ntfy_url = "http://10.8.0.1:8090/vault"
ntfy_token_file = "/etc/vaultd/ntfy-token"
gotify_url = "http://10.8.0.1:8091/gotify"
gotify_token_file = "/etc/vaultd/gotify-token"
gotify_min_severity = "critical"
webhook_url = "http://10.8.0.1:9000/hook"
rate_limit_per_hour = 10
dedup_secs = 0
retry_max_secs = 60
poweroff_wait_secs = 3
unlock_reminder_mins = 0

[history]
max_bytes = 65536

[unclean]
start = "ask"

[backup]
drives = ["0A1B2C3D-0000-4000-8000-00000000ABCD"]
on_plug = false
keep_daily = 3
keep_weekly = 0
keep_monthly = 6
keep_yearly = 1
include_thumbs = true
include_encoded_video = false
max_age_days = 14
verify_parts = 4
sample_files = 2
restic = "/opt/restic"
offsite_repository = "sftp:vault@10.8.0.5:/srv/backups/laptop"
offsite_port = 2222
offsite_every_hours = 12
"#;
    let expected = Config {
        daemon: DaemonConfig {
            socket_path: "/run/v/v.sock".into(),
            socket_mode: 0o640,
            socket_group: "photos".into(),
            state_dir: "/var/lib/v".into(),
        },
        access: AccessConfig {
            reader_group: "photos".into(),
            admin_group: "wheel".into(),
        },
        storage: StorageConfig {
            device: Some("UUID=0123abcd-0000-4000-8000-00000000beef".into()),
            mapping_name: "photos".into(),
            mountpoint: "/srv/photos".into(),
            filesystem: "xfs".into(),
            mount_options: "noatime".into(),
            fsck: Fsck::Repair,
            fsck_limit_minutes: 45,
            full_check_limit_minutes: 600,
            allow_discards: true,
            mount_by: MountBy::Systemd,
        },
        unlock: UnlockConfig {
            backoff_initial_secs: 2,
            backoff_max_secs: 600,
        },
        stack: StackConfig {
            project: "photos-2".into(),
            docker_socket: "/run/docker.sock".into(),
            start_order: vec!["database".into(), "redis".into(), "immich-server".into()],
            start_timeout_secs: 300,
            default_stop_timeout_secs: 20,
            stop_timeouts: [("database".into(), 120), ("immich-server".into(), 30)].into(),
            stop_signals: [("database".into(), "SIGINT".into())].into(),
            posture_gate: PostureGate::Warn,
            allowed_publish_addresses: vec!["10.8.0.1".into(), "fd00::1".into()],
            allowed_capabilities: vec!["NET_BIND_SERVICE".into()],
            fix_restart_policy: true,
            database_services: vec!["database".into()],
            compose_file: Some("/srv/immich-app/docker-compose.yml".into()),
            compose_command: ComposeCommand::Standalone,
        },
        power: PowerConfig {
            threshold_percent: 25,
            min_time_to_empty_secs: 900,
            on_battery_debounce_secs: 10,
            low_hold_secs: 5,
            max_drain_secs: 600,
            drain_safety_margin_secs: 120,
            power_off_after_drain: false,
            charge_end_threshold_percent: Some(60),
        },
        nut: NutConfig {
            upses: vec!["myups@127.0.0.1:3493".into(), "rack@[fd00::2]:3500".into()],
            username: Some("vaultd".into()),
            password_file: Some("/etc/vaultd/nut-password".into()),
            poll_interval_ms: 1000,
            request_timeout_ms: 500,
        },
        backup: BackupConfig {
            drives: vec!["0a1b2c3d-0000-4000-8000-00000000abcd".into()],
            on_plug: false,
            keep_daily: 3,
            keep_weekly: 0,
            keep_monthly: 6,
            keep_yearly: 1,
            include_thumbs: true,
            include_encoded_video: false,
            max_age_days: 14,
            verify_parts: 4,
            sample_files: 2,
            restic: "/opt/restic".into(),
            offsite_repository: Some("sftp:vault@10.8.0.5:/srv/backups/laptop".into()),
            offsite_port: 2222,
            offsite_ssh_key: "/etc/vaultd/offsite-ssh-key".into(),
            offsite_known_hosts: "/etc/vaultd/offsite-known-hosts".into(),
            offsite_every_hours: 12,
        },
        immich: ImmichConfig {
            url: "http://127.0.0.1:3001".into(),
            api_key_file: Some("/etc/vaultd/immich-api-key".into()),
            request_timeout_ms: 1500,
            ping_timeout_secs: 60,
            poll_interval_ms: 250,
            upload_location: Some("/srv/photos/immich".into()),
        },
        host: HostConfig {
            wireguard_interface: "wg-home".into(),
            wireguard_port: Some(51820),
            allowed_listeners: vec![
                "udp/68".parse().expect("rule"),
                "tcp/22@192.168.1.5".parse().expect("rule"),
            ],
            gate: PostureGate::Warn,
        },
        notify: NotifyConfig {
            command: Some("/usr/local/lib/vaultd/notify-hook".into()),
            command_user: "vaultd-notify".into(),
            command_allow_root: false,
            command_timeout_secs: 20,
            command_min_severity: "warning".into(),
            ntfy_url: Some("http://10.8.0.1:8090/vault".into()),
            ntfy_token_file: Some("/etc/vaultd/ntfy-token".into()),
            ntfy_min_severity: "info".into(),
            gotify_url: Some("http://10.8.0.1:8091/gotify".into()),
            gotify_token_file: Some("/etc/vaultd/gotify-token".into()),
            gotify_min_severity: "critical".into(),
            webhook_url: Some("http://10.8.0.1:9000/hook".into()),
            webhook_min_severity: "info".into(),
            rate_limit_per_hour: 10,
            dedup_secs: 0,
            retry_max_secs: 60,
            http_timeout_secs: 10,
            poweroff_wait_secs: 3,
            unlock_reminder_mins: 0,
        },
        history: HistoryConfig { max_bytes: 65536 },
        unclean: UncleanConfig {
            start: UncleanStart::Ask,
        },
    };
    assert_eq!(parse(text, p()).expect("parse"), expected);
}

#[test]
fn notify_urls_are_plain_http_and_the_hook_is_not_root_unless_allowed() {
    assert!(
        err("[notify]\nntfy_url = \"https://ntfy.sh/vault\"\n")
            .to_string()
            .contains("WireGuard")
    );
    assert!(
        err("[notify]\nntfy_url = \"http://10.8.0.1:8090\"\n")
            .to_string()
            .contains("topic")
    );
    assert!(
        err("[notify]\nwebhook_url = \"http://u:pw@10.8.0.1/x\"\n")
            .to_string()
            .contains("password")
    );
    assert!(
        err("[notify]\nwebhook_min_severity = \"loud\"\n")
            .to_string()
            .contains("info, warning, critical")
    );
    let root = err("[notify]\ncommand_user = \"root\"\n");
    assert_eq!(root.key(), Some("notify.command_user"));
    assert!(root.to_string().contains("nobody"), "{root}");
    let allowed = parse(
        "[notify]\ncommand_user = \"root\"\ncommand_allow_root = true\n",
        p(),
    )
    .expect("allowed");
    assert!(allowed.notify.command_allow_root);
    let gotify = err("[notify]\ngotify_url = \"http://10.8.0.1:8091\"\n");
    assert!(gotify.to_string().contains("application token"), "{gotify}");
}

#[test]
fn dotted_and_inline_tables_are_the_same_tables() {
    for text in [
        "power.threshold_percent = 25\n",
        "power = { threshold_percent = 25 }\n",
    ] {
        let c = parse(text, p()).expect(text);
        assert_eq!(c.power.threshold_percent, 25, "{text}");
    }
    let e = err("\n\npower = { threshold_percent = 120 }\n");
    assert_eq!(e.line(), Some(3));
    assert_eq!(e.key(), Some("power.threshold_percent"));
}

#[test]
fn an_unknown_key_names_its_line_and_what_the_table_accepts() {
    let e = err("[daemon]\n\n\n# c\n\nstate_dir = \"/x\"\nsocket_pth = \"/y\"\n");
    assert!(matches!(e, ConfigError::UnknownKey { .. }), "{e:?}");
    assert_eq!(e.line(), Some(7));
    assert_eq!(e.key(), Some("daemon.socket_pth"));
    assert_eq!(
        e.to_string(),
        "/etc/vaultd/vaultd.toml:7: key `daemon.socket_pth` is unknown; \
         [daemon] accepts: socket_path, socket_mode, socket_group, state_dir"
    );
    // A sub-table is an unknown key of its parent, on its header's line.
    let e = err("[daemon]\nstate_dir = \"/x\"\n[daemon.extra]\nx = 1\n");
    assert_eq!((e.line(), e.key()), (Some(3), Some("daemon.extra")));
}

#[test]
fn a_misspelt_table_is_unknown() {
    let e = err("[power]\nthreshold_percent = 30\n[powr]\nthreshold_percent = 30\n");
    assert!(matches!(e, ConfigError::UnknownKey { .. }), "{e:?}");
    assert_eq!(e.line(), Some(3));
    assert_eq!(e.key(), Some("powr"));
    assert!(
        e.to_string()
            .contains("the tables are: daemon, access, storage, unlock, stack, unclean, power"),
        "{e}"
    );
}

#[test]
fn a_wrong_type_says_what_was_expected() {
    let (text, line) = with_line("threshold_percent = \"30\"");
    let e = err(&text);
    assert!(matches!(e, ConfigError::WrongType { .. }), "{e:?}");
    assert_eq!(e.line(), Some(line));
    assert_eq!(e.key(), Some("power.threshold_percent"));
    assert_eq!(
        e.to_string(),
        format!(
            "/etc/vaultd/vaultd.toml:{line}: key `power.threshold_percent` must be an integer, not a string"
        )
    );
    let e = err("power = 3\n");
    assert_eq!(e.key(), Some("power"));
    assert!(e.to_string().contains("must be a table"), "{e}");
    let e = err("[[power]]\n");
    assert!(e.to_string().contains("not an array of tables"), "{e}");
    let e = err("[power]\npower_off_after_drain = \"yes\"\n");
    assert!(e.to_string().contains("true or false"), "{e}");
    let e = err("[power]\nmax_drain_secs = 3.5\n");
    assert!(e.to_string().contains("not a float"), "{e}");
}

#[test]
fn out_of_range_values_name_the_line_key_and_range() {
    for bad in ["0", "96", "-1"] {
        let (text, line) = with_line(&format!("threshold_percent = {bad}"));
        let e = err(&text);
        assert!(matches!(e, ConfigError::OutOfRange { .. }), "{e:?}");
        assert_eq!(e.line(), Some(line));
        assert_eq!(e.key(), Some("power.threshold_percent"));
        assert_eq!(
            e.to_string(),
            format!(
                "/etc/vaultd/vaultd.toml:{line}: key `power.threshold_percent`: {bad} is out of range (1–95)"
            )
        );
    }
    let e = err("[power]\nmax_drain_secs = 5\n");
    assert!(e.to_string().contains("(10–3600)"), "{e}");
}

/// An integer key's bounds are SCHEMA's: both ends accepted, one past either refused, and the
/// error quotes the range as the docs show it.
#[test]
fn integer_bounds_match_the_schema() {
    for spec in SCHEMA.iter().filter(|s| s.kind == "integer") {
        let Range::Ints(min, max) = spec.range else {
            panic!("{}: range {:?} is not Ints", spec.key, spec.range);
        };
        let (table, key) = spec.key.split_once('.').expect("dotted");
        let text = |n: i64| format!("[{table}]\n{key} = {n}\n");
        // Only the range is judged here: an end may contradict another key's default.
        let out_of_range = |n: i64| {
            let errors = parse(&text(n), p()).err().map(|e| e.0).unwrap_or_default();
            errors
                .into_iter()
                .filter(|e| matches!(e, ConfigError::OutOfRange { .. }))
                .collect::<Vec<_>>()
        };
        for ok in [min, max] {
            assert!(out_of_range(ok).is_empty(), "{} = {ok}", spec.key);
        }
        for bad in [min - 1, max + 1] {
            let errors = out_of_range(bad);
            assert!(
                matches!(&errors[..], [ConfigError::OutOfRange { allowed, .. }] if *allowed == format!("{min}–{max}")),
                "{} = {bad}: {errors:?}",
                spec.key
            );
        }
    }
    let e = err("[stack]\nstop_timeouts = { database = 3601 }\n");
    assert!(e.to_string().contains("1–3600"), "{e}");
}

#[test]
fn socket_modes_that_open_the_socket_to_everyone_are_refused() {
    let (text, line) = with_line("socket_mode = \"0666\"");
    let e = err(&text);
    assert!(matches!(e, ConfigError::Invalid { .. }), "{e:?}");
    assert_eq!(
        (e.line(), e.key()),
        (Some(line), Some("daemon.socket_mode"))
    );
    assert!(e.to_string().contains("every local user"), "{e}");
    for bad in ["0662", "0777", "2"] {
        let e = err(&format!("[daemon]\nsocket_mode = \"{bad}\"\n"));
        assert!(e.to_string().contains("every local user"), "{bad}: {e}");
    }
    for bad in ["rw-rw----", "0668", "+660", "-660", "", "06600"] {
        let e = err(&format!("[daemon]\nsocket_mode = \"{bad}\"\n"));
        assert!(e.to_string().contains("not an octal mode"), "{bad}: {e}");
    }
    let e = err("[daemon]\nsocket_mode = \"1660\"\n");
    assert!(e.to_string().contains("sticky"), "{e}");
    let e = err("[daemon]\nsocket_mode = 660\n");
    assert!(e.to_string().contains("must be a string"), "{e}");
    for (ok, mode) in [("600", 0o600), ("0o640", 0o640), ("0660", 0o660)] {
        let c = parse(&format!("[daemon]\nsocket_mode = \"{ok}\"\n"), p()).expect(ok);
        assert_eq!(c.daemon.socket_mode, mode, "{ok}");
    }
}

#[test]
fn names_and_paths_are_checked() {
    let refused = [
        ("[daemon]\nstate_dir = \"var/lib\"\n", "absolute path"),
        (
            "[stack]\ndocker_socket = \"docker.sock\"\n",
            "absolute path",
        ),
        ("[storage]\nmountpoint = \"/\"\n", "cannot be /"),
        ("[storage]\nmountpoint = \"//\"\n", "cannot be /"),
        (
            "[storage]\nmountpoint = \"/srv/immich/..\"\n",
            "must not contain `..`",
        ),
        (
            "[daemon]\nsocket_path = \"/run/a\\u0000b\"\n",
            "control character",
        ),
        (
            "[stack]\nproject = \"\"\"im\nmich\"\"\"\n",
            "control character",
        ),
        ("[storage]\nmapping_name = \"a/b\"\n", "device-mapper name"),
        ("[storage]\nmapping_name = \"..\"\n", "device-mapper name"),
        ("[storage]\nmapping_name = \"\"\n", "device-mapper name"),
        ("[storage]\ndevice = \"sda3\"\n", "absolute device path"),
        ("[storage]\ndevice = \"UUID=\"\n", "UUID="),
        ("[storage]\ndevice = \"UUID=not a uuid\"\n", "UUID="),
        ("[storage]\ndevice = \"/dev/../etc/shadow\"\n", "`..`"),
        ("[storage]\nfilesystem = \"ext4 -o\"\n", "filesystem type"),
        (
            "[storage]\nmount_options = \"noatime, nodev\"\n",
            "without spaces",
        ),
        ("[storage]\nfsck = \"yes\"\n", "none, report, repair"),
        (
            "[access]\nadmin_group = \"Root Users\"\n",
            "not a group name",
        ),
        ("[access]\nreader_group = \"\"\n", "not a group name"),
        ("[daemon]\nsocket_group = \"1group\"\n", "not a group name"),
        ("[stack]\nproject = \"Immich\"\n", "compose project"),
        ("[stack]\nproject = \"-immich\"\n", "compose project"),
    ];
    for (text, why) in refused {
        let e = err(text);
        assert!(
            matches!(e, ConfigError::Invalid { line: 2, .. }),
            "{text}: {e:?}"
        );
        assert!(e.to_string().contains(why), "{text}: {e}");
    }
    let mapping = format!("[storage]\nmapping_name = \"{}\"\n", "a".repeat(128));
    assert!(err(&mapping).to_string().contains("device-mapper name"));
    let mapping = format!("[storage]\nmapping_name = \"{}\"\n", "a".repeat(127));
    assert!(parse(&mapping, p()).is_ok());

    let c = parse(
        "[storage]\ndevice = \"/dev/sda3\"\nmountpoint = \"/srv//immich/./\"\n",
        p(),
    )
    .expect("ok");
    assert_eq!(c.storage.device.as_deref(), Some("/dev/sda3"));
    // Normalised, so that comparing it with a container's mount source is a string compare.
    assert_eq!(c.storage.mountpoint.as_os_str(), "/srv/immich");
}
