//! The harness for tests of the real binaries: start `vaultd` on a temporary config and socket,
//! run `vaultctl` as root or as users created for the test, and require the capabilities a
//! test needs loudly (under `CI=true` a missing capability fails the test; elsewhere it is
//! reported as SKIPPED on stderr). Also [`goals`]: the goals file (goals.toml) against the
//! benchmarks' figures, for `bench --check`.

pub mod debian_images;
pub mod flood;
pub mod goals;
pub mod luks;
pub mod nut;
pub mod plain_volume;
pub mod receivers;

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Test users and groups, created once per machine and reused.
pub const READERS: &str = "vaultd-it-readers";
pub const ADMINS: &str = "vaultd-it-admins";
pub const READER: &str = "vaultd-it-reader";
pub const ADMIN: &str = "vaultd-it-admin";
pub const STRANGER: &str = "vaultd-it-stranger";

/// Whether this run may skip tests whose capability is missing.
pub fn must_not_skip() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Returns false (after a loud message) when the test cannot run here and may be skipped;
/// panics under CI=true.
pub fn require(capability: &str, present: bool) -> bool {
    if present {
        return true;
    }
    let message = format!("this test needs {capability}, which this machine lacks");
    assert!(
        !must_not_skip(),
        "{message} (CI=true: failing instead of skipping)"
    );
    eprintln!("SKIPPED: {message}");
    false
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A binary of the workspace, built by `cargo build --workspace --bins` (run-all does it).
pub fn bin(name: &str) -> PathBuf {
    // Test executables live in target/<profile>/deps, the binaries (and the benchmark) one
    // level up.
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe.parent().expect("target/<profile> directory");
    if dir.ends_with("deps") {
        dir = dir.parent().expect("target/<profile> directory");
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (integration-tests/run-all does)",
        path.display()
    );
    path
}

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn exists(kind: &str, name: &str) -> bool {
    Command::new("getent")
        .args([kind, name])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Create the test groups and users if they are missing (idempotent; root only).
pub fn ensure_test_accounts() {
    for group in [READERS, ADMINS] {
        if !exists("group", group) {
            run_ok(Command::new("groupadd").args(["--system", group]));
        }
    }
    for (user, groups) in [
        (READER, READERS.to_owned()),
        (ADMIN, format!("{ADMINS},{READERS}")),
        (STRANGER, String::new()),
    ] {
        if !exists("passwd", user) {
            let mut cmd = Command::new("useradd");
            cmd.args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
            ]);
            if !groups.is_empty() {
                cmd.args(["--groups", &groups]);
            }
            run_ok(cmd.arg(user));
        }
        // A test that edits the groups restores them; should one have died half-way, the
        // memberships are put back here.
        for group in groups.split(',').filter(|g| !g.is_empty()) {
            if !in_group(user, group) {
                run_ok(Command::new("gpasswd").args(["--add", user, group]));
            }
        }
    }
}

/// Whether `user` is a member of `group` by the group database.
pub fn in_group(user: &str, group: &str) -> bool {
    Command::new("id")
        .args(["-nG", user])
        .output()
        .is_ok_and(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .any(|g| g == group)
        })
}

/// A running vaultd on a private socket, killed on drop.
#[derive(Debug)]
pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    pub config: PathBuf,
    pub stderr_path: PathBuf,
    pub mountpoint: PathBuf,
    /// `storage.mapping_name`, unique to this daemon.
    pub mapping: String,
    /// Extra environment for the daemon (e.g. DBUS_SYSTEM_BUS_ADDRESS).
    pub env: Vec<(String, String)>,
    /// The network namespace vaultd runs in, if not the test's.
    pub netns: Option<String>,
    /// `vaultd --sim`: the simulated volume, stack and battery, with the real sources that
    /// need no host (the control socket, the config, upsd over TCP).
    pub sim: bool,
    child: Option<Child>,
}

