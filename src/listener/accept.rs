//! Binding listening sockets and accepting connections on them.

use crate::listener::ClientConn;
use crate::runtime::Live;
use crate::runtime::listener::ListenerRuntime;
use http::HeaderValue;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::Notify;

/// A client TLS handshake that takes longer is dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Pending connections the kernel keeps for a listener.
const BACKLOG: u32 = 4096;

/// Binds a listening socket. SO_REUSEADDR, so a restart does not wait for
/// TIME_WAIT; SO_REUSEPORT, so a new edgelb binary can bind the same addresses
/// while the old one still serves (a zero-downtime upgrade: start the new one,
/// then SIGTERM the old one).
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Whether an accept error means the process ran out of something (descriptors,
/// memory) and should back off instead of spinning.
fn is_exhaustion(e: &io::Error) -> bool {
    // ENOMEM, ENFILE, EMFILE, ENOBUFS
    matches!(e.raw_os_error(), Some(12 | 23 | 24 | 105))
}

/// Waits until a connection has something to read; `false` when it stayed
/// silent for `idle` (closed, as an idle keep-alive connection would be) or the
/// listener finishes and nothing arrives within a short grace (`grace`: a new
/// connection's request may be on the wire; a parked one gets none).
pub(super) async fn first_byte(
    stream: &tokio::net::TcpStream,
    idle: Duration,
    mut finish: tokio::sync::watch::Receiver<bool>,
    grace: bool,
) -> bool {
    tokio::select! {
        ready = stream.readable() => ready.is_ok(),
        _ = tokio::time::sleep(idle) => false,
        _ = finish.changed() => {
            grace && matches!(tokio::time::timeout(crate::listener::http::FIRST_REQUEST_GRACE, stream.readable()).await, Ok(Ok(())))
        }
    }
}

/// One connection already in the kernel's accept queue, if there is one.
fn accept_queued(socket: &TcpListener) -> Option<io::Result<(tokio::net::TcpStream, SocketAddr)>> {
    match socket2::SockRef::from(socket).accept() {
        Ok((sock, addr)) => {
            let std: std::net::TcpStream = sock.into();
            let converted = std
                .set_nonblocking(true)
                .and_then(|_| tokio::net::TcpStream::from_std(std))
                .map(|s| {
                    (
                        s,
                        addr.as_socket()
                            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
                    )
                });
            Some(converted)
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
        Err(e) => Some(Err(e)),
    }
}

/// Open connections of a listener, for a drain to wait on.
#[derive(Default)]
pub struct OpenStreams {
    count: std::sync::atomic::AtomicUsize,
    zero: Notify,
}

impl OpenStreams {
    fn enter(self: &Arc<Self>) -> StreamGuard {
        self.count.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        StreamGuard(self.clone())
    }

    /// Resolves when no stream is open.
    pub async fn closed(&self) {
        loop {
            let notified = self.zero.notified();
            if self.count.load(std::sync::atomic::Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

struct StreamGuard(Arc<OpenStreams>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if self
            .0
            .count
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel)
            == 1
        {
            self.0.zero.notify_waiters();
        }
    }
}

/// What a stopped listener leaves to drain: its open connections, and the signal
/// that tells its HTTP connections to finish (close after the current request,
/// GOAWAY on HTTP/2).
pub struct Draining {
    pub stop: tokio::sync::watch::Sender<bool>,
    pub open: Arc<OpenStreams>,
}

impl Draining {
    /// Tells every connection to finish and waits until none is open.
    pub async fn finish(self) {
        let _ = self.stop.send(true);
        self.open.closed().await;
    }
}

/// Accepts connections of one listener until `stop` is notified, then closes the
/// socket (new connections are refused) and returns the connections' shutdown
/// handle so the caller can drain them.
pub async fn accept_loop(
    name: Arc<str>,
    socket: Arc<TcpListener>,
    live: Arc<Live>,
    stop: Arc<Notify>,
) -> Draining {
    let (stop_connections, finish) = tokio::sync::watch::channel(false);
    let streams = Arc::new(OpenStreams::default());
    let mut backoff = Duration::from_millis(10);
    // The real port (the configured one may be 0), for X-Forwarded-Port.
    let bound = socket
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let local_port = bound.port();
    let port = HeaderValue::from(local_port);
    // Once stopped, connections already in the kernel's queue are still taken
    // (they completed their handshake) before the socket closes; only then is
    // nothing lost when another process shares the port (SO_REUSEPORT).
    let mut stopping = false;
    let budget = super::budget::budget();
    loop {
        let (accepted, share) = if stopping {
            // Straight to the kernel: tokio's cached readiness may not know yet
            // of connections already queued.
            match accept_queued(&socket) {
                Some(r) => (r, budget.try_take()),
                None => break,
            }
        } else {
            // No share of the descriptor budget: leave new connections in the
            // kernel's queue until one closes.
            let share = tokio::select! {
                biased;
                _ = stop.notified() => {
                    stopping = true;
                    continue;
                }
                share = budget.take() => share,
            };
            tokio::select! {
                biased;
                _ = stop.notified() => {
                    stopping = true;
                    continue;
                }
                r = socket.accept() => (r, Some(share)),
            }
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) if is_exhaustion(&e) => {
                tracing::error!(listener = %name, "accept failed: {e}; backing off {backoff:?}");
                tokio::select! {
                    _ = stop.notified() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
            Err(e) => {
                tracing::debug!(listener = %name, "accept failed: {e}");
                continue;
            }
        };
        backoff = Duration::from_millis(10);
        let Some(runtime) = live.load().listener(&name).cloned() else {
            continue;
        };
        runtime.metrics.connections.inc();
        if runtime.max_connections > 0
            && runtime.metrics.active_connections.get() >= runtime.max_connections as i64
        {
            runtime.metrics.rejected_connections.inc();
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let conn = Arc::new(ClientConn {
            peer,
            listener_name: runtime.name.clone(),
            live: live.clone(),
            in_flight: Arc::default(),
            upgraded: AtomicBool::new(false),
            forwarded: if runtime.protocol.is_http() {
                runtime.forwarded_for(peer, &port)
            } else {
                crate::proxy::headers::ForwardedFor::none()
            },
            local_port,
            tls: std::sync::OnceLock::new(),
            ambiguous_from: AtomicU64::new(u64::MAX),
        });
        let finish = finish.clone();
        runtime.metrics.active_connections.inc();
        // The PROXY header names the address this connection really reached.
        let local = if runtime.proxy_protocol {
            stream.local_addr().unwrap_or(bound)
        } else {
            bound
        };
        let stream_guard = streams.enter();
        tokio::spawn(async move {
            let _stream_guard = stream_guard;
            let _share = share;
            let active = runtime.metrics.active_connections.clone();
            match runtime.tls.clone() {
                None => {
                    // hyper allocates its read buffer on its first read: a silent
                    // HTTP connection waits here, costing only this task.
                    if !runtime.protocol.is_http()
                        || first_byte(&stream, runtime.idle_timeout, finish.clone(), true).await
                    {
                        // Boxed, here and below: the task's own future stays small
                        // (a silent connection costs little), the serving state is
                        // allocated once there is something to serve.
                        Box::pin(serve_stream(stream, conn, runtime, finish, local)).await;
                    }
                }
                Some(tls) => {
                    let handshake = Box::pin(tokio_rustls::TlsAcceptor::from(tls).accept(stream));
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, handshake).await {
                        Ok(Ok(stream)) => {
                            if runtime.access_log.is_some() {
                                let _ = conn
                                    .tls
                                    .set(crate::proxy::record::TlsInfo::of(stream.get_ref().1));
                            }
                            Box::pin(serve_stream(stream, conn, runtime, finish, local)).await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(peer = %conn.peer, "TLS handshake failed: {e}");
                            runtime.metrics.tls_handshake_errors.inc();
                        }
                        Err(_) => {
                            tracing::debug!(peer = %conn.peer, "TLS handshake not finished within {TLS_HANDSHAKE_TIMEOUT:?}");
                            runtime.metrics.tls_handshake_errors.inc();
                        }
                    }
                }
            }
            active.dec();
        });
    }
    Draining {
        stop: stop_connections,
        open: streams,
    }
}

/// Serves an accepted (and, for https/tls, decrypted) connection by the
/// listener's protocol: HTTP requests, or a byte stream to a tcp group.
async fn serve_stream<S: super::http::ClientStream>(
    stream: S,
    conn: Arc<ClientConn>,
    runtime: Arc<ListenerRuntime>,
    finish: tokio::sync::watch::Receiver<bool>,
    local: SocketAddr,
) {
    if runtime.protocol.is_http() {
        super::http::serve(stream, conn, runtime, finish).await;
    } else {
        crate::proxy::tcp::serve(stream, &conn, local, runtime).await;
    }
}
