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

impl RealHost {
    pub(super) async fn dump_databases_now(&self, into: &Path) -> Vec<DatabaseDump> {
        let containers = match self.connection().await {
            Ok(stack) => match stack.containers().await {
                Ok(c) => c,
                Err(e) => return vec![failed_all(&e)],
            },
            Err(e) => return vec![failed_all(&e)],
        };
        let postgres: Vec<&ContainerInfo> = containers
            .iter()
            .filter(|c| c.may_write())
            .filter(|c| {
                kind(&super::stop::facts(c), &self.stack.stop.database_services)
                    == ServiceKind::Postgres
            })
            .collect();
        if postgres.is_empty() {
            return Vec::new();
        }
        // The dump holds every account's hashes: root's alone, like the drives' keys.
        let made = {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(into)
        };
        if let Err(e) = made {
            return vec![DatabaseDump {
                service: String::new(),
                result: Err(format!("cannot create {}: {e}", into.display())),
            }];
        }
        let Ok(stack) = self.connection().await else {
            return Vec::new();
        };
        let mut dumps = Vec::new();
        for c in postgres {
            let file = into.join(format!("{}.sql", c.service));
            let partial = into.join(format!(".{}.sql.partial", c.service));
            let ran = stack
                .exec_to_file(
                    &c.id,
                    postgres::DUMP_ALL,
                    Some(postgres::USER),
                    DUMP_LIMIT,
                    &partial,
                )
                .await;
            let result = match ran {
                Ok(out) if out.exit_code == Some(0) && out.bytes > 0 => {
                    std::fs::rename(&partial, &file)
                        .map_err(|e| format!("cannot rename the dump to {}: {e}", file.display()))
                        .map(|()| DumpDone {
                            file: file.clone(),
                            bytes: out.bytes,
                            data_dir: postgres::data_dir(c),
                        })
                }
                Ok(out) => {
                    let _ = std::fs::remove_file(&partial);
                    Err(format!(
                        "pg_dumpall in {} exited with {} after {} bytes: {}",
                        c.name,
                        out.exit_code.unwrap_or(-1),
                        out.bytes,
                        out.stderr.trim()
                    ))
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&partial);
                    Err(e.to_string())
                }
            };
            dumps.push(DatabaseDump {
                service: c.service.clone(),
                result,
            });
        }
        dumps
    }
}

fn failed_all(e: &DockerError) -> DatabaseDump {
    DatabaseDump {
        service: String::new(),
        result: Err(e.to_string()),
    }
}