/// A mapping name no other test daemon uses: vaultd locks the name (one daemon per volume), and
/// the tests of one binary may run side by side.
pub fn unique_mapping_name() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("vaultd-it-{}-{n}", std::process::id())
}

/// vaultd's lock for a mapping name (vaultd::lock::MAPPING_LOCK_DIR).
pub fn mapping_lock(mapping: &str) -> PathBuf {
    Path::new("/run/lock/vaultd").join(format!("{mapping}.lock"))
}

/// A config for the test daemon. `extra` is appended (e.g. a `[power]` table).
pub fn test_config(dir: &Path, socket_mode: &str, extra: &str) -> String {
    test_config_for(dir, socket_mode, extra, &unique_mapping_name())
}

/// The same, with the mapping name `mapping`.
pub fn test_config_for(dir: &Path, socket_mode: &str, extra: &str, mapping: &str) -> String {
    // `extra` may add keys to [storage] (it comes right after it) and further tables.
    format!(
        "[daemon]\nsocket_path = \"{}\"\nsocket_mode = \"{socket_mode}\"\nsocket_group = \"{READERS}\"\n\
         state_dir = \"{}\"\n\n[access]\nreader_group = \"{READERS}\"\nadmin_group = \"{ADMINS}\"\n\n\
         [storage]\nmapping_name = \"{mapping}\"\nmountpoint = \"{}\"\n{extra}",
        dir.join("run/vaultd.sock").display(),
        dir.join("state").display(),
        dir.join("srv").display(),
    )
}

impl Daemon {
    pub fn start(socket_mode: &str) -> Daemon {
        Self::start_with(socket_mode, "")
    }

    pub fn start_with(socket_mode: &str, extra: &str) -> Daemon {
        Self::start_with_env(socket_mode, extra, &[])
    }

    pub fn start_with_env(socket_mode: &str, extra: &str, env: &[(&str, &str)]) -> Daemon {
        Self::start_full(socket_mode, extra, env, None)
    }

    /// In the network namespace `netns` (made by the test with `ip netns add`).
    pub fn start_in_netns(netns: &str, extra: &str) -> Daemon {
        Self::start_full("0660", extra, &[], Some(netns))
    }

    /// `vaultd --sim` on a config with `extra` appended.
    pub fn start_sim(extra: &str) -> Daemon {
        Self::start_edited("0660", extra, &[], None, true, &|config| config)
    }

    /// With `access.admin_group` set to `group`, which need not exist (yet).
    pub fn start_with_admin_group(group: &str) -> Daemon {
        Self::start_edited("0660", "", &[], None, false, &|config| {
            config.replace(
                &format!("admin_group = \"{ADMINS}\""),
                &format!("admin_group = \"{group}\""),
            )
        })
    }

    fn start_full(
        socket_mode: &str,
        extra: &str,
        env: &[(&str, &str)],
        netns: Option<&str>,
    ) -> Daemon {
        Self::start_edited(socket_mode, extra, env, netns, false, &|config| config)
    }

