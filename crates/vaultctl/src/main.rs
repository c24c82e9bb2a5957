//! `vaultctl`: the thin client of vaultd. Parse, send, print; exit non-zero on any failure.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use clap::{Parser, Subcommand};
use vault_api::v1 as pb;
use vaultctl::connect::{DEFAULT_SOCKET, connect};
use vaultctl::exit::Failure;
use vaultctl::{passphrase, print};

/// Every freed allocation is zeroed first (see vault_zeroalloc).
#[global_allocator]
static ALLOCATOR: vault_zeroalloc::ZeroOnFree = vault_zeroalloc::ZeroOnFree;

const EXIT_CODES: &str = "Exit codes: 0 ok · 1 other failure · 2 bad input or usage · \
3 vaultd unreachable · 4 permission denied · 5 refused in the current state · \
6 not implemented by this vaultd · 7 check found errors · \
8 the operation failed part-way and was rolled back to the last safe state";

/// Control the vault: status, unlock, start, stop, lock, watch, check, history, backup.
#[derive(Debug, Parser)]
#[command(version, about, after_help = EXIT_CODES)]
struct Args {
    /// vaultd's control socket.
    #[arg(long, global = true, env = "VAULTD_SOCKET", default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Print JSON for scripts instead of tables (one object per line for `watch`).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// The state, phase, reason, what vaultd observes, and power.
    Status,
    /// Follow transitions and alarms live, until Ctrl-C.
    Watch,
    /// Unlock the volume and mount it, then start the stack (unless --no-start).
    Unlock {
        /// Stop at MOUNTED (maintenance, backups).
        #[arg(long)]
        no_start: bool,
        /// Read the passphrase from this file instead of the terminal or stdin.
        #[arg(long)]
        key_file: Option<PathBuf>,
    },
    /// Start the stack (MOUNTED → RUNNING).
    Start,
    /// Drain and stop the stack, keeping the volume mounted (RUNNING → MOUNTED).
    Stop,
    /// Drain, unmount and close the volume (→ LOCKED).
    Lock,
    /// The security posture: listeners, firewall, containers, data path.
    Check,
    /// What happened: every unlock, start, drain, alarm and power change, oldest first, from
    /// the record vaultd keeps in its state directory (across restarts and reboots).
    History {
        /// Only since then: a duration back (2h, 3days), a UTC time ("2026-12-06 10:00:00"), or
        /// seconds since the epoch.
        #[arg(long)]
        since: Option<String>,
        /// Only this kind.
        #[arg(long, value_parser = ["unlock", "start", "drain", "alarm", "power", "poweroff", "backup"])]
        kind: Option<String>,
        /// At most this many, the newest (default: all vaultd returns, up to 2000).
        #[arg(long, default_value_t = 0)]
        limit: u32,
    },
    /// Back up the vault to a backup drive now, following its progress (MOUNTED or RUNNING);
    /// or set up, list and restore with the subcommands.
    Backup {
        /// The drive's UUID (default: the one of backup.drives that is plugged in).
        #[arg(long, global = true, default_value = "")]
        drive: String,
        /// To the off-site repository (backup.offsite_repository) instead of a drive.
        #[arg(long, conflicts_with = "drive")]
        offsite: bool,
        #[command(subcommand)]
        what: Option<BackupCmd>,
    },
    /// For packaging: print the man page (vaultctl.1) or a shell's completions.
    #[command(hide = true)]
    Generate {
        #[arg(value_enum)]
        what: Generated,
    },
}

