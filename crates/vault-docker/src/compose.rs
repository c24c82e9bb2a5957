//! The owner's compose file, through the compose tool itself: `config --hash='*'` (the hash of
//! each service's configuration, which compose also writes into the
//! `com.docker.compose.config-hash` label of what it creates), `config` (which image each
//! service runs) and `create` (never `pull`, never `up`). The tool runs as a child process with
//! a clean environment (DOCKER_HOST is vaultd's socket), stdin closed, a time limit, and only
//! the tail of what it prints kept.
//!
//! Compose v1 (`docker-compose`, Debian bookworm's 1.29) pulls a missing image in `create`
//! whatever it is told; v2 has `--pull never`. So before a create every image the file names is
//! looked up in the engine ([`Stack::missing_images`]), and the create is refused when one is
//! not there: vaultd never pulls.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::Stack;

/// How much of each of the tool's outputs is kept: its tail (where an error is).
pub const OUTPUT_LIMIT: usize = 64 * 1024;
/// `config` runs: python's start on an old laptop takes seconds.
pub const CONFIG_TIMEOUT: Duration = Duration::from_secs(60);
/// `create`: a few containers (and the project's networks); never a pull.
pub const CREATE_TIMEOUT: Duration = Duration::from_secs(300);
/// The same PATH systemd gives a service.
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Which compose tool runs the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// `docker compose` (v2, the CLI plugin).
    Plugin,
    /// `docker-compose` (v1).
    Standalone,
}

impl Tool {
    pub fn name(self) -> &'static str {
        match self {
            Tool::Plugin => "docker compose",
            Tool::Standalone => "docker-compose",
        }
    }

    fn program(self) -> (&'static str, &'static [&'static str]) {
        match self {
            Tool::Plugin => ("docker", &["compose"]),
            Tool::Standalone => ("docker-compose", &[]),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error(
        "the compose tool `{tool}` cannot be run: {detail}; install it (Debian: apt-get install docker-compose) or set stack.compose_command"
    )]
    ToolMissing { tool: &'static str, detail: String },
    #[error(
        "cannot read the compose file {}: {detail} (stack.compose_file)",
        file.display()
    )]
    FileUnreadable { file: PathBuf, detail: String },
    #[error("`{tool} {op}` failed for {} ({status}): {output}", file.display())]
    Failed {
        tool: &'static str,
        op: &'static str,
        file: PathBuf,
        status: String,
        /// The tail of what it printed (stderr, else stdout).
        output: String,
    },
    #[error("`{tool} {op}` did not finish within {} s and was killed", timeout.as_secs())]
    Timeout {
        tool: &'static str,
        op: &'static str,
        timeout: Duration,
    },
    #[error("`{tool} {op}` printed what vaultd cannot read: {detail}")]
    Output {
        tool: &'static str,
        op: &'static str,
        detail: String,
    },
    #[error(
        "not creating the containers: {} not on this machine, and vaultd never pulls; pull by hand (`docker pull IMAGE`, or `{tool} -f {} pull`), then start again",
        list_images(images), file.display()
    )]
    ImagesMissing {
        tool: &'static str,
        file: PathBuf,
        /// "image (service)".
        images: Vec<String>,
    },
    #[error(transparent)]
    Docker(#[from] crate::DockerError),
}

fn list_images(images: &[String]) -> String {
    match images {
        [one] => format!("image {one} is"),
        many => format!("images {} are", many.join(", ")),
    }
}

/// The owner's compose file of one project, run with one tool against one engine.
#[derive(Debug, Clone)]
pub struct Compose {
    pub tool: Tool,
    pub file: PathBuf,
    pub project: String,
    /// The engine's socket (a path): the tool's DOCKER_HOST.
    pub docker_socket: String,
}

/// What a finished run printed.
#[derive(Debug)]
struct Ran {
    stdout: String,
    stdout_cut: bool,
}