    fn start_edited(
        socket_mode: &str,
        extra: &str,
        env: &[(&str, &str)],
        netns: Option<&str>,
        sim: bool,
        edit: &dyn Fn(String) -> String,
    ) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("vaultd-it-")
            .tempdir()
            .expect("tempdir");
        // Unprivileged test users must reach the socket inside.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        let mountpoint = dir.path().join("srv");
        fs::create_dir_all(&mountpoint).expect("mountpoint");
        let config = dir.path().join("vaultd.toml");
        let mapping = unique_mapping_name();
        fs::write(
            &config,
            edit(test_config_for(dir.path(), socket_mode, extra, &mapping)),
        )
        .expect("config");
        let stderr_path = dir.path().join("vaultd.stderr");
        let socket = dir.path().join("run/vaultd.sock");
        let state_dir = dir.path().join("state");
        let mut daemon = Daemon {
            dir,
            state_dir,
            socket,
            config,
            stderr_path,
            mountpoint,
            mapping,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            netns: netns.map(str::to_owned),
            sim,
            child: None,
        };
        daemon.spawn();
        daemon
    }

    /// Start (again) on the same config, socket and state directory; stderr is appended.
    pub fn spawn(&mut self) {
        // Counted before the spawn: a fast daemon may say "ready" before wait_ready first reads.
        let ready_lines_before = self.stderr().matches("ready: serving").count();
        let stderr = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stderr_path)
            .expect("stderr file");
        // In a network namespace the test made (`ip netns exec` execs vaultd: same pid).
        let mut command = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(bin("vaultd"));
                c
            }
            None => Command::new(bin("vaultd")),
        };
        if self.sim {
            command.arg("--sim");
        }
        let child = command
            .arg("--config")
            .arg(&self.config)
            // VAULTD_TEST_LOG (e.g. "debug,zbus=info") turns up the daemon's log when chasing a fault.
            .env(
                "VAULTD_LOG",
                std::env::var("VAULTD_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn vaultd");
        self.child = Some(child);
        self.wait_ready(ready_lines_before);
    }

    /// Kill the daemon (SIGKILL: no drain) and wait for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn wait_ready(&mut self, before: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.stderr().matches("ready: serving").count() > before {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("vaultd exited early ({status}):\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("vaultd did not become ready:\n{}", self.stderr());
    }

    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Run vaultctl against this daemon, as `user` (None = root).
    pub fn vaultctl(&self, user: Option<&str>, args: &[&str]) -> Output {
        vaultctl_at(&self.socket, user, args, None)
    }

    /// Send a signal and wait for the exit status (bounded).
    pub fn signal_and_wait(&mut self, signal: libc::c_int) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let pid = libc::pid_t::try_from(child.id()).expect("pid");
        // SAFETY: kill(2) on our own child's pid, which has not been reaped yet.
        unsafe { libc::kill(pid, signal) };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "vaultd did not exit after signal {signal}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // The daemon is gone and the name was this daemon's alone: its lock file goes too.
        let _ = fs::remove_file(mapping_lock(&self.mapping));
    }
}

/// vaultctl as `user` (None = root, else through setpriv with the user's groups), talking to
/// `socket`.
fn vaultctl_command(socket: &Path, user: Option<&str>) -> Command {
    let mut cmd = match user {
        None => Command::new(bin("vaultctl")),
        Some(user) => {
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={user}"))
                .arg(format!("--regid={user}"))
                .arg("--init-groups")
                .arg("--")
                .arg(bin("vaultctl"));
            c
        }
    };
    cmd.arg("--socket").arg(socket);
    cmd
}

/// Run vaultctl at `socket` as `user` (None = root), with optional stdin.
pub fn vaultctl_at(
    socket: &Path,
    user: Option<&str>,
    args: &[&str],
    stdin: Option<&[u8]>,
) -> Output {
    let mut cmd = vaultctl_command(socket, user);
    cmd.args(args);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn vaultctl");
    if let Some(input) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input)
            .expect("write stdin");
    }
    child.wait_with_output().expect("vaultctl")
}

