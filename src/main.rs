//! `gateway`: parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser;
use gateway::cli::{Cli, Command};
use gateway::data_dir::DataDir;
use gateway::pipeline::GatewayError;
use gateway::store::StoreError;
use std::os::unix::net::UnixStream;

// Rows are allocated by the judging threads and freed by the one applying them; glibc's malloc
// handles that slowly, and sled allocates on every write (bench_ingest: validate +30%, sled writes
// about twice as fast).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    no_huge_pages();
    let cli = Cli::parse();
    // The server logs what it does; a one-shot command prints its answer and logs only trouble.
    let default_level = if matches!(cli.command, Command::Serve { .. }) { "info" } else { "warn" };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default_level.into()))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    if !matches!(cli.command, Command::Serve { .. }) {
        // stderr is not held locked: threads of the command log there too.
        let (stdout, stdin) = (std::io::stdout(), std::io::stdin());
        let io = &mut gateway::cli::Io { out: &mut stdout.lock(), err: &mut std::io::stderr(), input: &mut stdin.lock() };
        return ExitCode::from(gateway::cli::run(cli, io));
    }
    let Command::Serve { ref listen, demo } = cli.command else { unreachable!() };
    serve(&cli, listen.clone(), demo).unwrap_or_else(|e| {
        eprintln!("gateway: {e:#}");
        ExitCode::from(2)
    })
}

fn serve(cli: &Cli, listen: Option<String>, demo: bool) -> anyhow::Result<ExitCode> {
    raise_open_file_limit();
    let config = gateway::config::Config::load(cli.config.as_deref())?;
    // As given: made absolute, a short relative data folder in a deep one would put the control
    // socket past the ~100 bytes a Unix socket's path may have.
    let data = cli.data.clone().unwrap_or_else(|| config.data_dir.clone());
    let gw = match gateway::pipeline::Gateway::open(config, &data) {
        Err(GatewayError::Store(StoreError::InUse { .. })) if UnixStream::connect(DataDir::new(&data).control_socket()).is_ok() => {
            anyhow::bail!("a gateway server is already running on the data folder {}: stop it first (commands run now are sent to it)", data.display())
        }
        opened => opened?,
    };
    let demo = if demo { Some(gateway::serve::prepare_demo(&gw)?) } else { None };
    if let Some(d) = &demo {
        println!("{d}");
    }
    let runtime = tokio::runtime::Runtime::new()?;
    let options = gateway::serve::Options { listen, demo: demo.map(|d| d.user) };
    // Tests and the soak example wait for these lines on stdout.
    let announce = |a: gateway::serve::Announcement| println!("{a}");
    runtime.block_on(gateway::serve::run(std::sync::Arc::new(gw), options, shutdown_signal(), announce))?;
    Ok(ExitCode::SUCCESS)
}

/// Transparent huge pages off for this process, on hosts where they are on for every program
/// (`always`) as well as where a program asks (`madvise`, which the `no_thp` build of mimalloc no
/// longer does): each fresh 2 MB page is zeroed whole, and a burst of uploads spent a third of its
/// CPU doing that (docs/performance.md, "Huge pages").
fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// Every SFTP connection holds a descriptor; the usual soft limit of 1,024 is far below what the
/// system allows (issue 9). Raised to the hard limit; failing that, the server runs with what it has.
fn raise_open_file_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `lim` is a valid rlimit for both calls.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
                tracing::warn!(error = %std::io::Error::last_os_error(), "could not raise the open-file limit");
            }
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