impl Compose {
    /// `auto`: the v2 plugin if `docker compose version` answers, else `docker-compose`.
    pub async fn detect(docker_socket: &str) -> Tool {
        let mut cmd = clean_command("docker", docker_socket, None);
        cmd.args(["compose", "version"]);
        // output(), not status(): the pipes are read, so the CLI never writes into a closed one.
        match tokio::time::timeout(CONFIG_TIMEOUT, cmd.output()).await {
            Ok(Ok(out)) if out.status.success() => Tool::Plugin,
            _ => Tool::Standalone,
        }
    }

    /// The hash of each service's configuration now (`config --hash='*'`: "SERVICE HASH" lines).
    pub async fn hashes(&self) -> Result<BTreeMap<String, String>, ComposeError> {
        let ran = self
            .run("config --hash", &["config", "--hash=*"], CONFIG_TIMEOUT)
            .await?;
        self.whole(&ran, "config --hash")?;
        parse_hashes(&ran.stdout).map_err(|detail| ComposeError::Output {
            tool: self.tool.name(),
            op: "config --hash",
            detail,
        })
    }

    /// Each service's image as the file names it (after interpolation); `None` for a service
    /// that is built and names none.
    pub async fn images(&self) -> Result<BTreeMap<String, Option<String>>, ComposeError> {
        let ran = self.run("config", &["config"], CONFIG_TIMEOUT).await?;
        self.whole(&ran, "config")?;
        service_images(&ran.stdout).map_err(|detail| ComposeError::Output {
            tool: self.tool.name(),
            op: "config",
            detail,
        })
    }

    /// `create`: the containers of missing services made, those of changed ones made anew.
    /// Never a build (`--no-build`), never a pull (`--pull never` for v2; for v1, which has
    /// no such flag, the caller checks the images first). What it printed, for the log.
    pub async fn create(&self) -> Result<String, ComposeError> {
        let args: &[&str] = match self.tool {
            Tool::Plugin => &["create", "--pull", "never", "--no-build"],
            Tool::Standalone => &["create", "--no-build"],
        };
        let ran = self.run("create", args, CREATE_TIMEOUT).await?;
        Ok(ran.stdout)
    }

    /// Run the tool on the file with `args`; an error unless it exits 0.
    async fn run(
        &self,
        op: &'static str,
        args: &[&str],
        timeout: Duration,
    ) -> Result<Ran, ComposeError> {
        let tool = self.tool.name();
        // Said plainly before the tool says it in its own words (python's traceback for v1).
        if let Err(e) = std::fs::File::open(&self.file) {
            return Err(ComposeError::FileUnreadable {
                file: self.file.clone(),
                detail: e.to_string(),
            });
        }
        let (program, prefix) = self.tool.program();
        let mut cmd = clean_command(program, &self.docker_socket, self.file.parent());
        cmd.args(prefix)
            .arg("-f")
            .arg(&self.file)
            .arg("-p")
            .arg(&self.project)
            .args(args);
        let mut child = cmd.spawn().map_err(|e| ComposeError::ToolMissing {
            tool,
            detail: e.to_string(),
        })?;
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let finished = async {
            let (out, err, status) = tokio::join!(tail(stdout), tail(stderr), child.wait());
            (out, err, status)
        };
        let Ok((out, err, status)) = tokio::time::timeout(timeout, finished).await else {
            // kill_on_drop: the child is killed when `cmd`'s child is dropped here.
            return Err(ComposeError::Timeout { tool, op, timeout });
        };
        let status = status.map_err(|e| ComposeError::ToolMissing {
            tool,
            detail: e.to_string(),
        })?;
        if !status.success() {
            // A missing plugin says so on stderr and exits non-zero: "unknown command".
            let said = if err.0.trim().is_empty() {
                &out.0
            } else {
                &err.0
            };
            if self.tool == Tool::Plugin
                && (said.contains("is not a docker command") || said.contains("unknown command"))
            {
                return Err(ComposeError::ToolMissing {
                    tool,
                    detail: said.trim().to_owned(),
                });
            }
            return Err(ComposeError::Failed {
                tool,
                op,
                file: self.file.clone(),
                status: status.to_string(),
                output: said.trim().to_owned(),
            });
        }
        Ok(Ran {
            stdout: out.0,
            stdout_cut: out.1,
        })
    }

