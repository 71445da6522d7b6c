//! L4 forwarding: a client connection (plain, or decrypted TLS) joined to a
//! connection to a target of a tcp group.

use crate::admin::metrics::ListenerMetrics;
use crate::health::{Outcome, Reason};
use crate::listener::ClientConn;
use crate::proxy::proxy_protocol::encode_v2;
use crate::proxy::record::StreamRecord;
use crate::runtime::listener::ListenerRuntime;
use crate::runtime::target::{GroupRuntime, process_ms};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// Targets tried for one connection at most (each refusal tries the next).
const MAX_ATTEMPTS: usize = 3;

/// Forwards one client connection until either side is done, the connection
/// idles out, or a target cannot be reached (then the client is closed).
pub async fn serve<S>(
    client: S,
    conn: &ClientConn,
    local: SocketAddr,
    listener: Arc<ListenerRuntime>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let peer = conn.peer;
    let mut record = listener
        .access_log
        .as_ref()
        .map(|log| StreamRecord::new(log, &listener.name, peer, conn.tls.get()));
    let (received, sent) = forward_stream(client, peer, local, &listener, record.as_mut()).await;
    if let Some(r) = record {
        r.finish(received, sent);
    }
}

/// Joins `client` to a target; returns the bytes moved (from, to the client).
async fn forward_stream<S>(
    client: S,
    peer: SocketAddr,
    local: SocketAddr,
    listener: &ListenerRuntime,
    mut record: Option<&mut StreamRecord>,
) -> (u64, u64)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Some(group) = listener.tcp_group() else {
        return (0, 0);
    };
    let Some((index, mut target)) = connect_target(&group).await else {
        if let Some(r) = record.as_mut() {
            r.error("no_target_reachable");
        }
        tracing::warn!(listener = %listener.name, target_group = %group.name, peer = %peer, "no target could be reached; closing the client connection");
        return (0, 0);
    };
    if let Some(r) = record.as_mut() {
        r.target(&group.name, group.targets[index].addr);
    }
    let _outstanding = group.targets[index].start_request();
    if listener.proxy_protocol && target.write_all(&encode_v2(peer, local)).await.is_err() {
        return (0, 0);
    }
    let activity = Arc::new(AtomicU64::new(process_ms()));
    let mut client = Counted::new(
        client,
        activity.clone(),
        listener.metrics.clone(),
        Direction::ClientSide,
    );
    let mut target = Counted::new(
        target,
        activity.clone(),
        listener.metrics.clone(),
        Direction::TargetSide,
    );
    // A tls listener's client side ends with a close_notify: always shut down.
    let plain = listener.tls.is_none();
    let copy = crate::proxy::copy::bidirectional(&mut client, &mut target, plain);
    tokio::pin!(copy);
    let idle = listener.idle_timeout;
    let mut wait = idle;
    // A removed target keeps its connections until its deregistration delay ends.
    let gone = group.targets[index].shared.gone.notified();
    tokio::pin!(gone);
    loop {
        tokio::select! {
            _ = &mut gone => {
                tracing::debug!(listener = %listener.name, peer = %peer, "target drained: connection closed");
                if let Some(r) = record.as_mut() {
                    r.error("target_deregistered");
                }
                return (0, 0);
            }
            result = &mut copy => {
                return match result {
                    Ok(moved) => moved,
                    Err(e) => {
                        tracing::debug!(listener = %listener.name, peer = %peer, "tcp connection ended: {e}");
                        if let Some(r) = record.as_mut() {
                            r.error("connection_reset");
                        }
                        (0, 0)
                    }
                };
            }
            _ = tokio::time::sleep(wait) => {
                let quiet = Duration::from_millis(process_ms().saturating_sub(activity.load(Ordering::Relaxed)));
                if quiet >= idle {
                    tracing::debug!(listener = %listener.name, peer = %peer, "tcp connection idle for {idle:?}: closed");
                    if let Some(r) = record.as_mut() {
                        r.error("idle_timeout");
                    }
                    return (0, 0);
                }
                wait = idle - quiet;
            }
        }
    }
}

/// Connects to a target of `group`; a refused or timed-out connect counts
/// against that target and the next one is tried.
async fn connect_target(group: &GroupRuntime) -> Option<(usize, TcpStream)> {
    let mut exclude = None;
    for _ in 0..MAX_ATTEMPTS.min(group.targets.len().max(1)) {
        let index = group.pick(exclude)?;
        let target = &group.targets[index];
        match tokio::time::timeout(group.connect_timeout, TcpStream::connect(target.addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Some((index, stream));
            }
            Ok(Err(e)) => {
                tracing::warn!(target_group = %group.name, target = %target.address, "connect failed: {e}");
                group.metrics.connection_errors.inc();
                group.record(index, Outcome::Failure(Reason::FailedHealthChecks));
            }
            Err(_) => {
                tracing::warn!(target_group = %group.name, target = %target.address, "connect timed out");
                group.metrics.connection_errors.inc();
                group.record(index, Outcome::Failure(Reason::Timeout));
            }
        }
        exclude = Some(index);
    }
    None
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Reads are bytes in from the client.
    ClientSide,
    /// Reads are bytes out to the client.
    TargetSide,
}

/// A stream that notes activity (for the idle timeout) and counts processed
/// bytes as they are read.
struct Counted<S> {
    inner: S,
    activity: Arc<AtomicU64>,
    metrics: ListenerMetrics,
    direction: Direction,
}

impl<S> Counted<S> {
    fn new(
        inner: S,
        activity: Arc<AtomicU64>,
        metrics: ListenerMetrics,
        direction: Direction,
    ) -> Self {
        Counted {
            inner,
            activity,
            metrics,
            direction,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        let n = (buf.filled().len() - before) as u64;
        if n > 0 {
            self.activity.store(process_ms(), Ordering::Relaxed);
            match self.direction {
                Direction::ClientSide => self.metrics.bytes_in.inc_by(n),
                Direction::TargetSide => self.metrics.bytes_out.inc_by(n),
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
