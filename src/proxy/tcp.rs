//! L4 forwarding: a client connection (plain, or decrypted TLS) joined to a
//! connection to a target of a tcp group.

use crate::proxy::attempt::Next;
use crate::proxy::client::ClientConn;
use crate::proxy::copy::EndWithData;
use crate::proxy::pool::ConnectError;
use crate::proxy::proxy_protocol::{SslTlv, encode_v2};
use crate::proxy::record::StreamRecord;
use crate::runtime::listener::ListenerRuntime;
use crate::runtime::target::{GroupRuntime, process_ms};
use crate::telemetry::metrics::ListenerMetrics;
use crate::tls::client_auth::Mode;
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
    S: AsyncRead + AsyncWrite + Unpin + Prefetch + EndWithData,
{
    let peer = conn.peer;
    let mut record = listener.access_log.as_ref().map(|log| {
        let identity = conn.identity.get();
        StreamRecord::new(log, &listener.name, peer, conn.tls.get(), identity)
    });
    let (received, sent) = forward_stream(client, conn, local, &listener, record.as_mut()).await;
    if let Some(r) = record {
        r.finish(received, sent);
    }
}

/// Joins `client` to a target; returns the bytes moved (from, to the client).
async fn forward_stream<S>(
    client: S,
    conn: &ClientConn,
    local: SocketAddr,
    listener: &ListenerRuntime,
    mut record: Option<&mut StreamRecord>,
) -> (u64, u64)
where
    S: AsyncRead + AsyncWrite + Unpin + Prefetch + EndWithData,
{
    let peer = conn.peer;
    let mut client = client;
    let Some(group) = listener.tcp_group() else {
        return (0, 0);
    };
    // What the client sent already goes out with the connect (see `connect_speculative`).
    let mut first = Vec::new();
    if !listener.proxy_protocol {
        client.prefetch(&mut first);
        if !first.is_empty() {
            listener.metrics.bytes_in.inc_by(first.len() as u64);
        }
    }
    let Some((index, mut target, written)) = connect_target(&group, &first).await else {
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
    if listener.proxy_protocol {
        let header = encode_v2(peer, local, ssl_tlv(conn, listener));
        if target.write_all(&header).await.is_err() {
            return (0, 0);
        }
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
    let copy =
        crate::proxy::copy::bidirectional_seeded(&mut client, &mut target, plain, first, written);
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

/// Connects to a target of `group`, sending it what of `first` it takes at
/// once; a refused or timed-out connect counts against that target and the
/// next one is tried. The stream and how many bytes of `first` went out.
async fn connect_target(group: &GroupRuntime, first: &[u8]) -> Option<(usize, TcpStream, usize)> {
    let mut exclude = None;
    for failovers in 0..MAX_ATTEMPTS.min(group.targets.len().max(1)) as u32 {
        let index = group.pick(exclude)?;
        let target = &group.targets[index];
        let error = match tokio::time::timeout(
            group.connect_timeout,
            connect_speculative(target.addr, first),
        )
        .await
        {
            Ok(Ok((stream, written))) => return Some((index, stream, written)),
            Ok(Err(e)) => ConnectError::Io(e),
            Err(_) => ConnectError::Timeout,
        };
        let verdict = error.charge(group, index, failovers, MAX_ATTEMPTS as u32 - 1);
        if verdict.next != Next::Failover {
            return None;
        }
        exclude = Some(index);
    }
    None
}

/// Connects to `addr` and sends `first` right away, as HAProxy does: on
/// loopback and fast networks the handshake is done when `connect` returns,
/// so the bytes go out without waiting a turn of the event loop for the
/// socket to be writable (nor asking it for its error). When it is still
/// connecting, the wait is tokio's (writable, then `SO_ERROR`).
async fn connect_speculative(addr: SocketAddr, first: &[u8]) -> io::Result<(TcpStream, usize)> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM.nonblocking(),
        Some(socket2::Protocol::TCP),
    )?;
    let _ = socket.set_tcp_nodelay(true);
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    let mut written = 0;
    if !first.is_empty() {
        match socket.send_with_flags(first, libc::MSG_NOSIGNAL) {
            Ok(n) => written = n,
            // Still connecting.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    let stream = TcpStream::from_std(socket.into())?;
    if written == 0 {
        stream.writable().await?;
        if let Some(e) = stream.take_error()? {
            return Err(e);
        }
    }
    Ok((stream, written))
}

/// Client streams whose waiting bytes can be taken before the target is
/// connected (plain sockets; a TLS stream's come through its session).
pub trait Prefetch {
    /// Moves what the client has sent already into `buf` (nothing if nothing waits).
    fn prefetch(&mut self, _buf: &mut Vec<u8>) {}
}

impl Prefetch for TcpStream {
    fn prefetch(&mut self, buf: &mut Vec<u8>) {
        buf.reserve(16 * 1024);
        // A read through tokio (not `try_read`) so that a short read clears the
        // readiness, as the copy's own reads do: no extra `EAGAIN` read later.
        let mut read = ReadBuf::uninit(buf.spare_capacity_mut());
        let mut cx = Context::from_waker(std::task::Waker::noop());
        if let Poll::Ready(Ok(())) = Pin::new(self).poll_read(&mut cx, &mut read) {
            let n = read.filled().len();
            // SAFETY: the reader initialised the first `n` bytes of the spare capacity.
            unsafe { buf.set_len(n) };
        }
    }
}

impl Prefetch for tokio_rustls::server::TlsStream<TcpStream> {}

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

impl<S: EndWithData> EndWithData for Counted<S> {
    fn ends_with_data(&self) -> bool {
        self.inner.ends_with_data()
    }
    fn write_and_end(&mut self, data: &[u8]) -> Option<(usize, bool)> {
        self.inner.write_and_end(data)
    }
}

/// The `PP2_TYPE_SSL` TLV of a connection to a listener with mutual TLS
/// (SPEC §8); none on others, whose PROXY header stays as it was.
fn ssl_tlv<'a>(conn: &'a ClientConn, listener: &ListenerRuntime) -> Option<SslTlv<'a>> {
    if listener.client_certs == Mode::Off {
        return None;
    }
    let identity = conn.identity.get();
    Some(SslTlv {
        version: conn.tls.get().map_or("-", |t| t.version),
        certificate: identity.is_some(),
        verified: identity.is_some_and(|i| i.verified),
        common_name: identity.and_then(|i| i.common_name.as_deref()),
    })
}
