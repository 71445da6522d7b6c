//! How many client connections the process's file descriptors allow.
//!
//! Every proxied request needs a second descriptor for its target connection,
//! and the admin API, health checks, config and certificate reads need a few
//! more. Like HAProxy's `maxconn` computed from `ulimit -n`, edgelb keeps a
//! quarter of the descriptors (at least 64) out of reach of client
//! connections: when the rest are in use, listeners stop accepting (the kernel
//! queues new connections) until one closes, instead of taking descriptors the
//! targets and the admin API need, or spinning on `EMFILE`.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tokio::sync::Notify;

/// Descriptors never given to client connections, at the least.
const MIN_RESERVE: usize = 64;

/// The process-wide count of client connections against their cap.
#[derive(Debug)]
pub struct ConnectionBudget {
    max: usize,
    open: AtomicUsize,
    freed: Notify,
    warned: AtomicBool,
}

/// One client connection's share of the budget, given back on drop.
#[derive(Debug)]
pub struct BudgetGuard(&'static ConnectionBudget);

static BUDGET: OnceLock<ConnectionBudget> = OnceLock::new();

/// The process's budget, made on first use from `RLIMIT_NOFILE` (whose soft
/// limit is first raised to the hard one, as a daemon serving many
/// connections wants).
pub fn budget() -> &'static ConnectionBudget {
    BUDGET.get_or_init(|| ConnectionBudget::with_descriptors(raise_nofile()))
}

/// Raises the soft descriptor limit to the hard one; returns the limit in force.
/// (Also for tests that open thousands of connections themselves.)
pub fn raise_nofile() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX)
}

impl ConnectionBudget {
    /// The budget of a process that may open `descriptors` files.
    pub fn with_descriptors(descriptors: usize) -> Self {
        let reserve = (descriptors / 4).max(MIN_RESERVE);
        ConnectionBudget {
            max: descriptors.saturating_sub(reserve).max(1),
            open: AtomicUsize::new(0),
            freed: Notify::new(),
            warned: AtomicBool::new(false),
        }
    }

    /// Client connections allowed at once.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Client connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Takes a share for one more connection, if there is one.
    pub fn try_take(&'static self) -> Option<BudgetGuard> {
        let mut open = self.open.load(Ordering::Relaxed);
        loop {
            if open >= self.max {
                if !self.warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        max = self.max,
                        "client connections reached the descriptor budget; accepting paused until one closes (raise LimitNOFILE)"
                    );
                }
                return None;
            }
            match self.open.compare_exchange_weak(
                open,
                open + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(BudgetGuard(self)),
                Err(now) => open = now,
            }
        }
    }

    /// Waits for a share, checking again whenever a connection closes.
    pub async fn take(&'static self) -> BudgetGuard {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(guard) = self.try_take() {
                return guard;
            }
            freed.await;
        }
    }
}

impl Drop for BudgetGuard {
    fn drop(&mut self) {
        let was = self.0.open.fetch_sub(1, Ordering::Relaxed);
        if was >= self.0.max {
            // Someone may be waiting for this share.
            self.0.warned.store(false, Ordering::Relaxed);
            self.0.freed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quarter_is_kept_back() {
        assert_eq!(ConnectionBudget::with_descriptors(1_048_576).max(), 786_432);
        assert_eq!(ConnectionBudget::with_descriptors(1024).max(), 768);
        assert_eq!(ConnectionBudget::with_descriptors(100).max(), 36);
        assert_eq!(ConnectionBudget::with_descriptors(10).max(), 1);
    }

    #[tokio::test]
    async fn a_waiter_gets_the_share_given_back() {
        let b: &'static ConnectionBudget =
            Box::leak(Box::new(ConnectionBudget::with_descriptors(66)));
        assert_eq!(b.max(), 2);
        let first = b.try_take().unwrap();
        let _second = b.try_take().unwrap();
        assert!(b.try_take().is_none());
        let waiter = tokio::spawn(b.take());
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(first);
        let third = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("the waiter was not woken")
            .unwrap();
        assert_eq!(b.open(), 2);
        drop(third);
        assert_eq!(b.open(), 1);
    }
}
