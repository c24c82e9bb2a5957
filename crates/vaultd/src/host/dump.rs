//! The database dump before a backup while the stack runs: `pg_dumpall` in each running
//! Postgres container, its output streamed to a file on the vault (so the snapshot holds a
//! consistent copy of the database, which the live data directory under the copy is not).

use std::path::Path;
use std::time::Duration;

use vault_core::stop::{ServiceKind, kind};
use vault_docker::{ContainerInfo, DockerError, postgres};

use super::{DatabaseDump, DumpDone, RealHost};

/// How long one dump may take: a large library's database on an old disk.
const DUMP_LIMIT: Duration = Duration::from_secs(3600);
/// How long the question of the databases' size may take.
const SIZE_LIMIT: Duration = Duration::from_secs(60);

impl RealHost {
    pub(super) async fn dump_databases_now(&self, into: &Path) -> Vec<DatabaseDump> {
        let stack = match self.connection().await {
            Ok(stack) => stack,
            Err(e) => return vec![failed_all(&e)],
        };
        let containers = match stack.containers().await {
            Ok(c) => c,
            Err(e) => return vec![failed_all(&e)],
        };
        // The servers: running, Postgres, their data bound from the host. A client from
        // Postgres' image (a writer, a pg_dump job) has no data directory and is not dumped.
        let servers: Vec<&ContainerInfo> = containers
            .iter()
            .filter(|c| c.may_write() && postgres::data_dir(c).is_some())
            .filter(|c| {
                kind(&super::stop::facts(c), &self.stack.stop.database_services)
                    == ServiceKind::Postgres
            })
            .collect();
        if servers.is_empty() {
            return Vec::new();
        }
        if let Err(why) = private_dir(into) {
            return vec![DatabaseDump {
                service: String::new(),
                result: Err(why),
            }];
        }
        let mut dumps = Vec::new();
        for c in servers {
            let file = into.join(format!("{}.sql", c.service));
            let partial = into.join(format!(".{}.sql.partial", c.service));
            let _ = std::fs::remove_file(&partial);
            if let Err(why) = room_for(&stack, c, into, &file).await {
                if file.exists() {
                    let _ = std::fs::rename(&file, file.with_extension("sql.stale"));
                }
                dumps.push(DatabaseDump {
                    service: c.service.clone(),
                    result: Err(why),
                });
                continue;
            }
            let ran = stack
                .exec_to_file(
                    &c.id,
                    postgres::DUMP_ALL,
                    Some(postgres::USER),
                    DUMP_LIMIT,
                    &partial,
                )
                .await;
            if let Ok(out) = &ran
                && matches!(out.exit_code, Some(126 | 127))
            {
                // No pg_dumpall (or no postgres user) in the image: not a Postgres server
                // after all; its files are copied as they are.
                let _ = std::fs::remove_file(&partial);
                tracing::warn!(
                    "{} has no pg_dumpall: not dumped, its files are copied as they are ({})",
                    c.name,
                    out.stderr.trim()
                );
                continue;
            }
            let result = match ran {
                Ok(out) if out.exit_code == Some(0) && out.bytes > 0 => {
                    std::fs::rename(&partial, &file)
                        .and_then(|()| std::fs::File::open(into)?.sync_all())
                        .map_err(|e| format!("cannot rename the dump to {}: {e}", file.display()))
                        .map(|()| DumpDone {
                            file: file.clone(),
                            bytes: out.bytes,
                            data_dir: postgres::data_dir(c),
                        })
                }
                Ok(out) => Err(format!(
                    "pg_dumpall in {} exited with {} after {} bytes: {}",
                    c.name,
                    out.exit_code.unwrap_or(-1),
                    out.bytes,
                    out.stderr.trim()
                )),
                Err(e) => Err(e.to_string()),
            };
            if result.is_err() {
                let _ = std::fs::remove_file(&partial);
                // An older dump must not pass for this run's in the snapshot.
                if file.exists() {
                    let _ = std::fs::rename(&file, file.with_extension("sql.stale"));
                }
            }
            dumps.push(DatabaseDump {
                service: c.service.clone(),
                result,
            });
        }
        dumps
    }
}

/// Whether the dump of `c` fits on the vault beside its database (vault_core::backup::dump_fits):
/// the estimate is the larger of the databases' size on disk and the last dump's.
async fn room_for(
    stack: &vault_docker::Stack,
    c: &ContainerInfo,
    into: &Path,
    last_dump: &Path,
) -> Result<(), String> {
    let on_disk = match stack
        .exec(
            &c.id,
            postgres::DATABASES_SIZE,
            Some(postgres::USER),
            SIZE_LIMIT,
        )
        .await
    {
        Ok(out) if out.exit_code == Some(0) => postgres::parse_count(&out.output).unwrap_or(0),
        _ => 0,
    };
    let last = std::fs::metadata(last_dump).map_or(0, |m| m.len());
    let fs = nix::sys::statvfs::statvfs(into)
        .map_err(|e| format!("cannot read the free space of {}: {e}", into.display()))?;
    let block = fs.fragment_size();
    let available = fs.blocks_available().saturating_mul(block);
    let size = fs.blocks().saturating_mul(block);
    vault_core::backup::dump_fits(available, size, on_disk.max(last))
        .map_err(|why| format!("{}: {why}", c.name))
}

/// The dumps' directory, made root's and 0700 (a dump holds every role's password hash), and
/// refused if it is anything else: a symlink or a directory of someone else's, planted by a
/// container that can write the vault's root, would send root's writes elsewhere.
fn private_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let made = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir);
    if let Err(e) = made {
        return Err(format!("cannot create {}: {e}", dir.display()));
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !meta.is_dir() || meta.uid() != 0 {
        return Err(format!(
            "{} is not a directory of root's: not dumping into it",
            dir.display()
        ));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("cannot make {} private: {e}", dir.display()))?;
    }
    Ok(())
}

fn failed_all(e: &DockerError) -> DatabaseDump {
    DatabaseDump {
        service: String::new(),
        result: Err(e.to_string()),
    }
}
