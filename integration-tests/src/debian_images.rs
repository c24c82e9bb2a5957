//! The container images of the real-database tests: Debian bookworm's `postgresql-15` and
//! `redis-server`, built by `integration-tests/images/build` (mmdebstrap from the host's apt
//! sources, cached under `integration-tests/.work/images/<recipe hash>/`) and imported into a
//! test's private Docker Engine by `integration-tests/images/import`. Nothing is pulled from a
//! registry (none is reachable here, and the tests must not depend on one).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::{DockerEngine, have_command, require};

/// Postgres 15 (Debian's build): entry `vaultd-postgres` (initdb --data-checksums on an empty
/// `$PGDATA`, the postmaster as PID 1, only the Unix socket in `/run/postgresql`), and the
/// client `vaultd-pg-writer`. No STOPSIGNAL: the stopper picks the signal.
pub const POSTGRES_IMAGE: &str = "vaultd-test/postgres:15";
/// Redis 7 (Debian's build): entry `vaultd-redis` (`/data`, an append-only file).
pub const REDIS_IMAGE: &str = "vaultd-test/redis:7";

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("images")
        .join(name)
}

/// Whether this machine can build and run them (root, dockerd, mmdebstrap); a test that needs
/// them skips, or fails under CI, when not.
pub fn ready() -> bool {
    require(
        "root, dockerd (docker.io), busybox-static and mmdebstrap",
        DockerEngine::available() && have_command("mmdebstrap"),
    )
}

/// The cache directory holding `postgres.tar` and `redis.tar`, built the first time (a few
/// minutes; the script's progress goes to the test's stderr). Once per test binary.
pub fn build() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let out = Command::new(script("build"))
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .expect("run integration-tests/images/build");
        assert!(
            out.status.success(),
            "integration-tests/images/build failed"
        );
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        assert!(dir.join("done").exists(), "no images in {}", dir.display());
        dir
    })
}

/// Build if needed, and import both images into `engine`.
pub fn import(engine: &DockerEngine) {
    let dir = build();
    let out = Command::new(script("import"))
        .arg(dir)
        .env("DOCKER_HOST", format!("unix://{}", engine.socket.display()))
        .stdin(Stdio::null())
        .output()
        .expect("run integration-tests/images/import");
    assert!(
        out.status.success(),
        "images/import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
