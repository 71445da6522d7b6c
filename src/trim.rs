//! Gives memory back to the system after bursts of connections.
//!
//! Parking an idle connection frees hyper's buffers, and purging the idle
//! target connections of a burst frees theirs, but glibc keeps freed memory in
//! its arenas: resident memory would stay at the burst's peak. Whoever frees a
//! lot tells [`freed`]; when enough was freed since the last look,
//! `malloc_trim` returns the free pages (off the runtime's threads: it walks
//! the heap).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How often the trimmer looks.
const EVERY: Duration = Duration::from_secs(2);
/// Memory freed since the last trim that makes a trim worth it.
const WORTH_IT_KIB: u64 = 1024;
/// Once frees have stopped for a look, what is enough for one last trim: the
/// stragglers of a burst (a few connections parked late, target connections
/// purged after it) free little themselves but keep pages of the burst
/// from being returned while they live.
const SETTLED_KIB: u64 = 64;

/// KiB freed (estimated) since the process started.
static FREED_KIB: AtomicU64 = AtomicU64::new(0);

/// Notes that about `kib` KiB of heap were just freed.
pub fn freed(kib: u64) {
    FREED_KIB.fetch_add(kib, Ordering::Relaxed);
}

/// Starts the trimmer on the current runtime.
pub fn spawn() {
    tokio::spawn(async {
        // What was freed before the trimmer started (the start's own
        // configuration parse, say) counts too.
        let mut last = 0;
        let mut seen = last;
        loop {
            tokio::time::sleep(EVERY).await;
            let now = FREED_KIB.load(Ordering::Relaxed);
            let settled = now == seen;
            seen = now;
            if now - last >= WORTH_IT_KIB || (settled && now - last >= SETTLED_KIB) {
                last = now;
                let _ = tokio::task::spawn_blocking(trim).await;
            }
        }
    });
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim only releases free memory of the allocator's own arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
