//! `vaultd`: the binary edge. Parses arguments and config, sets up logging, builds the async
//! runtime and the real host, and runs the daemon (`vaultd::daemon`) until a SIGTERM drain
//! ends.

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use vaultd::host::RealHost;

/// Every freed allocation is zeroed first: buffers the passphrase passed through on its way in
/// (the HTTP/2 frame, the protobuf decode) hold no copy of it once they are freed.
struct ZeroOnFree;

// SAFETY: delegates to the system allocator; `dealloc` only writes within the block it frees.
unsafe impl std::alloc::GlobalAlloc for ZeroOnFree {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed through unchanged.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: `ptr` is a live block of `layout.size()` bytes owned by the caller, which
        // is handing it back; it is zeroed, then freed. black_box keeps the zeroing from being
        // optimised away as a store to memory about to be freed.
        unsafe {
            std::ptr::write_bytes(ptr, 0, layout.size());
            std::hint::black_box(ptr);
            std::alloc::System.dealloc(ptr, layout);
        }
    }
}

#[global_allocator]
static ALLOCATOR: ZeroOnFree = ZeroOnFree;

/// The vault supervisor daemon: guards the LUKS volume and the compose stack on it.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The configuration file.
    #[arg(long, short = 'c', default_value = vault_config::DEFAULT_PATH)]
    config: PathBuf,
    /// Validate the configuration, print the result and exit (0 valid, 1 invalid).
    #[arg(long)]
    check_config: bool,
    /// For packaging: print a man page, vaultd(8) or vaultd.toml(5), and exit.
    #[arg(long, hide = true, value_parser = ["vaultd.8", "vaultd.toml.5"])]
    generate_man: Option<String>,
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
    if args.check_config {
        return match vault_config::load(&args.config) {
            Ok(_) => {
                println!("{}: configuration is valid", args.config.display());
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("vaultd: {error}");
                ExitCode::FAILURE
            }
        };
    }
    vaultd::logging::init();
    raise_fd_limit();
    let config = match vault_config::load(&args.config) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("vaultd: {error}");
            return ExitCode::from(2);
        }
    };
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
    let host = Arc::new(RealHost::from_config(&config));
    match runtime.block_on(vaultd::daemon::run(args.config, config, host)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // With its causes: "cannot catch SIGTERM: …".
            eprintln!("vaultd: {:#}", anyhow::Error::from(error));
            ExitCode::FAILURE
        }
    }
}
