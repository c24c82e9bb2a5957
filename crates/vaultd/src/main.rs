//! `vaultd`: the binary edge. Parses arguments and config, sets up logging, builds the async
//! runtime and the real host, and runs the daemon (`vaultd::daemon`) until a SIGTERM drain
//! ends.

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use vaultd::daemon::{self, Sources};
use vaultd::host::RealHost;
use vaultd::sim::{FakeHost, SimSettings};

/// Every freed allocation is zeroed first (see vault_zeroalloc).
#[global_allocator]
static ALLOCATOR: vault_zeroalloc::ZeroOnFree = vault_zeroalloc::ZeroOnFree;

/// The vault supervisor daemon: guards the LUKS volume and the compose stack on it.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The configuration file.
    #[arg(long, short = 'c', default_value = vault_config::DEFAULT_PATH)]
    config: PathBuf,
    /// Run every check the start runs on the configuration (the file, and what it names on this
    /// host), print every error and warning, and exit (0 valid, 1 invalid).
    #[arg(long)]
    check_config: bool,
    /// For packaging: print a man page, vaultd(8) or vaultd.toml(5), and exit.
    #[arg(long, hide = true, value_parser = ["vaultd.8", "vaultd.toml.5"])]
    generate_man: Option<String>,
    /// Run over a simulated volume, stack and battery instead of the host's: no root, nothing
    /// on the host is touched. The passphrase is $VAULTD_SIM_PASSPHRASE (default "correct
    /// horse battery staple"); the battery is read from <state_dir>/sim-battery
    /// ("battery 25", "ac 60").
    #[arg(long)]
    sim: bool,
}

/// Raise the soft limit on open files to the hard one (systemd's default soft limit is 1024).
/// The control socket's connection caps are then set far below it (`control::limits`), so the
/// power sources, Docker and the rest always find a descriptor.
fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the one struct they are given.
    let raised = unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0
        }
    };
    if !raised {
        tracing::warn!(
            error = %io::Error::last_os_error(),
            "cannot raise the open files limit; the control socket takes fewer connections"
        );
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(page) = &args.generate_man {
        use clap::CommandFactory;
        let mut out = std::io::stdout().lock();
        let written = if page == "vaultd.8" {
            clap_mangen::Man::new(Args::command())
                .section("8")
                .render(&mut out)
        } else {
            io::Write::write_all(&mut out, vault_config::man_page().as_bytes())
        };
        return match written {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("vaultd: cannot write: {e}");
                ExitCode::FAILURE
            }
        };
    }
    // Every check the start makes on the config, in one call: `--check-config` and the start
    // judge a file alike, and print every problem, not the first.
    let checked = vault_config::check(&args.config);
    let warnings = checked.warnings.clone();
    if args.check_config {
        return match checked.into_result() {
            Ok(_) => {
                print_warnings(&warnings);
                println!("{}: configuration is valid", args.config.display());
                ExitCode::SUCCESS
            }
            Err(errors) => {
                print_refusal(&errors, &warnings);
                ExitCode::FAILURE
            }
        };
    }
    vaultd::logging::init();
    raise_fd_limit();
    let config = match checked.into_result() {
        Ok(config) => config,
        Err(errors) => {
            print_refusal(&errors, &warnings);
            return ExitCode::from(2);
        }
    };
    for warning in &warnings {
        tracing::warn!("{warning}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("vaultd: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let ran = if args.sim {
        let passphrase = std::env::var_os("VAULTD_SIM_PASSPHRASE").map_or_else(
            || SimSettings::default().passphrase,
            std::os::unix::ffi::OsStringExt::into_vec,
        );
        let fake = FakeHost::new(SimSettings::from_config(&config, passphrase));
        tracing::warn!("simulation: nothing on this host is opened, mounted or started");
        let host = Arc::new(fake.clone());
        runtime.block_on(daemon::run(args.config, config, host, Sources::Sim(fake)))
    } else {
        let host = Arc::new(RealHost::from_config(&config));
        runtime.block_on(daemon::run(args.config, config, host, Sources::Real))
    };
    match ran {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // With its causes: "cannot catch SIGTERM: …".
            eprintln!("vaultd: {:#}", anyhow::Error::from(error));
            ExitCode::FAILURE
        }
    }
}

/// Warnings: what does not stop vaultd but leaves something not working.
fn print_warnings(warnings: &[vault_config::ConfigWarning]) {
    for warning in warnings {
        eprintln!("vaultd: warning: {warning}");
    }
}

/// Why the config is refused: every error, one per line (file:line: key …), after the warnings.
fn print_refusal(errors: &vault_config::ConfigErrors, warnings: &[vault_config::ConfigWarning]) {
    print_warnings(warnings);
    for error in errors {
        eprintln!("vaultd: {error}");
    }
}