/// Start `vaultctl watch --json` and return a reader over its lines.
#[derive(Debug)]
pub struct Watcher {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Watcher {
    pub fn start(socket: &Path, user: Option<&str>) -> Watcher {
        let mut child = vaultctl_command(socket, user)
            .args(["watch", "--json"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn watch");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Watcher { child, lines }
    }

    /// The next line that satisfies `pred`, within `limit`.
    pub fn wait_for(
        &self,
        limit: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        match self.wait_until(limit, pred) {
            Ok(value) => value,
            Err(seen) => panic!(
                "no matching watch event within {limit:?}; saw:\n{}",
                seen.join("\n")
            ),
        }
    }

    /// As `wait_for`, but a miss is returned (with the events seen meanwhile), not a panic.
    pub fn wait_until(
        &self,
        limit: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Result<serde_json::Value, Vec<String>> {
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let value: serde_json::Value = serde_json::from_str(&line)
                        .unwrap_or_else(|e| panic!("bad JSON {line:?}: {e}"));
                    if pred(&value) {
                        return Ok(value);
                    }
                    seen.push(line);
                }
                Err(_) => break,
            }
        }
        Err(seen)
    }
}

impl Watcher {
    /// The watch's exit status, if it ends within `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A private Docker Engine (Debian's dockerd) on its own socket and data root, for one test.
/// No iptables changes, no bridge: test containers use `--network none`. Images come from a
/// tarball of busybox-static (`docker import`), never from a registry.
#[derive(Debug)]
pub struct DockerEngine {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    child: Option<Child>,
}

pub const TEST_IMAGE: &str = "vaultd-test/busybox:latest";

impl DockerEngine {
    /// Whether this machine can run one (dockerd and busybox installed, root).
    pub fn available() -> bool {
        is_root() && Path::new("/usr/sbin/dockerd").exists() && Path::new("/bin/busybox").exists()
    }

    pub fn start() -> DockerEngine {
        let dir = tempfile::Builder::new()
            .prefix("vaultd-docker-")
            .tempdir()
            .expect("tempdir");
        let socket = dir.path().join("docker.sock");
        let mut engine = DockerEngine {
            dir,
            socket,
            child: None,
        };
        engine.start_again();
        engine.import_busybox();
        engine
    }

