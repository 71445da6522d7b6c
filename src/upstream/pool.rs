//! Keep-alive HTTP/1.1 connections to one target, reused across requests.
//!
//! A connection is driven by whoever uses it — the request's own task while it
//! sends and while the response body streams — rather than by a task of its own:
//! that saves two task switches and a channel hand-off per request. An idle
//! connection sits in its target's pool undriven; taking it out drives it once to
//! learn whether the target closed it meanwhile.

use super::request_body::RequestBody;
use crate::tls::TargetStream;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{TrySendError, http1};
use hyper_util::rt::TokioIo;
use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::{Pin, pin};
use std::sync::Mutex;
use std::task::{Context, Waker};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Idle connections kept per target at most.
const MAX_IDLE: usize = 512;
/// An idle connection older than this is closed instead of reused: most servers
/// close theirs after 60–75 s, and reusing one they are closing loses a request.
const IDLE_TTL: Duration = Duration::from_secs(55);

/// Idle connections per target kept whatever their age (up to [`IDLE_TTL`]):
/// a quiet target keeps its warm connections.
const KEEP_IDLE: usize = 4;
/// Beyond [`KEEP_IDLE`], an idle connection unused this long is closed by
/// [`ConnPool::purge`]: a burst's extra connections do not linger with their
/// buffers (~30 KiB each in hyper), as HAProxy's `pool-purge-delay` closes
/// idle server connections beyond what traffic needs.
pub const PURGE_AFTER: Duration = Duration::from_secs(3);

/// What an idle connection holds (hyper's buffers and request channel), roughly.
const CONN_KIB: u64 = 30;

pub use crate::wire::response::TARGET_MAX_HEAD_BYTES;

pub type Driver = http1::Connection<TokioIo<TargetStream>, RequestBody>;

/// One HTTP/1.1 connection to a target: the handle requests go through and the
/// state machine that moves their bytes, polled by the current user.
pub struct TargetConn {
    sender: http1::SendRequest<RequestBody>,
    /// Boxed so that moving a connection in and out of the pool moves a pointer.
    driver: Pin<Box<Driver>>,
    ended: bool,
}

impl TargetConn {
    /// A connection made by [`super::connect`]: its request handle and driver.
    pub fn new(sender: http1::SendRequest<RequestBody>, driver: Driver) -> Self {
        TargetConn {
            sender,
            driver: Box::pin(driver),
            ended: false,
        }
    }

    /// Moves bytes on the connection; returns whether it has ended.
    pub fn poll_drive(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.ended && self.driver.as_mut().poll(cx).is_ready() {
            self.ended = true;
        }
        self.ended
    }

    /// Sends `req` and waits for the response head, driving the connection.
    /// An unsent request comes back in the error. The request is handed to
    /// the connection now; the future only holds that hand-off, not a copy of
    /// the request (it is moved with every request, so its size counts).
    pub fn send(
        &mut self,
        req: Request<RequestBody>,
    ) -> impl Future<Output = Result<Response<Incoming>, TrySendError<Request<RequestBody>>>> + '_
    {
        let response = self.sender.try_send_request(req);
        async move {
            let mut response = pin!(response);
            poll_fn(|cx| {
                let ended = self.poll_drive(cx);
                let polled = response.as_mut().poll(cx);
                if ended && polled.is_pending() {
                    // The driver is gone: the response can only be an error now.
                    cx.waker().wake_by_ref();
                }
                polled
            })
            .await
        }
    }

    /// Whether another request can go on this connection now.
    fn reusable(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        !self.poll_drive(&mut cx) && self.sender.is_ready()
    }
}

struct Idle<C> {
    conn: C,
    since: Instant,
}

/// What an idle plain connection of the HTTP/1 fast path holds (a socket and
/// its registration; no buffers), roughly.
const RAW_CONN_KIB: u64 = 1;

/// The idle connections of one target. Its state lives beside the target's
/// health, so pools survive reloads that keep the target. Each worker thread
/// has its own list (a connection is driven by the runtime it was opened on),
/// so the lock of a list is never contended.
pub struct ConnPool {
    idle: Box<[Mutex<VecDeque<Idle<TargetConn>>>]>,
    /// Plain sockets between requests of the HTTP/1 fast path ([`crate::listener::fast`]),
    /// which speaks HTTP/1.1 on them itself.
    raw: Box<[Mutex<VecDeque<Idle<TcpStream>>>]>,
}