    /// Output that is read (not only shown) must be whole.
    fn whole(&self, ran: &Ran, op: &'static str) -> Result<(), ComposeError> {
        if ran.stdout_cut {
            return Err(ComposeError::Output {
                tool: self.tool.name(),
                op,
                detail: format!("more than {} KiB", OUTPUT_LIMIT / 1024),
            });
        }
        Ok(())
    }
}

/// The tool's command with nothing of vaultd's environment but the engine's socket: no
/// COMPOSE_* variable of the service's environment changes what the file means (the file's own
/// `.env` beside it still does, as for the owner).
fn clean_command(
    program: &str,
    docker_socket: &str,
    dir: Option<&Path>,
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(program);
    cmd.env_clear()
        .env("PATH", PATH)
        .env("DOCKER_HOST", format!("unix://{docker_socket}"))
        .env("LANG", "C.UTF-8")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    cmd
}

/// Read `stream` to its end, keeping the last [`OUTPUT_LIMIT`] bytes; whether any was dropped.
async fn tail(stream: Option<impl AsyncRead + Unpin>) -> (String, bool) {
    let Some(mut stream) = stream else {
        return (String::new(), false);
    };
    let mut kept: Vec<u8> = Vec::new();
    let mut cut = false;
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > OUTPUT_LIMIT {
                    let excess = kept.len() - OUTPUT_LIMIT;
                    kept.drain(..excess);
                    cut = true;
                }
            }
        }
    }
    (String::from_utf8_lossy(&kept).into_owned(), cut)
}

impl Stack {
    /// Of `images` ("service" → image), those the engine does not have: "image (service)".
    pub async fn missing_images(
        &self,
        images: &BTreeMap<String, Option<String>>,
    ) -> Result<Vec<String>, crate::DockerError> {
        let mut missing = Vec::new();
        for (service, image) in images {
            let Some(image) = image else { continue };
            let found = tokio::time::timeout(self.timeout, self.docker.inspect_image(image))
                .await
                .map_err(|_| crate::DockerError::Timeout {
                    socket: self.socket.clone(),
                    timeout: self.timeout,
                })?;
            match found {
                Ok(_) => {}
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => missing.push(format!("{image} ({service})")),
                Err(e) => return Err(self.api("inspect an image")(e)),
            }
        }
        Ok(missing)
    }
}

/// `config --hash='*'`: one "SERVICE HASH" line per service.
pub fn parse_hashes(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let mut words = line.split_whitespace();
        let (Some(service), Some(hash), None) = (words.next(), words.next(), words.next()) else {
            return Err(format!("{line:?} is not \"SERVICE HASH\""));
        };
        if !hash.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!("{hash:?} (of {service}) is not a hash"));
        }
        out.insert(service.to_owned(), hash.to_owned());
    }
    if out.is_empty() {
        return Err("no service".into());
    }
    Ok(out)
}

/// Each service's `image:` in the block-style YAML `config` prints (both versions print the
/// resolved file that way: `services:` at the margin, each service one indent in, its keys one
/// further). Only what vaultd needs is read; anything else is skipped.
pub fn service_images(text: &str) -> Result<BTreeMap<String, Option<String>>, String> {
    let mut out = BTreeMap::new();
    let mut in_services = false;
    let mut service_indent: Option<usize> = None;
    let mut key_indent: Option<usize> = None;
    let mut current: Option<String> = None;
    for line in text.lines() {
        let content = line.trim_start();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let indent = line.len() - content.len();
        if indent == 0 {
            in_services = content.trim_end() == "services:";
            current = None;
            continue;
        }
        if !in_services {
            continue;
        }
        let service_at = *service_indent.get_or_insert(indent);
        if indent == service_at {
            let name = content
                .trim_end()
                .strip_suffix(':')
                .ok_or_else(|| format!("{content:?} is not a service's name"))?;
            let name = unquote(name);
            out.insert(name.clone(), None);
            current = Some(name);
            key_indent = None;
            continue;
        }
        if indent < service_at {
            return Err(format!("{content:?} is not under a service"));
        }
        let Some(service) = &current else { continue };
        let key_at = *key_indent.get_or_insert(indent);
        if indent != key_at {
            continue;
        }
        if let Some(value) = content.strip_prefix("image:") {
            let image = unquote(value.trim());
            if !image.is_empty() {
                out.insert(service.clone(), Some(image));
            }
        }
    }
    if out.is_empty() {
        return Err("no services".into());
    }
    Ok(out)
}

