//! Where `request_timeout` starts for a request with a body streamed to a
//! target: at the request's **last byte** handed to the target, not at its head.
//!
//! A client that uploads slowly (one byte a second is enough) must not make
//! the target look slow: that would let any client mark healthy targets
//! unhealthy (`Target.Timeout` passive failures). So while the body is in
//! flight there are two waits, and each has its own owner:
//! - waiting for the **client** to send more: the body's own stall limit
//!   (`idle_timeout`, answered 408) applies, and no target deadline runs;
//! - waiting for the **target** to take what it was given: a target that takes
//!   nothing for `request_timeout` is the target's failure (504).
//!
//! Once the last byte went out, the target has `request_timeout` to answer.

use atomic_waker::AtomicWaker;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;
use tokio::time::Instant;

/// Which side a request body waits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Waiting {
    /// The target has been handed bytes and has not asked for more yet.
    Target = 0,
    /// The body asked the client for more.
    Client = 1,
    /// The whole body went to the target.
    Done = 2,
}

/// Shared between a request body (which reports) and the wait for the
/// target's response head (which reads), possibly on different tasks.
#[derive(Debug)]
pub struct SendProgress {
    base: Instant,
    waiting: AtomicU8,
    /// Nanoseconds from `base` to the last change of `waiting`.
    since: AtomicU64,
    waker: AtomicWaker,
}

impl Default for SendProgress {
    fn default() -> Self {
        SendProgress {
            base: Instant::now(),
            waiting: AtomicU8::new(Waiting::Target as u8),
            since: AtomicU64::new(0),
            waker: AtomicWaker::new(),
        }
    }
}

impl SendProgress {
    /// The body now waits on `side` (from now).
    pub fn set(&self, side: Waiting) {
        if side == Waiting::Client && self.waiting() == Waiting::Client {
            return;
        }
        let since = self.base.elapsed().as_nanos() as u64;
        self.since.store(since, Ordering::Release);
        self.waiting.store(side as u8, Ordering::Release);
        self.waker.wake();
    }

    fn waiting(&self) -> Waiting {
        match self.waiting.load(Ordering::Acquire) {
            0 => Waiting::Target,
            1 => Waiting::Client,
            _ => Waiting::Done,
        }
    }

    /// When the target's time runs out (`None`: the client's turn, no target deadline).
    pub fn deadline(&self, request_timeout: Duration) -> Option<Instant> {
        match self.waiting() {
            Waiting::Client => None,
            Waiting::Target | Waiting::Done => {
                let since = Duration::from_nanos(self.since.load(Ordering::Acquire));
                Some(self.base + since + request_timeout)
            }
        }
    }
}

impl SendProgress {
    /// Time since the body's last byte went to the target (or since its last
    /// change, if it has not ended): the target's response time.
    pub fn since_last_change(&self) -> Duration {
        let since = Duration::from_nanos(self.since.load(Ordering::Acquire));
        self.base.elapsed().saturating_sub(since)
    }
}

/// The target did not answer within `request_timeout` of its turn.
#[derive(Debug)]
pub struct TargetTimeout;

/// Waits for `exchange` (a target's response head): `request_timeout` from
/// now for a request without a streamed body (`progress` `None`), else as
/// the module doc says.
pub async fn within_request_timeout<F: Future>(
    exchange: F,
    request_timeout: Duration,
    progress: Option<&SendProgress>,
) -> Result<F::Output, TargetTimeout> {
    let Some(progress) = progress else {
        return tokio::time::timeout(request_timeout, exchange)
            .await
            .map_err(|_| TargetTimeout);
    };
    let mut exchange = pin!(exchange);
    let mut sleep = pin!(tokio::time::sleep(request_timeout));
    poll_fn(|cx| {
        if let Poll::Ready(out) = exchange.as_mut().poll(cx) {
            return Poll::Ready(Ok(out));
        }
        progress.waker.register(cx.waker());
        let Some(deadline) = progress.deadline(request_timeout) else {
            return Poll::Pending;
        };
        if sleep.deadline() != deadline {
            sleep.as_mut().reset(deadline);
        }
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(TargetTimeout)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_slow_client_never_runs_the_target_clock() {
        let progress = SendProgress::default();
        progress.set(Waiting::Client);
        let never = std::future::pending::<()>();
        let waited = tokio::time::timeout(
            Duration::from_secs(600),
            within_request_timeout(never, Duration::from_secs(5), Some(&progress)),
        )
        .await;
        assert!(waited.is_err(), "no target deadline while the client sends");
    }

    #[tokio::test(start_paused = true)]
    async fn the_clock_starts_at_the_last_byte() {
        let progress = std::sync::Arc::new(SendProgress::default());
        progress.set(Waiting::Client);
        let p = progress.clone();
        let start = tokio::time::Instant::now();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(100)).await;
            p.set(Waiting::Done);
        });
        let never = std::future::pending::<()>();
        let got = within_request_timeout(never, Duration::from_secs(5), Some(&progress)).await;
        assert!(got.is_err());
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_secs(105) && waited < Duration::from_secs(106),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_target_that_takes_nothing_times_out() {
        let progress = SendProgress::default();
        let never = std::future::pending::<()>();
        let start = tokio::time::Instant::now();
        let got = within_request_timeout(never, Duration::from_secs(5), Some(&progress)).await;
        assert!(got.is_err());
        assert!(start.elapsed() < Duration::from_secs(6));
    }
}
