//! The command line: which server to be (version, queues, their jobs) and where.

use std::collections::HashMap;
use std::fs;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::dialect::Dialect;

pub(crate) const USAGE: &str =
    "usage: immich-test-server [--listen ADDR] (--api-key KEY | --api-key-file PATH)
    [--version X.Y.Z] [--queues a,b,c] [--active NAME=N,...] [--waiting NAME=N,...]
    [--failed NAME=N,...] [--paused NAME,...] [--job-ms MS] [--data-dir DIR] [--write-ms MS]
defaults: --listen 127.0.0.1:2283 --version 2.4.1 --queues <the QueueName values of the version:
          17 in v2.4.1, 19 from v3 on> --job-ms 1000 --write-ms 1000
--version 3.x.y answers as Immich v3.2: its queues, its validation errors and the correlation
id in an X-Correlation-ID header (v2: in the error bodies)";

#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) listen: SocketAddr,
    pub(crate) api_key: String,
    pub(crate) version: (u64, u64, u64),
    pub(crate) queues: Vec<String>,
    pub(crate) active: Vec<(String, u64)>,
    pub(crate) waiting: Vec<(String, u64)>,
    pub(crate) failed: Vec<(String, u64)>,
    pub(crate) paused: Vec<String>,
    pub(crate) job: Duration,
    pub(crate) data_dir: Option<PathBuf>,
    pub(crate) write_every: Duration,
}

pub(crate) fn parse_version(text: &str) -> Result<(u64, u64, u64), String> {
    let bad = || format!("--version: expected X.Y.Z, got {text:?}");
    let mut parts = text.strip_prefix('v').unwrap_or(text).split('.');
    let mut next = || -> Result<u64, String> {
        parts
            .next()
            .and_then(|p| p.parse::<u64>().ok())
            .ok_or_else(bad)
    };
    let version = (next()?, next()?, next()?);
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok(version)
}

pub(crate) fn parse_counts(flag: &str, text: &str) -> Result<Vec<(String, u64)>, String> {
    let mut counts = Vec::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (name, count) = item
            .split_once('=')
            .ok_or_else(|| format!("{flag}: expected NAME=N, got {item:?}"))?;
        let count = count
            .trim()
            .parse::<u64>()
            .map_err(|_| format!("{flag}: {count:?} is not a count"))?;
        counts.push((name.trim().to_owned(), count));
    }
    Ok(counts)
}

pub(crate) fn parse_names(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect()
}

pub(crate) fn parse_ms(flag: &str, text: &str) -> Result<Duration, String> {
    text.parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| format!("{flag}: {text:?} is not a number of milliseconds"))
}

pub(crate) fn parse_args(args: &[String]) -> Result<Config, String> {
    let mut values: HashMap<&str, String> = HashMap::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_owned())),
            _ => (arg.as_str(), None),
        };
        let known = [
            "--listen",
            "--api-key",
            "--api-key-file",
            "--version",
            "--queues",
            "--active",
            "--waiting",
            "--failed",
            "--paused",
            "--job-ms",
            "--data-dir",
            "--write-ms",
        ];
        let Some(flag) = known.iter().find(|k| **k == flag) else {
            return Err(format!("unknown argument {arg:?}"));
        };
        let value = match inline {
            Some(value) => value,
            None => rest
                .next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))?,
        };
        values.insert(flag, value);
    }

    let listen = values
        .get("--listen")
        .map_or("127.0.0.1:2283", String::as_str);
    // An IP literal only: parsing never resolves a name (no DNS, no NSS in a static binary).
    let listen: SocketAddr = listen
        .parse()
        .map_err(|_| format!("--listen: {listen:?} is not IP:PORT"))?;

    let api_key = match (values.get("--api-key"), values.get("--api-key-file")) {
        (Some(key), _) => key.clone(),
        (None, Some(path)) => fs::read_to_string(path)
            .map_err(|e| format!("--api-key-file {path}: {e}"))?
            .trim()
            .to_owned(),
        (None, None) => return Err("--api-key or --api-key-file is required".to_owned()),
    };
    if api_key.is_empty() {
        return Err("the API key is empty".to_owned());
    }

    let version = parse_version(values.get("--version").map_or("2.4.1", String::as_str))?;

    let queues = match values.get("--queues") {
        Some(list) => parse_names(list),
        None => Dialect::of(version).default_queues(),
    };
    if queues.is_empty() {
        return Err("--queues: no queue names".to_owned());
    }
    for (i, name) in queues.iter().enumerate() {
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!("--queues: {name:?} is not a queue name"));
        }
        if queues[..i].contains(name) {
            return Err(format!("--queues: {name} is given twice"));
        }
    }
    let known = |flag: &str, name: &str| {
        if queues.iter().any(|q| q == name) {
            Ok(())
        } else {
            Err(format!("{flag}: {name} is not one of --queues"))
        }
    };
    let mut counts = Vec::new();
    for flag in ["--active", "--waiting", "--failed"] {
        let parsed = match values.get(flag) {
            Some(text) => parse_counts(flag, text)?,
            None => Vec::new(),
        };
        for (name, _) in &parsed {
            known(flag, name)?;
        }
        counts.push(parsed);
    }
    let paused = values
        .get("--paused")
        .map(|list| parse_names(list))
        .unwrap_or_default();
    for name in &paused {
        known("--paused", name)?;
    }
    let failed = counts.pop().unwrap_or_default();
    let waiting = counts.pop().unwrap_or_default();
    let active = counts.pop().unwrap_or_default();

    let job = parse_ms(
        "--job-ms",
        values.get("--job-ms").map_or("1000", String::as_str),
    )?;
    let write_every = parse_ms(
        "--write-ms",
        values.get("--write-ms").map_or("1000", String::as_str),
    )?;
    // Bounds that keep every Instant computation and the active-job list far from overflow.
    if job > Duration::from_secs(365 * 24 * 3600) {
        return Err("--job-ms: at most a year".to_owned());
    }
    if let Some((name, n)) = active.iter().find(|(_, n)| *n > 1_000_000) {
        return Err(format!("--active: {name}={n}: at most 1000000 active jobs"));
    }
    if write_every.is_zero() {
        return Err("--write-ms must be at least 1".to_owned());
    }

    Ok(Config {
        listen,
        api_key,
        version,
        queues,
        active,
        waiting,
        failed,
        paused,
        job,
        data_dir: values.get("--data-dir").map(PathBuf::from),
        write_every,
    })
}