impl Default for ConnPool {
    fn default() -> Self {
        ConnPool {
            idle: (0..crate::workers::slots())
                .map(|_| Mutex::default())
                .collect(),
            raw: (0..crate::workers::slots())
                .map(|_| Mutex::default())
                .collect(),
        }
    }
}

/// The current worker's list of `lists`.
fn mine<T>(lists: &[Mutex<T>]) -> std::sync::MutexGuard<'_, T> {
    let slot = crate::workers::slot().min(lists.len() - 1);
    lists[slot].lock().unwrap_or_else(|e| e.into_inner())
}

impl ConnPool {
    /// An idle connection ready for a request, most recently used first. Closed
    /// or expired connections are dropped; one not ready yet is kept for later.
    pub fn checkout(&self, now: Instant) -> Option<TargetConn> {
        let mut idle = mine(&self.idle);
        for _ in 0..idle.len() {
            let mut entry = idle.pop_back()?;
            if now.saturating_duration_since(entry.since) > IDLE_TTL || entry.conn.ended {
                continue;
            }
            if entry.conn.reusable() {
                return Some(entry.conn);
            }
            if !entry.conn.ended {
                idle.push_front(entry);
            }
        }
        None
    }

    /// Gives a connection back after its response was read to the end; `since`
    /// is when its last request was sent (a clock read saved per request).
    pub fn put(&self, conn: TargetConn, since: Instant) {
        if conn.ended {
            return;
        }
        let mut idle = mine(&self.idle);
        if idle.len() < MAX_IDLE {
            idle.push_back(Idle { conn, since });
        }
    }

    /// An idle plain socket for the fast path, most recently used first. One
    /// the target closed meanwhile has had a readiness event: a peek finds its
    /// end and drops it; one without costs no syscall.
    pub fn checkout_raw(&self, now: Instant) -> Option<TcpStream> {
        let mut idle = mine(&self.raw);
        while let Some(entry) = idle.pop_back() {
            if now.saturating_duration_since(entry.since) > IDLE_TTL {
                continue;
            }
            let mut byte = [0u8; 1];
            match entry.conn.try_read(&mut byte) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Some(entry.conn),
                // Closed, reset, or bytes nobody asked for: not reusable.
                _ => continue,
            }
        }
        None
    }

    /// Gives a plain socket back after a complete exchange; `since` is when
    /// its last request was sent.
    pub fn put_raw(&self, conn: TcpStream, since: Instant) {
        let mut idle = mine(&self.raw);
        if idle.len() < MAX_IDLE {
            idle.push_back(Idle { conn, since });
        }
    }

    /// Closes the idle connections that are expired, or beyond the
    /// [`KEEP_IDLE`] most recently used and unused for [`PURGE_AFTER`].
    /// Runs every second or so (see [`spawn_purger`]).
    pub fn purge(&self, now: Instant) {
        for idle in &self.idle {
            let closed = Self::purge_list(&mut idle.lock().unwrap_or_else(|e| e.into_inner()), now);
            crate::trim::freed(closed as u64 * CONN_KIB);
        }
        for idle in &self.raw {
            let closed = Self::purge_list(&mut idle.lock().unwrap_or_else(|e| e.into_inner()), now);
            crate::trim::freed(closed as u64 * RAW_CONN_KIB);
        }
    }

    /// Closes what [`ConnPool::purge`] closes of one list; returns how many.
    fn purge_list<C>(idle: &mut VecDeque<Idle<C>>, now: Instant) -> usize {
        let before = idle.len();
        // Least recently used first.
        while let Some(oldest) = idle.front() {
            let unused = now.saturating_duration_since(oldest.since);
            if unused > IDLE_TTL || (idle.len() > KEEP_IDLE && unused > PURGE_AFTER) {
                idle.pop_front();
            } else {
                break;
            }
        }
        before - idle.len()
    }

    /// Number of idle connections (for tests and status).
    pub fn idle_count(&self) -> usize {
        fn count<T>(lists: &[Mutex<VecDeque<T>>]) -> usize {
            lists
                .iter()
                .map(|l| l.lock().unwrap_or_else(|e| e.into_inner()).len())
                .sum()
        }
        count(&self.idle) + count(&self.raw)
    }

    /// Closes every idle connection (a target that is draining or removed).
    pub fn clear(&self) {
        for idle in &self.idle {
            idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
        for idle in &self.raw {
            idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
    }
}
