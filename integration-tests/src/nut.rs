//! Debian's NUT on this host, privately: the `dummy-ups` driver reading a `.dev` file the test
//! rewrites, and `upsd` serving it on a loopback port of its own — the UPS vaultd follows in
//! tests/nut.rs and bench-nut. Config, state and PID files live in a temporary directory, so
//! nothing of the host's NUT (if any) is touched.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Debian's paths (nut-server).
const DUMMY_UPS: &str = "/lib/nut/dummy-ups";
const UPSD: &str = "/lib/nut/upsd";

/// The UPS's name in ups.conf.
pub const UPS: &str = "testups";
/// upsd.users: a monitor (vaultd's), and a primary that may set FSD (the test's upsmon).
pub const MONITOR_USER: &str = "vaultd";
pub const MONITOR_PASSWORD: &str = "monitor pass \"quoted\"";
const PRIMARY_USER: &str = "upsmon-primary";
const PRIMARY_PASSWORD: &str = "primarypass";

#[derive(Debug)]
pub struct Upsd {
    pub dir: tempfile::TempDir,
    pub port: u16,
    dev: PathBuf,
    /// The `.dev` file's last modification time, whole seconds since the epoch.
    dev_mtime: std::cell::Cell<u64>,
    upsd_pid: Option<u32>,
    driver_pid: Option<u32>,
}

impl Upsd {
    /// Whether Debian's nut-server is installed.
    pub fn available() -> bool {
        Path::new(DUMMY_UPS).exists() && Path::new(UPSD).exists()
    }

    /// The driver and upsd, with the UPS on line power at 100 %. `password_required`: upsd
    /// answers LIST VAR only after a login (an ACL of its own is not in 2.8's upsd.conf, so the
    /// harness checks the login separately: see [`Upsd::login_ok`]).
    pub fn start() -> Upsd {
        let dir = tempfile::Builder::new()
            .prefix("vaultd-nut-")
            .tempdir()
            .expect("tempdir");
        let conf = dir.path();
        let port = free_port();
        let dev = conf.join("testups.dev");
        fs::write(conf.join("nut.conf"), "MODE=standalone\n").expect("nut.conf");
        fs::write(
            conf.join("ups.conf"),
            format!(
                "[{UPS}]\n  driver = dummy-ups\n  port = {}\n  desc = \"vaultd's test UPS\"\n",
                dev.display()
            ),
        )
        .expect("ups.conf");
        fs::write(conf.join("upsd.conf"), format!("LISTEN 127.0.0.1 {port}\n")).expect("upsd.conf");
        fs::write(
            conf.join("upsd.users"),
            format!(
                "[{MONITOR_USER}]\n  password = \"{}\"\n  upsmon secondary\n\n[{PRIMARY_USER}]\n  password = {PRIMARY_PASSWORD}\n  upsmon primary\n",
                MONITOR_PASSWORD.replace('"', "\\\"")
            ),
        )
        .expect("upsd.users");
        let mut upsd = Upsd {
            dir,
            port,
            dev,
            dev_mtime: std::cell::Cell::new(0),
            upsd_pid: None,
            driver_pid: None,
        };
        upsd.set("OL", 100.0, 3000);
        upsd.driver_pid = Some(upsd.daemon(
            DUMMY_UPS,
            &["-a", UPS, "-u", "root"],
            "dummy-ups-testups.pid",
        ));
        upsd.start_upsd();
        upsd.wait_status("OL");
        upsd
    }

    fn env(&self, command: &mut Command) {
        let path = self.dir.path();
        command
            .env("NUT_CONFPATH", path)
            .env("NUT_STATEPATH", path)
            .env("NUT_ALTPIDPATH", path)
            .env("NUT_PIDPATH", path);
    }

