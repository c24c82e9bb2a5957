//! Status while the key is derived. An unlock's passphrase check runs LUKS2's argon2id over
//! every CPU for seconds; the owner runs `vaultctl status` over SSH exactly then. On this host
//! the kernel has no device-mapper, but the check runs the same derivation (the activation
//! fails after it), so the figure is exact here, where a guest under TCG would blur it.
//!
//! Prints `BENCH <name> <value> <unit>`: Status p99 idle, Status p99 while the daemon's phase
//! is "opening mapping" (read from each reply), and their ratio (goal ≤ 2).
//!
//! Usage: bench-kdf [UNLOCKS] (default 5). Needs root and cryptsetup.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vault_api::v1 as pb;

const PASSPHRASE: &str = "bench passphrase";

use vault_integration_tests::flood::percentile;

/// A LUKS2 image formatted the way cryptsetup does by default on this machine: argon2id, one
/// thread per CPU, a second of work (with memory kept modest for the test host).
fn luks_image(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("photos.img");
    std::fs::File::create(&path)
        .and_then(|f| f.set_len(32 << 20))
        .expect("image");
    let cpus = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    let mut child = Command::new("cryptsetup")
        .args([
            "luksFormat",
            "--batch-mode",
            "--type",
            "luks2",
            "--pbkdf",
            "argon2id",
            "--pbkdf-memory",
            "262144",
            "--pbkdf-parallel",
            &cpus.to_string(),
            "--iter-time",
            "1000",
            "--key-file",
            "-",
        ])
        .arg(&path)
        .stdin(Stdio::piped())
        .spawn()
        .expect("cryptsetup");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(PASSPHRASE.as_bytes())
        .expect("write");
    assert!(child.wait().expect("wait").success(), "luksFormat failed");
    path
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let unlocks: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir().expect("tempdir");
    let image = luks_image(dir.path());
    let socket = dir.path().join("vaultd.sock");
    let config = dir.path().join("vaultd.toml");
    std::fs::create_dir_all(dir.path().join("srv")).expect("mountpoint");
    std::fs::write(
        &config,
        format!(
            "[daemon]\nsocket_path = \"{}\"\nsocket_group = \"root\"\nstate_dir = \"{}\"\n\
             [storage]\ndevice = \"{}\"\nmapping_name = \"vaultd-bench-kdf\"\nmountpoint = \"{}\"\n",
            socket.display(),
            dir.path().join("state").display(),
            image.display(),
            dir.path().join("srv").display()
        ),
    )
    .expect("config");
    let mut child = Command::new(vault_integration_tests::bin("vaultd"))
        .arg("--config")
        .arg(&config)
        .env("VAULTD_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn vaultd");
    let started = Instant::now();
    let mut client = loop {
        if let Ok(mut c) = vaultctl::connect::connect(&socket).await
            && c.status(pb::StatusRequest {}).await.is_ok()
        {
            break c;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "vaultd never became ready"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };

    let mut idle = Vec::new();
    for _ in 0..2000 {
        let t = Instant::now();
        client.status(pb::StatusRequest {}).await.expect("status");
        idle.push(t.elapsed());
    }
    idle.sort();

    let mut during = Vec::new();
    let mut unlocker = vaultctl::connect::connect(&socket).await.expect("connect");
    for _ in 0..unlocks {
        // The right passphrase: the check derives the key, then the activation fails here (no
        // device-mapper) and the unlock rolls back; no throttle builds up.
        unlocker
            .unlock(pb::UnlockRequest {
                passphrase: PASSPHRASE.as_bytes().to_vec(),
                no_start: true,
            })
            .await
            .expect("unlock accepted");
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let t = Instant::now();
            let reply = client
                .status(pb::StatusRequest {})
                .await
                .expect("status")
                .into_inner();
            let rtt = t.elapsed();
            match reply.phase.as_str() {
                "opening mapping" => during.push(rtt),
                "idle" => break,
                _ => {}
            }
            assert!(Instant::now() < deadline, "the unlock never ended");
        }
    }
    during.sort();
    assert!(
        during.len() >= 100,
        "too few Status calls during the derivation ({}); is the PBKDF that quick?",
        during.len()
    );

    let idle_p99 = percentile(&idle, 0.99);
    let during_p99 = percentile(&during, 0.99);
    println!(
        "BENCH status_p99_idle {:.1} us",
        idle_p99.as_secs_f64() * 1e6
    );
    println!(
        "BENCH status_p99_during_kdf {:.1} us",
        during_p99.as_secs_f64() * 1e6
    );
    println!("BENCH status_calls_during_kdf {} calls", during.len());
    println!(
        "BENCH status_p99_during_kdf_over_idle {:.2} ratio",
        during_p99.as_secs_f64() / idle_p99.as_secs_f64()
    );

    let pid = libc::pid_t::try_from(child.id()).expect("pid");
    // SAFETY: kill(2) on our own child, not yet reaped.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let _ = child.wait();
}
