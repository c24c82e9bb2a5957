//! The restic driver against Debian's real `restic`: a repository keyed by the vault's key and
//! the recovery passphrase, backups with progress, rotation, checks, the restore test, and an
//! interruption that leaves the repository usable. Needs `restic` (integration-tests/install-deps);
//! under CI=true its absence is a failure.

use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;
use vault_backup::restic::{Keep, Repo, ResticError};
use vault_backup::{drive, sample};

fn restic() -> Option<PathBuf> {
    let path = PathBuf::from("/usr/bin/restic");
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "restic is missing (apt-get install restic)"
    );
    eprintln!("SKIPPED: restic is not installed");
    None
}

struct Setup {
    _dir: tempfile::TempDir,
    source: PathBuf,
    repo: Repo,
    recovery_file: PathBuf,
}

fn setup(restic: PathBuf) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = dir.path().join("vault/library");
    std::fs::create_dir_all(&source).expect("source");
    for i in 0..5u8 {
        let bytes: Vec<u8> = (0..200_000u32)
            .map(|j| u8::try_from(j % 251).unwrap_or(0).wrapping_mul(i + 3) ^ i)
            .collect();
        std::fs::write(source.join(format!("IMG_{i}.jpg")), bytes).expect("photo");
    }
    std::fs::write(source.join("marker.txt"), b"a photo's words\n").expect("marker");
    let key = drive::new_key().expect("key");
    let key_file = dir.path().join("vault/.vaultd/backup/k.key");
    drive::store_key(&key_file, &key).expect("key stored");
    let drive = dir.path().join("drive");
    let repo = Repo {
        restic,
        repository: drive.join(drive::REPOSITORY_DIR),
        password_file: key_file,
        cache_dir: drive.join(drive::CACHE_DIR),
        options: Vec::new(),
    };
    // The owner's recovery passphrase, in a file for the test's own restic calls only.
    let recovery_file = dir.path().join("recovery");
    std::fs::write(&recovery_file, "correct horse battery staple").expect("recovery");
    Setup {
        _dir: dir,
        source,
        repo,
        recovery_file,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// restic by hand, as the owner would run it on another machine.
fn by_hand(repo: &Repo, password_file: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(&repo.restic)
        .env("RESTIC_REPOSITORY", &repo.repository)
        .env("RESTIC_PASSWORD_FILE", password_file)
        .env("RESTIC_CACHE_DIR", &repo.cache_dir)
        .args(args)
        .output()
        .expect("restic runs")
}

#[test]
fn a_repository_backed_up_rotated_checked_and_restored_opens_with_either_key() {
    let Some(restic) = restic() else { return };
    let s = setup(restic);
    let rt = runtime();
    let cancel = CancellationToken::new();
    rt.block_on(async {
        s.repo.init().await.expect("init");
        s.repo
            .add_key(b"correct horse battery staple")
            .await
            .expect("recovery key added");
        let mut statuses = 0;
        let began = std::time::SystemTime::now() - std::time::Duration::from_secs(1);
        let first = s
            .repo
            .backup(
                std::slice::from_ref(&s.source),
                &["*.tmp".into()],
                "laptop",
                |_| statuses += 1,
                &cancel,
            )
            .await
            .expect("first backup");
        assert_eq!(first.summary.files_new, 6, "{first:?}");
        assert!(first.summary.bytes_added > 0);
        assert!(first.unreadable.is_empty());
        assert!(statuses >= 1, "progress was reported");
        let second = s
            .repo
            .backup(
                std::slice::from_ref(&s.source),
                &[],
                "laptop",
                |_| {},
                &cancel,
            )
            .await
            .expect("incremental backup");
        assert_eq!(second.summary.files_new, 0);
        assert_eq!(second.summary.files_unmodified, 6);
        assert_ne!(first.summary.snapshot_id, second.summary.snapshot_id);
        assert_eq!(s.repo.snapshots().await.expect("list").len(), 2);

        // Rotation: one a day kept.
        let keep = Keep {
            daily: 1,
            ..Keep::default()
        };
        s.repo.forget(&keep, &cancel).await.expect("forget");
        let left = s.repo.snapshots().await.expect("list");
        assert_eq!(left.len(), 1);
        assert!(second.summary.snapshot_id.starts_with(&left[0].id[..8]));

        s.repo
            .check(Some((1, 3)), &cancel)
            .await
            .expect("check 1/3");
        s.repo
            .check(Some((3, 3)), &cancel)
            .await
            .expect("check 3/3");

        // The restore test.
        let nodes = s.repo.ls(&left[0].id).await.expect("ls");
        let picked = sample::pick(&nodes, 3, began + std::time::Duration::from_secs(3600));
        assert_eq!(picked.len(), 3, "{nodes:?}");
        let target = s
            .repo
            .cache_dir
            .parent()
            .expect("drive")
            .join(drive::SAMPLE_DIR);
        s.repo
            .restore(&left[0].id, &picked, &target, &cancel)
            .await
            .expect("restore");
        for path in &picked {
            let restored = target.join(path.trim_start_matches('/'));
            assert_eq!(sample::differs(Path::new(path), &restored), None);
        }
    });
    // Without vaultd: restic by hand with the recovery passphrase lists and restores.
    let out = by_hand(&s.repo, &s.recovery_file, &["snapshots", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let elsewhere = s.repo.cache_dir.parent().expect("drive").join("elsewhere");
    let out = by_hand(
        &s.repo,
        &s.recovery_file,
        &[
            "restore",
            "latest",
            "--target",
            elsewhere.to_str().expect("utf-8"),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let restored = elsewhere.join(
        s.source
            .join("marker.txt")
            .strip_prefix("/")
            .expect("absolute"),
    );
    assert_eq!(
        std::fs::read(restored).expect("restored"),
        b"a photo's words\n"
    );
    // A wrong passphrase opens nothing.
    std::fs::write(&s.recovery_file, "wrong").expect("write");
    assert!(
        !by_hand(&s.repo, &s.recovery_file, &["snapshots"])
            .status
            .success()
    );
    // Nothing of the photos in plaintext in the repository.
    let mut plain = false;
    for entry in walk(&s.repo.repository) {
        let bytes = std::fs::read(&entry).expect("read");
        plain |= bytes.windows(15).any(|w| w == b"a photo's words");
    }
    assert!(
        !plain,
        "the marker's words are in the repository in plaintext"
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn an_interrupted_backup_releases_its_lock_and_the_next_one_works() {
    let Some(restic) = restic() else { return };
    let s = setup(restic);
    // Enough data that the backup is still running when it is interrupted.
    let big = s.source.join("VID_big.mp4");
    let status = std::process::Command::new("head")
        .args(["-c", "400M", "/dev/urandom"])
        .stdout(std::fs::File::create(&big).expect("create"))
        .status()
        .expect("head");
    assert!(status.success());
    let rt = runtime();
    rt.block_on(async {
        s.repo.init().await.expect("init");
        let cancel = CancellationToken::new();
        let trip = cancel.clone();
        let started = std::time::Instant::now();
        let mut cancelled_at = None;
        let result = s
            .repo
            .backup(
                std::slice::from_ref(&s.source),
                &[],
                "laptop",
                |p| {
                    if p.bytes_done > 0 && cancelled_at.is_none() {
                        cancelled_at = Some(std::time::Instant::now());
                        trip.cancel();
                    }
                },
                &cancel,
            )
            .await;
        let ended = std::time::Instant::now();
        assert!(
            matches!(result, Err(ResticError::Interrupted { .. })),
            "{result:?} after {:?}",
            started.elapsed()
        );
        if let Some(at) = cancelled_at {
            eprintln!("interrupted in {} ms", (ended - at).as_millis());
        }
        assert!(s.repo.snapshots().await.expect("list").is_empty());
        let locks = by_hand(&s.repo, &s.repo.password_file, &["list", "locks"]);
        assert!(locks.status.success());
        assert!(
            locks.stdout.is_empty(),
            "a lock was left: {}",
            String::from_utf8_lossy(&locks.stdout)
        );
        let next = s
            .repo
            .backup(
                std::slice::from_ref(&s.source),
                &[],
                "laptop",
                |_| {},
                &CancellationToken::new(),
            )
            .await
            .expect("the next backup");
        assert_eq!(next.summary.files_new, 7);
        s.repo
            .check(None, &CancellationToken::new())
            .await
            .expect("consistent");
    });
}