#[derive(Debug, Subcommand)]
enum BackupCmd {
    /// Format DEVICE (a whole spare disk: everything on it is lost) as a backup drive: LUKS2
    /// with a key kept on the vault and a recovery passphrase you type now and write down.
    /// `offsite` instead of a device makes the off-site repository (backup.offsite_repository),
    /// keyed the same way.
    Init {
        device: String,
        /// Read the recovery passphrase from this file instead of the terminal or stdin.
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// Format even if DEVICE holds a filesystem, a partition table or a LUKS header.
        #[arg(long)]
        force: bool,
    },
    /// The snapshots on the drive.
    List,
    /// Restore PATH (as the snapshot names it) of SNAPSHOT ("latest", or an id) into TARGET, a
    /// new or empty directory under the vault's mountpoint.
    Restore {
        snapshot: String,
        path: String,
        target: String,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Generated {
    Man,
    Bash,
    Zsh,
    Fish,
}

/// The man page or completions, from the same definition the parser uses. A write error (a
/// closed pipe) is returned, not a panic.
fn generate(what: Generated) -> std::io::Result<()> {
    use clap::CommandFactory;
    use clap_complete::{Generator, Shell};
    let mut command = Args::command();
    let mut out = std::io::stdout().lock();
    let shell = match what {
        Generated::Man => return clap_mangen::Man::new(command).render(&mut out),
        Generated::Bash => Shell::Bash,
        Generated::Zsh => Shell::Zsh,
        Generated::Fish => Shell::Fish,
    };
    command.set_bin_name("vaultctl");
    command.build();
    shell.try_generate(&command, &mut out)
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Cmd::Generate { what } = args.command {
        return match generate(what) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("vaultctl: cannot write: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vaultctl: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("vaultctl: {failure}");
            failure.exit_code()
        }
    }
}

async fn run(args: Args) -> Result<(), Failure> {
    // Read the secret before connecting, so a slow typist does not hold a connection open.
    let secret = match &args.command {
        Cmd::Unlock { key_file, .. } => Some(passphrase::read(key_file.as_deref())?),
        Cmd::Backup {
            what: Some(BackupCmd::Init { key_file, .. }),
            ..
        } => Some(passphrase::read_new(
            key_file.as_deref(),
            "recovery passphrase",
        )?),
        _ => None,
    };
    let mut client = connect(&args.socket).await?;
    let status = |e: tonic::Status| Failure::from_status(&e);
    match args.command {
        Cmd::Status => {
            let reply = client.status(pb::StatusRequest {}).await.map_err(status)?;
            let reply = reply.into_inner();
            if args.json {
                println!("{}", print::status_json(&reply));
            } else {
                print!("{}", print::status_table(&reply, SystemTime::now()));
            }
        }
        Cmd::Watch => {
            let mut stream = client
                .watch(pb::WatchRequest {})
                .await
                .map_err(status)?
                .into_inner();
            let mut last_line = None;
            loop {
                let event = tokio::select! {
                    event = stream.message() => event.map_err(status)?,
                    _ = tokio::signal::ctrl_c() => return Ok(()),
                };
                let Some(event) = event else {
                    return Err(Failure::Unreachable("vaultd ended the watch".into()));
                };
                if args.json {
                    if let Some(v) = print::watch_json(&event) {
                        println!("{v}");
                    }
                } else if let Some(line) = print::watch_line(&event, SystemTime::now()) {
                    // Observation-only updates repeat the same line: print changes only.
                    let key = line.get(22..).map(str::to_owned);
                    if key != last_line {
                        println!("{line}");
                        last_line = key;
                    }
                }
                let _ = std::io::stdout().flush();
            }
        }
        Cmd::Unlock { no_start, .. } => {
            // Moved out of its zeroising wrapper into the request, not copied: the request is
            // the only copy, and the allocator zeroes it (and the encoder's) when freed.
            let passphrase = secret
                .map(|mut s| std::mem::take(&mut *s))
                .unwrap_or_default();
            let mut watch = open_watch(&mut client).await?;
            let reply = client
                .unlock(pb::UnlockRequest {
                    passphrase,
                    no_start,
                })
                .await
                .map_err(status)?;
            // Without --no-start the unlock succeeds only if the stack runs.
            follow(reply.into_inner(), &mut watch, args.json, |s| {
                if no_start {
                    s.state != pb::VaultState::Locked as i32
                } else {
                    s.state == pb::VaultState::Running as i32
                }
            })
            .await?;
        }
        Cmd::Start => {
            let mut watch = open_watch(&mut client).await?;
            let reply = client.start(pb::StartRequest {}).await.map_err(status)?;
            follow(reply.into_inner(), &mut watch, args.json, |s| {
                s.state == pb::VaultState::Running as i32
            })
            .await?;
        }
        Cmd::Stop => {
            let mut watch = open_watch(&mut client).await?;
            let reply = client.stop(pb::StopRequest {}).await.map_err(status)?;
            follow(reply.into_inner(), &mut watch, args.json, |s| {
                s.state == pb::VaultState::Mounted as i32
            })
            .await?;
        }
        Cmd::Lock => {
            let mut watch = open_watch(&mut client).await?;
            let reply = client.lock(pb::LockRequest {}).await.map_err(status)?;
            follow(reply.into_inner(), &mut watch, args.json, |s| {
                s.state == pb::VaultState::Locked as i32
                    && s.observed.as_ref().is_some_and(|o| o.mapping == "closed")
            })
            .await?;
        }
        Cmd::Check => {
            let reply = client.check(pb::CheckRequest {}).await.map_err(status)?;
            let findings = reply.into_inner().findings;
            if args.json {
                println!("{}", print::check_json(&findings));
            } else {
                print!("{}", print::check_table(&findings));
            }
            let errors = findings
                .iter()
                .filter(|f| f.severity() == pb::finding::Severity::Error)
                .count();
            if errors > 0 {
                return Err(Failure::CheckFailed(format!(
                    "{errors} finding(s) at error level"
                )));
            }
        }
        Cmd::History { since, kind, limit } => {
            let since_unix = match since {
                Some(s) => {
                    vaultctl::history::parse_since(&s, SystemTime::now()).map_err(Failure::Input)?
                }
                None => 0,
            };
            let reply = client
                .history(pb::HistoryRequest {
                    since_unix,
                    kind: kind.unwrap_or_default(),
                    limit,
                })
                .await
                .map_err(status)?
                .into_inner();
            if args.json {
                println!("{}", vaultctl::history::history_json(&reply));
            } else {
                print!(
                    "{}",
                    vaultctl::history::history_table(&reply, SystemTime::now())
                );
            }
        }
        Cmd::Backup {
            drive,
            offsite,
            what,
        } => match what {
            None => {
                let target = if offsite { "offsite".to_owned() } else { drive };
                vaultctl::backup::run(&mut client, target, args.json).await?;
            }
            Some(BackupCmd::Init { device, force, .. }) => {
                let recovery = secret.unwrap_or_default();
                vaultctl::backup::init(&mut client, device, recovery, force, args.json).await?;
            }
            Some(BackupCmd::List) => vaultctl::backup::list(&mut client, drive, args.json).await?,
            Some(BackupCmd::Restore {
                snapshot,
                path,
                target,
            }) => {
                let request = pb::BackupRestoreRequest {
                    drive,
                    snapshot,
                    path,
                    target,
                };
                vaultctl::backup::restore(&mut client, request, args.json).await?;
            }
        },
        // Handled in main, before any connection.
        Cmd::Generate { .. } => {}
    }
    Ok(())
}

type WatchStream = tonic::Streaming<pb::WatchEvent>;

/// Subscribe before the command, so no step of the flow it starts can be missed.
async fn open_watch(
    client: &mut vault_api::v1::vault_client::VaultClient<tonic::transport::Channel>,
) -> Result<WatchStream, Failure> {
    let mut stream = client
        .watch(pb::WatchRequest {})
        .await
        .map_err(|e| Failure::from_status(&e))?
        .into_inner();
    // The first event is the snapshot from before the command.
    stream
        .message()
        .await
        .map_err(|e| Failure::from_status(&e))?;
    Ok(stream)
}

/// Print each phase of the flow as it happens, until it ends; then judge the end state.
async fn follow(
    reply: pb::CommandReply,
    watch: &mut WatchStream,
    json: bool,
    succeeded: impl Fn(&pb::StatusReply) -> bool,
) -> Result<(), Failure> {
    if reply.outcome() != pb::command_reply::Outcome::Accepted {
        print_command(&reply, json);
        return Ok(());
    }
    if !json {
        println!("{}", reply.message);
    }
    let mut last_phase = String::new();
    // Updates from before the command was decided (observations of the stack keep coming)
    // must not be taken for its end: the flow has begun once a step shows, or once the
    // reason names this very process (a flow that ended at once).
    let mine = format!("(pid {})", std::process::id());
    let mut begun = false;
    let end = loop {
        let event = watch
            .message()
            .await
            .map_err(|e| Failure::from_status(&e))?
            .ok_or_else(|| Failure::Unreachable("vaultd ended the watch mid-way".into()))?;
        match event.event {
            Some(pb::watch_event::Event::Status(s)) => {
                if s.phase != last_phase {
                    if json {
                        println!(
                            "{}",
                            serde_json::json!({"progress": print::status_json(&s)})
                        );
                    } else if s.phase != "idle" {
                        println!("  … {} ({})", s.phase, print::state_name(s.state));
                    }
                    last_phase.clone_from(&s.phase);
                }
                if s.phase != "idle" {
                    begun = true;
                } else if begun || s.reason.contains(&mine) {
                    break s;
                }
            }
            Some(pb::watch_event::Event::Alarm(a)) if !json => {
                println!("  ALARM {}: {}", a.kind, a.message);
            }
            _ => {}
        }
    };
    if json {
        println!(
            "{}",
            serde_json::json!({"result": print::status_json(&end)})
        );
    }
    if succeeded(&end) {
        if !json {
            println!("{} — {}", print::state_name(end.state), end.reason);
        }
        Ok(())
    } else {
        Err(Failure::FlowFailed(format!(
            "{}: {}",
            print::state_name(end.state),
            end.reason
        )))
    }
}

fn print_command(reply: &pb::CommandReply, json: bool) {
    if json {
        let status = reply.status.as_ref().map(print::status_json);
        println!(
            "{}",
            serde_json::json!({"outcome": reply.outcome().as_str_name(), "message": reply.message, "status": status})
        );
    } else {
        println!("{}", reply.message);
    }
}