    /// Start a NUT daemon (it forks into the background) and read its PID file.
    fn daemon(&self, program: &str, args: &[&str], pid_file: &str) -> u32 {
        let pid_path = self.dir.path().join(pid_file);
        let _ = fs::remove_file(&pid_path);
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        self.env(&mut command);
        let out = command.output().expect("start a NUT daemon");
        assert!(
            out.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(pid) = fs::read_to_string(&pid_path)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                return pid;
            }
            assert!(Instant::now() < deadline, "{program} wrote no {pid_file}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn start_upsd(&mut self) {
        self.upsd_pid = Some(self.daemon(UPSD, &["-u", "root"], "upsd.pid"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "upsd does not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stop upsd (the driver keeps running): the UPS can no longer be read.
    pub fn stop_upsd(&mut self) {
        if let Some(pid) = self.upsd_pid.take() {
            end(pid);
        }
    }

    /// The address vaultd is given.
    pub fn address(&self) -> String {
        format!("{UPS}@127.0.0.1:{}", self.port)
    }

    /// Rewrite the `.dev` file: the driver reads it again when it changes (dummy-ups).
    pub fn set(&self, status: &str, charge: f64, runtime_secs: u64) {
        let text = format!(
            "ups.status: {status}\nbattery.charge: {charge}\nbattery.runtime: {runtime_secs}\ndevice.type: ups\n"
        );
        // Written whole and renamed over: the driver never reads half a file.
        let tmp = self.dev.with_extension("tmp");
        fs::write(&tmp, text).expect("write the .dev file");
        // dummy-ups reads the file again when its mtime changes, in whole seconds: two writes
        // within one second would look like one. Each write gets a later second.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mtime = now.max(self.dev_mtime.get() + 1);
        self.dev_mtime.set(mtime);
        fs::File::options()
            .write(true)
            .open(&tmp)
            .and_then(|f| f.set_modified(std::time::UNIX_EPOCH + Duration::from_secs(mtime)))
            .expect("set the .dev file's mtime");
        fs::rename(&tmp, &self.dev).expect("rename the .dev file");
    }

    /// Wait until upsd serves `status` (the driver polls the file every 2 s).
    pub fn wait_status(&self, status: &str) -> Duration {
        let started = Instant::now();
        loop {
            if self.status().as_deref() == Some(status) {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "upsd never served ups.status {status:?} (it serves {:?})",
                self.status()
            );
            // Fine-grained: bench-nut times from this moment.
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// `ups.status` as upsd serves it now, asked as a monitor (after a login).
    pub fn status(&self) -> Option<String> {
        let mut s = self.session(MONITOR_USER, MONITOR_PASSWORD).ok()?;
        let line = s.ask(&format!("GET VAR {UPS} ups.status")).ok()?;
        // VAR testups ups.status "OL"
        let value = line.splitn(4, ' ').nth(3)?;
        Some(value.trim_matches('"').to_owned())
    }

    /// What a NUT primary does when its battery runs out: set FSD on the UPS.
    pub fn forced_shutdown(&self) {
        let mut s = self
            .session(PRIMARY_USER, PRIMARY_PASSWORD)
            .expect("log in as the primary");
        let answer = s.ask(&format!("FSD {UPS}")).expect("FSD");
        assert!(answer.starts_with("OK"), "FSD: {answer}");
    }

    fn session(&self, user: &str, password: &str) -> std::io::Result<Session> {
        let stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut s = Session {
            reader: BufReader::new(stream.try_clone()?),
            stream,
        };
        for command in [
            format!("USERNAME {user}"),
            format!("PASSWORD \"{}\"", password.replace('"', "\\\"")),
        ] {
            let answer = s.ask(&command)?;
            if !answer.starts_with("OK") {
                return Err(std::io::Error::other(format!("{command}: {answer}")));
            }
        }
        Ok(s)
    }
}

struct Session {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Session {
    fn ask(&mut self, command: &str) -> std::io::Result<String> {
        self.stream.write_all(format!("{command}\n").as_bytes())?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        Ok(line.trim_end().to_owned())
    }
}

impl Drop for Upsd {
    fn drop(&mut self) {
        for pid in [self.upsd_pid.take(), self.driver_pid.take()]
            .into_iter()
            .flatten()
        {
            end(pid);
        }
    }
}

/// SIGTERM to a NUT daemon this harness started, and wait for it to go.
fn end(pid: u32) {
    let Ok(raw) = i32::try_from(pid) else { return };
    // SAFETY: kill(2) with a PID this harness read from the PID file of a daemon it started.
    unsafe { libc::kill(raw, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Running, and not a zombie waiting for a parent that does not reap (the daemons fork away
/// from the harness, so it cannot wait for them).
fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z'))
    })
}

/// A loopback port nothing listens on now.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}
