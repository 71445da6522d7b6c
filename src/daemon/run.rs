//! `edgelb run`: start, then serve until SIGTERM/SIGINT, reloading on SIGHUP.

use super::{notify, watch};
use crate::admin::{self, AdminApi};
use crate::config::{self, Loaded};
use crate::control::{Server, StartError};
use crate::telemetry::metrics::Metrics;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Notify;

/// Exit code: clean shutdown.
pub const EXIT_OK: u8 = 0;
/// Exit code: the configuration is invalid.
pub const EXIT_CONFIG: u8 = 1;
/// Exit code: a runtime failure such as a port that cannot be bound.
pub const EXIT_RUNTIME: u8 = 2;

/// Sets up logging to stderr (`RUST_LOG` overrides the default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

/// Loads the configuration at `path` and runs the daemon on it.
/// With `upgrade`, this process replaces a running edgelb on the same
/// addresses (see [`AdminBind`]).
pub fn run(path: &Path, upgrade: bool) -> u8 {
    init_logging();
    let loaded = match config::load(path) {
        Ok(l) => l,
        Err(e) => {
            for line in &e.lines {
                eprintln!("{line}");
            }
            return EXIT_CONFIG;
        }
    };
    let runtime = match tokio_runtime(loaded.config.global.worker_threads) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return EXIT_RUNTIME;
        }
    };
    let budget = crate::listener::budget::budget();
    tracing::info!(
        max_client_connections = budget.max(),
        "client connections capped by the descriptor limit"
    );
    let admin = if upgrade {
        AdminBind::WhenFree
    } else {
        AdminBind::Now
    };
    runtime.block_on(serve(path, loaded, admin, None))
}

/// The main thread's runtime, and `threads` worker threads for client
/// connections (0 = one per CPU; with 1, the main runtime serves them too).
/// See [`crate::workers`].
pub fn tokio_runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let threads = match threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    crate::workers::start(threads)?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("edgelb")
        .build()
}

/// How the admin address is taken. It is bound without SO_REUSEPORT: two
/// processes sharing it would answer `/status`, `/reload` and `/metrics` in
/// turn, so a second `edgelb run` with the same `admin.bind` exits 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminBind {
    /// At start; taken already → exit 2.
    Now,
    /// `run --upgrade`: a binary upgrade, where the old process still holds
    /// the admin address while both serve the listeners (SO_REUSEPORT). The
    /// listeners serve at once; the admin address is taken as soon as the old
    /// process lets it go (checked every 100 ms, for up to [`UPGRADE_ADMIN_WAIT`]).
    WhenFree,
}

/// How long `run --upgrade` waits for the old process to free the admin address.
pub const UPGRADE_ADMIN_WAIT: Duration = Duration::from_secs(600);

/// Binds the admin address for this process alone (no SO_REUSEPORT).
fn bind_admin(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::from_std(crate::listener::accept::bind_socket(addr, false)?)
}

