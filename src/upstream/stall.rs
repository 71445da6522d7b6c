//! A deadline for a stream that stops moving: a client that stops sending its
//! body or reading its response, a target that stops sending its body. Each
//! costs a connection (and on the proxied path, a target connection too), so
//! none may last forever: after the listener's `idle_timeout` without progress
//! the stream fails, as ALB's idle timeout applies to both sides.
//!
//! The timer is allocated only when the stream first has to wait; streams that
//! never wait (most small bodies) cost nothing.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// See the module doc.
#[derive(Debug)]
pub struct StallTimer {
    timeout: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    progressed: bool,
}

impl StallTimer {
    /// A timer that fires after `timeout` without progress (`Duration::MAX`: never).
    pub fn new(timeout: Duration) -> Self {
        StallTimer {
            timeout,
            sleep: None,
            progressed: false,
        }
    }

    /// The stream moved: the next wait starts a fresh `timeout`.
    #[inline]
    pub fn progress(&mut self) {
        self.progressed = true;
    }

    /// To call when the stream is not ready: `Ready` once it has been stuck
    /// for the whole timeout.
    pub fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(deadline) = Instant::now().checked_add(self.timeout) else {
            return Poll::Pending;
        };
        match &mut self.sleep {
            None => self.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
            Some(timer) if self.progressed => timer.as_mut().reset(deadline),
            Some(_) => {}
        }
        self.progressed = false;
        self.sleep
            .as_mut()
            .map_or(Poll::Pending, |t| t.as_mut().poll(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;

    #[tokio::test(start_paused = true)]
    async fn fires_only_after_a_whole_timeout_without_progress() {
        let mut t = StallTimer::new(Duration::from_secs(10));
        let waker = futures_task_noop();
        let mut cx = Context::from_waker(&waker);
        assert!(t.poll_expired(&mut cx).is_pending());
        tokio::time::advance(Duration::from_secs(6)).await;
        t.progress();
        assert!(t.poll_expired(&mut cx).is_pending());
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(t.poll_expired(&mut cx).is_pending());
        // 10 s after the last progress.
        poll_fn(|cx| t.poll_expired(cx)).await;
        let mut never = StallTimer::new(Duration::MAX);
        assert!(never.poll_expired(&mut cx).is_pending());
    }

    fn futures_task_noop() -> std::task::Waker {
        std::task::Waker::noop().clone()
    }
}
