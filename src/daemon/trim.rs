//! Gives memory back to the system after bursts of connections.
//!
//! Parking an idle connection frees hyper's buffers, but glibc keeps freed
//! memory in its arenas: resident memory would stay at the burst's peak.
//! When many connections were parked since the last look, `malloc_trim`
//! returns the free pages (off the runtime's threads: it walks the heap).

use std::time::Duration;

/// How often the trimmer looks.
const EVERY: Duration = Duration::from_secs(5);
/// Parked connections since the last trim that make a trim worth it.
const WORTH_IT: u64 = 256;

/// Starts the trimmer on the current runtime.
pub fn spawn() {
    tokio::spawn(async {
        let mut last = crate::listener::parked_total();
        loop {
            tokio::time::sleep(EVERY).await;
            let now = crate::listener::parked_total();
            if now - last >= WORTH_IT {
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