/// Runs until SIGTERM/SIGINT; `on_ready` is told once everything is bound.
pub async fn serve(
    path: &Path,
    loaded: Loaded,
    admin_bind_mode: AdminBind,
    on_ready: Option<Box<dyn FnOnce() + Send>>,
) -> u8 {
    let (Ok(mut hup), Ok(mut term), Ok(mut int), Ok(mut usr1)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::user_defined1()),
    ) else {
        eprintln!("cannot install signal handlers");
        return EXIT_RUNTIME;
    };
    let token = match &loaded.config.admin.token_file {
        None => None,
        Some(p) => match std::fs::read_to_string(p) {
            Ok(t) if !t.trim().is_empty() => {
                warn_if_readable_by_others(p);
                Some(t.trim().to_owned())
            }
            Ok(_) => {
                eprintln!("{}: the admin token file is empty", p.display());
                return EXIT_CONFIG;
            }
            Err(e) => {
                eprintln!("{}: cannot read the admin token: {e}", p.display());
                return EXIT_CONFIG;
            }
        },
    };
    let admin_bind = loaded.config.admin.bind;
    let watch_config = loaded.config.global.watch_config;
    let admin_socket = match bind_admin(admin_bind) {
        Ok(s) => Some(s),
        Err(e)
            if e.kind() == std::io::ErrorKind::AddrInUse
                && admin_bind_mode == AdminBind::WhenFree =>
        {
            tracing::info!(admin = %admin_bind, "admin address held by the process being replaced: taken when it frees");
            None
        }
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            eprintln!(
                "admin API: cannot bind {admin_bind}: {e} (another edgelb? for a binary upgrade, start the new one with `run --upgrade`)"
            );
            return EXIT_RUNTIME;
        }
        Err(e) => {
            eprintln!("admin API: cannot bind {admin_bind}: {e}");
            return EXIT_RUNTIME;
        }
    };
    // Watching starts before the listeners and the admin API do, so that no
    // change made once edgelb answers is missed (a change made during the
    // start reloads once more). The watcher lives as long as the loop.
    let (_watcher, mut changes) = match watch_config.then(|| watch::watch(path)).transpose() {
        Ok(Some((w, rx))) => (Some(w), Some(rx)),
        Ok(None) => (None, None),
        Err(e) => {
            tracing::error!("watch_config: cannot watch {}: {e}", path.display());
            (None, None)
        }
    };
    let metrics = Arc::new(Metrics::new());
    let server = match Server::start(path, loaded, metrics).await {
        Ok(s) => s,
        Err(StartError::Config(e)) => {
            for line in &e.lines {
                eprintln!("{line}");
            }
            return EXIT_CONFIG;
        }
        Err(StartError::Runtime(e)) => {
            eprintln!("{e}");
            return EXIT_RUNTIME;
        }
    };
    let stop_admin = Arc::new(Notify::new());
    let api = Arc::new(AdminApi {
        server: server.clone(),
        token,
    });
    match admin_socket {
        Some(socket) => {
            tokio::spawn(admin::serve(socket, api, stop_admin.clone()));
        }
        None => {
            let stop = stop_admin.clone();
            tokio::spawn(async move {
                let tries = UPGRADE_ADMIN_WAIT.as_millis() / 100;
                for _ in 0..tries {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if let Ok(socket) = bind_admin(admin_bind) {
                        tracing::info!(admin = %admin_bind, "admin API taken over");
                        admin::serve(socket, api, stop).await;
                        return;
                    }
                }
                tracing::error!(admin = %admin_bind, "the admin address never came free: no admin API");
            });
        }
    }
    tracing::info!(admin = %admin_bind, generation = 1, "edgelb {} serving", env!("CARGO_PKG_VERSION"));
    notify::ready("serving");
    notify::start_watchdog();
    crate::trim::spawn();
    crate::proxy::pool::spawn_purger(server.live.clone());
    if let Some(f) = on_ready {
        f();
    }
    loop {
        let reload = tokio::select! {
            _ = hup.recv() => true,
            Some(()) = next_change(changes.as_mut()) => {
                tracing::info!("{} changed: reloading", path.display());
                true
            }
            _ = usr1.recv() => {
                // logrotate moved the access log: open it again.
                if let Some(log) = &server.access_log {
                    log.reopen();
                }
                continue;
            }
            _ = term.recv() => false,
            _ = int.recv() => false,
        };
        if !reload {
            break;
        }
        notify::reloading();
        let status = match server.reload().await {
            Ok(g) => format!("serving generation {g}"),
            Err(_) => "serving; last reload failed".to_owned(),
        };
        notify::ready(&status);
    }
    tracing::info!("shutting down: closing listeners, draining in-flight requests");
    notify::stopping();
    let drained = server.shutdown().await;
    if !drained {
        tracing::warn!("drain_timeout passed with requests still in flight; exiting");
    }
    stop_admin.notify_one();
    EXIT_OK
}

/// The next settled change of the configuration file; never without a watcher.
async fn next_change(changes: Option<&mut tokio::sync::mpsc::Receiver<()>>) -> Option<()> {
    match changes {
        Some(rx) => watch::next_change(rx).await,
        None => std::future::pending().await,
    }
}

/// The admin token must not be readable by other users (chmod 600 or 640).
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o004 != 0
    {
        tracing::warn!(
            "{} is readable by every user: chmod o-r it (the admin token guards every change)",
            path.display()
        );
    }
}
