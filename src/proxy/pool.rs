//! Keep-alive HTTP/1.1 connections to one target, reused across requests.

use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// A connection to a target, ready to carry one request at a time.
pub type Sender = http1::SendRequest<Incoming>;

/// Idle connections kept per target at most.
const MAX_IDLE: usize = 512;
/// An idle connection older than this is closed instead of reused: most servers
/// close theirs after 60–75 s, and reusing one they are closing loses a request.
const IDLE_TTL: Duration = Duration::from_secs(55);

struct Idle {
    sender: Sender,
    since: Instant,
}

/// The idle connections of one target. Its state lives beside the target's
/// health, so pools survive reloads that keep the target.
#[derive(Default)]
pub struct ConnPool {
    idle: Mutex<VecDeque<Idle>>,
}

impl ConnPool {
    /// An idle connection that is ready for a request, most recently used first.
    /// Closed or expired connections are dropped; one still finishing its last
    /// exchange is kept for later.
    pub fn checkout(&self, now: Instant) -> Option<Sender> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        for _ in 0..idle.len() {
            let entry = idle.pop_back()?;
            if entry.sender.is_closed() || now.saturating_duration_since(entry.since) > IDLE_TTL {
                continue;
            }
            if entry.sender.is_ready() {
                return Some(entry.sender);
            }
            idle.push_front(entry);
        }
        None
    }

    /// Gives a connection back after its response was read to the end.
    pub fn put(&self, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push_back(Idle { sender, since: Instant::now() });
        }
    }

    /// Number of idle connections (for tests and status).
    pub fn idle_count(&self) -> usize {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Closes every idle connection (a target that is draining or removed).
    pub fn clear(&self) {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// Why no connection could be opened.
#[derive(Debug)]
pub enum ConnectError {
    /// Nothing answered within `connect_timeout`.
    Timeout,
    /// Refused, unreachable, reset during the handshake, …
    Io(io::Error),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Timeout => f.write_str("connect timed out"),
            ConnectError::Io(e) => write!(f, "{e}"),
        }
    }
}

/// Opens a new HTTP/1.1 connection to `addr` and starts its driver task.
pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Sender, ConnectError> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => return Err(ConnectError::Timeout),
        Ok(Err(e)) => return Err(ConnectError::Io(e)),
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    let (sender, conn) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ConnectError::Io(io::Error::other(e)))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(target_addr = %addr, "target connection ended: {e}");
        }
    });
    Ok(sender)
}
