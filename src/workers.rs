//! Thread per core: the worker threads that serve client connections, each
//! with a single-threaded runtime of its own.
//!
//! Each listener binds one socket per worker (SO_REUSEPORT: the kernel spreads
//! new connections over them) and each worker accepts on its own, serves the
//! connections it accepted and keeps its own target connection pools. A new
//! connection may move once, before its first byte is read, to a worker with
//! fewer connections (see `listener::spread`); after that nothing moves
//! between threads on the request path: no work stealing, no wake-ups across
//! cores, no contended locks — the model of HAProxy's and nginx's workers. (tokio's work-stealing runtime with two workers on two busy cores
//! gave 0.76× HAProxy's requests/s and 2.8× its p99; see docs/performance.md.)
//! The configuration, the admin API and the health checks run on the main
//! thread's runtime.

use std::cell::Cell;
use std::future::Future;
use std::sync::OnceLock;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

static WORKERS: OnceLock<Vec<Handle>> = OnceLock::new();

thread_local! {
    /// This thread's worker index (`usize::MAX` off the workers).
    static INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// Starts `count` worker threads (at most once per process; later calls and
/// a count below 2 start nothing: everything then runs on the caller's runtime).
pub fn start(count: usize) -> std::io::Result<()> {
    if count < 2 || WORKERS.get().is_some() {
        return Ok(());
    }
    let mut handles = Vec::with_capacity(count);
    for i in 0..count {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        handles.push(runtime.handle().clone());
        std::thread::Builder::new()
            .name(format!("edgelb-w{i}"))
            .spawn(move || {
                INDEX.with(|c| c.set(i));
                // Serves whatever is spawned on it until the process exits.
                runtime.block_on(std::future::pending::<()>());
            })?;
    }
    let _ = WORKERS.set(handles);
    Ok(())
}

/// How many workers serve connections (0: the caller's runtime does).
pub fn count() -> usize {
    WORKERS.get().map_or(0, Vec::len)
}

/// Sockets each listener binds: one per worker, or one.
pub fn sockets_per_listener() -> usize {
    count().max(1)
}

/// The current thread's slot in per-worker state of [`slots`] entries: its
/// worker index, or the last slot for any other thread.
pub fn slot() -> usize {
    let index = INDEX.with(Cell::get);
    index.min(count())
}

/// Entries of per-worker state: one per worker and one for other threads.
pub fn slots() -> usize {
    count() + 1
}

/// Runs `future` on worker `i` (on the current runtime without workers).
pub fn spawn_on<F>(i: usize, future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match WORKERS.get() {
        Some(handles) if !handles.is_empty() => handles[i % handles.len()].spawn(future),
        _ => tokio::spawn(future),
    }
}