    /// Start dockerd (again, after [`DockerEngine::stop`]) on the same socket and data root;
    /// its log is appended.
    pub fn start_again(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("dockerd.log"))
            .expect("log");
        let child = Command::new("dockerd")
            .arg("--data-root")
            .arg(self.dir.path().join("data"))
            .arg("--exec-root")
            .arg(self.dir.path().join("exec"))
            .arg("--pidfile")
            .arg(self.dir.path().join("docker.pid"))
            .arg("--host")
            .arg(format!("unix://{}", self.socket.display()))
            .args(["--iptables=false", "--ip6tables=false", "--bridge=none"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn dockerd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.docker(&["version"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "dockerd did not start:\n{}",
                fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .env("DOCKER_HOST", format!("unix://{}", self.socket.display()))
            .args(args)
            .output()
            .expect("docker")
    }

    pub fn docker_ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn import_busybox(&self) {
        let root = self.dir.path().join("bb");
        fs::create_dir_all(root.join("bin")).expect("bb");
        fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox");
        for applet in ["sh", "sleep", "cat", "echo", "ls"] {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).expect("symlink");
        }
        let tar = self.dir.path().join("bb.tar");
        let status = Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .expect("tar");
        assert!(status.success());
        self.docker_ok(&[
            "import",
            "-c",
            "CMD [\"/bin/sh\"]",
            tar.to_str().expect("utf8"),
            TEST_IMAGE,
        ]);
    }

    /// Stop the engine (it cleans its mounts up on a graceful stop).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(pid) = libc::pid_t::try_from(child.id()) {
                // SAFETY: kill(2) on our own child, not yet reaped.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
            let deadline = Instant::now() + Duration::from_secs(20);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for DockerEngine {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A private D-Bus "system" bus (its own dbus-daemon with a system-like config and an
/// allow-all policy) with python3-dbusmock templates on it, for one test.
#[derive(Debug)]
pub struct SystemBus {
    pub dir: tempfile::TempDir,
    pub address: String,
    daemon: Option<Child>,
    mocks: Vec<(String, Child)>,
}

impl SystemBus {
    /// dbus-daemon and Debian's python3-dbusmock (the pyenv python3 cannot import it).
    pub fn available() -> bool {
        Path::new("/usr/bin/dbus-daemon").exists()
            && Command::new("/usr/bin/python3")
                .args(["-c", "import dbusmock"])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
    }

    pub fn start() -> SystemBus {
        let dir = tempfile::Builder::new()
            .prefix("vaultd-bus-")
            .tempdir()
            .expect("tempdir");
        let socket = dir.path().join("system_bus_socket");
        let config = dir.path().join("system-like.conf");
        fs::write(
            &config,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"#,
                socket.display()
            ),
        )
        .expect("bus config");
        let daemon = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .arg("--nofork")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("dbus-daemon");
        let address = format!("unix:path={}", socket.display());
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "dbus-daemon did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        SystemBus {
            dir,
            address,
            daemon: Some(daemon),
            mocks: Vec::new(),
        }
    }

    /// Start a dbusmock template (e.g. "upower") and wait until it owns `name`.
    pub fn mock(&mut self, template: &str, params: &str, name: &str) {
        let child = Command::new("/usr/bin/python3")
            .args([
                "-m",
                "dbusmock",
                "--system",
                "--template",
                template,
                "-p",
                params,
            ])
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.address)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("dbusmock");
        self.mocks.push((template.to_owned(), child));
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.busctl(&["status", name]).status.success() {
            assert!(
                Instant::now() < deadline,
                "dbusmock {template} did not take {name}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kill a mock (it leaves the bus at once).
    pub fn kill_mock(&mut self, template: &str) {
        if let Some(i) = self.mocks.iter().position(|(t, _)| t == template) {
            let (_, mut child) = self.mocks.remove(i);
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn busctl(&self, args: &[&str]) -> Output {
        Command::new("busctl")
            .arg(format!("--address={}", self.address))
            .args(args)
            .output()
            .expect("busctl")
    }

    /// `busctl call`, which must succeed.
    pub fn call(&self, args: &[&str]) -> String {
        let mut all = vec!["call"];
        all.extend_from_slice(args);
        let out = self.busctl(&all);
        assert!(
            out.status.success(),
            "busctl {all:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The upower mock's DisplayDevice: a battery in `state` (UPower's numbers: 1 charging,
    /// 2 discharging, 4 full) at `percent`, with `time_to_empty` seconds (0 unknown).
    pub fn upower_display(&self, state: &str, percent: &str, time_to_empty: &str) {
        self.call(&[
            "org.freedesktop.UPower",
            "/org/freedesktop/UPower",
            "org.freedesktop.DBus.Mock",
            "SetupDisplayDevice",
            "uuddddxxbsu",
            "2",
            state,
            percent,
            percent,
            "100",
            "10",
            time_to_empty,
            "0",
            "true",
            "battery",
            "1",
        ]);
    }
}

impl Drop for SystemBus {
    fn drop(&mut self) {
        for (_, mut child) in self.mocks.drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(mut daemon) = self.daemon.take() {
            let _ = daemon.kill();
            let _ = daemon.wait();
        }
    }
}

/// Whether `cmd` is on PATH.
pub fn have_command(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The Immich test server (`immich-test-server`) on a free loopback port, killed on drop; its
/// request log (`REQ METHOD PATH STATUS`) is collected.
#[derive(Debug)]
pub struct ImmichTestServer {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    requests: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl ImmichTestServer {
    /// Started with `--listen 127.0.0.1:0` and `args`.
    pub fn start(args: &[&str]) -> ImmichTestServer {
        let mut child = Command::new(bin("immich-test-server"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start immich-test-server");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let first = lines.next().expect("a first line").expect("read");
        let addr = first
            .strip_prefix("LISTENING ")
            .unwrap_or_else(|| panic!("expected LISTENING, got {first:?}"))
            .to_owned();
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = requests.clone();
        // Read on, so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if line.starts_with("REQ ") {
                    log.lock().expect("log").push(line);
                }
            }
        });
        ImmichTestServer {
            child,
            url: format!("http://{addr}"),
            requests,
        }
    }

    /// The requests logged so far.
    pub fn requests(&self) -> Vec<String> {
        // The log thread reads behind the answers by a moment.
        std::thread::sleep(Duration::from_millis(100));
        self.requests.lock().expect("log").clone()
    }
}

impl Drop for ImmichTestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