/// A plain, 'single-' or "double-quoted" YAML scalar (image names need no escapes).
fn unquote(s: &str) -> String {
    let s = s.trim();
    if let Some(inner) = s.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
        return inner.replace("''", "'");
    }
    if let Some(inner) = s.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        return inner.replace("\\\"", "\"");
    }
    s.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Debian's docker-compose 1.29.2 printed for `config --hash='*'`.
    #[test]
    fn hashes_as_v1_prints_them() {
        let text = "database 49a03583168d5ddb8393d5938926fada8379fa729d65f138ce9b376b77490ac4\nserver fbd570f9d5336e53f5c322cc5d555e707289fa1ac2ef8e2e82e5ae1b438580a2\n";
        let h = parse_hashes(text).expect("parses");
        assert_eq!(h.len(), 2);
        assert!(h["server"].starts_with("fbd570f9"));
        assert!(parse_hashes("").is_err());
        assert!(parse_hashes("database\n").is_err());
        assert!(parse_hashes("database zz-not-hex\n").is_err());
    }

    /// What Debian's docker-compose 1.29.2 printed for `config`.
    #[test]
    fn images_from_v1s_config() {
        let text = "services:\n  database:\n    command:\n    - sleep\n    - '3600'\n    image: vaultd-test/busybox:latest\n    network_mode: none\n  server:\n    image: vaultd-test/notthere:1.0\n    network_mode: none\n  built:\n    build:\n      context: /srv/x\n      image: not-this\nversion: '2.4'\n";
        let images = service_images(text).expect("parses");
        assert_eq!(
            images,
            BTreeMap::from([
                ("built".to_owned(), None),
                (
                    "database".to_owned(),
                    Some("vaultd-test/busybox:latest".to_owned())
                ),
                (
                    "server".to_owned(),
                    Some("vaultd-test/notthere:1.0".to_owned())
                ),
            ])
        );
    }

    /// v2 prints the project's name first, and may quote.
    #[test]
    fn images_from_a_v2_shaped_config() {
        let text = "name: immich\nservices:\n  immich-server:\n    container_name: immich_server\n    image: \"ghcr.io/immich-app/immich-server:v1.132.3\"\n    networks:\n      default: null\n  redis:\n    image: 'docker.io/valkey/valkey:8-bookworm@sha256:ff21'\nnetworks:\n  default:\n    name: immich_default\n";
        let images = service_images(text).expect("parses");
        assert_eq!(
            images["immich-server"].as_deref(),
            Some("ghcr.io/immich-app/immich-server:v1.132.3")
        );
        assert_eq!(
            images["redis"].as_deref(),
            Some("docker.io/valkey/valkey:8-bookworm@sha256:ff21")
        );
        assert_eq!(images.len(), 2);
        assert!(service_images("version: '3'\n").is_err());
    }

    #[test]
    fn missing_images_are_named_one_or_many() {
        let e = ComposeError::ImagesMissing {
            tool: "docker-compose",
            file: "/srv/c.yml".into(),
            images: vec!["a:1 (x)".into()],
        };
        assert!(
            e.to_string()
                .contains("image a:1 (x) is not on this machine"),
            "{e}"
        );
        let e = ComposeError::ImagesMissing {
            tool: "docker-compose",
            file: "/srv/c.yml".into(),
            images: vec!["a:1 (x)".into(), "b:2 (y)".into()],
        };
        assert!(e.to_string().contains("images a:1 (x), b:2 (y) are"), "{e}");
        assert!(
            e.to_string().contains("docker-compose -f /srv/c.yml pull"),
            "{e}"
        );
    }
}
