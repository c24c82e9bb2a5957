//! Benchmark of vaultd's backup driver against restic run by hand (issue 19): the same data,
//! the same Debian `restic`, each into a repository of its own; the first backup, then an
//! incremental one after a tenth of the files changed. The driver's time over the hand-run's is
//! the overhead of vaultd's way (bounded JSON lines, progress, the clean environment); the
//! interruption: from the cancellation to restic gone and its lock released, over a backup of
//! a large file. Prints `BENCH <name> <value> <unit>`.
//!
//! Usage: bench-backup [MIB] [RUNS] (defaults 256, 3: the data set's size, and the runs each
//! figure's median is taken over). Needs restic.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use vault_backup::restic::{Keep, Repo};
use vault_integration_tests::flood::percentile;

fn repo(dir: &Path, name: &str, key: &Path) -> Repo {
    Repo {
        restic: PathBuf::from("/usr/bin/restic"),
        repository: dir.join(name).join("restic"),
        password_file: key.to_owned(),
        cache_dir: dir.join(name).join("cache"),
        options: Vec::new(),
    }
}

fn by_hand(r: &Repo, args: &[&str]) {
    let out = std::process::Command::new(&r.restic)
        .env("RESTIC_REPOSITORY", &r.repository)
        .env("RESTIC_PASSWORD_FILE", &r.password_file)
        .env("RESTIC_CACHE_DIR", &r.cache_dir)
        .args(args)
        .output()
        .expect("restic");
    assert!(
        out.status.success(),
        "restic {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn random_file(path: &Path, bytes: usize) {
    let out = std::process::Command::new("head")
        .args(["-c", &bytes.to_string(), "/dev/urandom"])
        .stdout(std::fs::File::create(path).expect("create"))
        .status()
        .expect("head");
    assert!(out.success());
}

/// The median, in milliseconds.
fn median(samples: &mut [Duration]) -> f64 {
    samples.sort();
    percentile(samples, 0.5).as_secs_f64() * 1000.0
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mib: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(256);
    let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (mut first_hand, mut first_ours, mut incr_hand, mut incr_ours, mut interrupt) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let never = CancellationToken::new();
    for run in 0..runs {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("vault/library");
        std::fs::create_dir_all(&data).expect("data");
        // Photos: 1 MiB each.
        for i in 0..mib {
            random_file(&data.join(format!("IMG_{i:05}.jpg")), 1 << 20);
        }
        let key = dir.path().join("key");
        std::fs::write(&key, vault_backup::drive::new_key().expect("key")).expect("key");
        let hand = repo(dir.path(), "hand", &key);
        let ours = repo(dir.path(), "ours", &key);
        let source = data.display().to_string();
        // Alternate who goes first: the page cache favours the second.
        let order: [&str; 2] = if run % 2 == 0 {
            ["hand", "ours"]
        } else {
            ["ours", "hand"]
        };
        for who in order {
            if who == "hand" {
                by_hand(&hand, &["init"]);
                let t = Instant::now();
                by_hand(&hand, &["backup", "--json", "--tag", "vaultd", &source]);
                first_hand.push(t.elapsed());
            } else {
                rt.block_on(ours.init()).expect("init");
                let t = Instant::now();
                rt.block_on(ours.backup(std::slice::from_ref(&data), &[], "bench", |_| {}, &never))
                    .expect("backup");
                first_ours.push(t.elapsed());
            }
        }
        for i in 0..mib / 10 {
            random_file(&data.join(format!("IMG_{i:05}.jpg")), 1 << 20);
        }
        for who in order {
            let t = Instant::now();
            if who == "hand" {
                by_hand(&hand, &["backup", "--json", "--tag", "vaultd", &source]);
                incr_hand.push(t.elapsed());
            } else {
                rt.block_on(ours.backup(std::slice::from_ref(&data), &[], "bench", |_| {}, &never))
                    .expect("backup");
                incr_ours.push(t.elapsed());
            }
        }
        rt.block_on(ours.forget(
            &Keep {
                daily: 1,
                ..Keep::default()
            },
            &never,
        ))
        .expect("forget");
        // The interruption, over a large new file.
        random_file(&data.join("VID_big.mp4"), 512 << 20);
        let cancel = CancellationToken::new();
        let trip = cancel.clone();
        let mut at = None;
        let result = rt.block_on(ours.backup(
            std::slice::from_ref(&data),
            &[],
            "bench",
            |p| {
                if p.bytes_done > 0 && at.is_none() {
                    at = Some(Instant::now());
                    trip.cancel();
                }
            },
            &cancel,
        ));
        assert!(
            result.is_err(),
            "the backup ended before it was interrupted"
        );
        if let Some(at) = at {
            interrupt.push(at.elapsed());
        }
    }
    let (fh, fo) = (median(&mut first_hand), median(&mut first_ours));
    let (ih, io) = (median(&mut incr_hand), median(&mut incr_ours));
    #[allow(clippy::cast_precision_loss)]
    let mb = mib as f64 * 1.048_576;
    println!("BENCH backup_first_by_hand {fh:.0} ms");
    println!("BENCH backup_first_vaultd {fo:.0} ms");
    println!(
        "BENCH backup_first_vaultd_throughput {:.1} MB/s",
        mb / (fo / 1000.0)
    );
    println!("BENCH backup_incremental_by_hand {ih:.0} ms");
    println!("BENCH backup_incremental_vaultd {io:.0} ms");
    println!(
        "BENCH backup_interrupt_to_released {:.0} ms",
        median(&mut interrupt)
    );
    println!(
        "BENCH backup_interrupt_to_released_max {:.0} ms",
        interrupt
            .iter()
            .max()
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    );
}
