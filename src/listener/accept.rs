//! Binding listening sockets and accepting connections on them.

use crate::listener::dispatch::{Arrival, serve_http};
use crate::listener::park::{ParkingLot, ResumeContext};
use crate::listener::spread::{Handed, Spread};
use crate::proxy::client::ClientConn;
use crate::runtime::Live;
use crate::runtime::listener::ListenerRuntime;
use crate::tls::client_auth::{Mode, REASONS, failure_reason};
use crate::tls::identity::ClientIdentity;
use http::HeaderValue;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
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
    TcpListener::from_std(bind_std(addr)?)
}

/// As [`bind`], not yet registered with a runtime (a worker registers its own).
pub fn bind_std(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    bind_socket(addr, true)
}

/// A listening socket on `addr`: SO_REUSEADDR always, SO_REUSEPORT when
/// `shared` (the listeners; never the admin address, which one process holds).
pub fn bind_socket(addr: SocketAddr, shared: bool) -> io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    if shared {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG as i32)?;
    Ok(socket.into())
}

/// Binds one socket per worker on `addr` (with port 0, all on the port the
/// first one got), for the workers to accept on each their own.
pub fn bind_for_workers(addr: SocketAddr, count: usize) -> io::Result<Vec<std::net::TcpListener>> {
    let first = bind_std(addr)?;
    let shared = first.local_addr()?;
    let mut sockets = vec![first];
    for _ in 1..count {
        sockets.push(bind_std(shared)?);
    }
    Ok(sockets)
}

/// Whether an accept error means the process ran out of something (descriptors,
/// memory) and should back off instead of spinning.
fn is_exhaustion(e: &io::Error) -> bool {
    // ENOMEM, ENFILE, EMFILE, ENOBUFS
    matches!(e.raw_os_error(), Some(12 | 23 | 24 | 105))
}

/// Waits until a new connection has something to read; `false` when it stayed
/// silent for `idle` (closed, as an idle keep-alive connection would be) or the
/// listener finishes and nothing arrives within a short grace (its request may
/// be on the wire). Parked connections wait in the parking lot instead.
async fn first_byte(
    stream: &tokio::net::TcpStream,
    idle: Duration,
    mut finish: tokio::sync::watch::Receiver<bool>,
) -> bool {
    tokio::select! {
        ready = readable(stream) => ready.is_ok(),
        _ = tokio::time::sleep(idle) => false,
        _ = finish.changed() => {
            matches!(tokio::time::timeout(crate::listener::http::FIRST_REQUEST_GRACE, readable(stream)).await, Ok(Ok(())))
        }
    }
}

/// Resolves once `stream` has a byte to read (or the peer closed it). tokio
/// assumes an accepted socket readable until a read finds nothing, so its
/// `readable()` alone returns at once for a silent connection: a one-byte
/// peek makes the wait real (and costs a syscall only when data is there).
async fn readable(stream: &tokio::net::TcpStream) -> io::Result<()> {
    loop {
        stream.readable().await?;
        let mut byte = [std::mem::MaybeUninit::<u8>::uninit()];
        match stream.try_io(tokio::io::Interest::READABLE, || {
            socket2::SockRef::from(stream).peek(&mut byte)
        }) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
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
    pub(super) count: std::sync::atomic::AtomicUsize,
    zero: Notify,
}

impl OpenStreams {
    pub(super) fn enter(self: &Arc<Self>) -> StreamGuard {
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

/// One open connection's place in its loop's [`OpenStreams`].
pub(super) struct StreamGuard(Arc<OpenStreams>);

/// What an open client connection holds until it closes, wherever it waits
/// (its task, or the parking lot): its place among the listener's open
/// connections, its share of the descriptor budget, and the active gauge.
pub struct Held {
    _open: StreamGuard,
    _share: Option<super::budget::BudgetGuard>,
    active: prometheus::IntGauge,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.active.dec();
    }
}

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
pub(super) async fn accept_loop(
    name: Arc<str>,
    socket: std::net::TcpListener,
    live: Arc<Live>,
    stop: Arc<Notify>,
    mut spread: Spread,
) -> Draining {
    let (stop_connections, finish) = tokio::sync::watch::channel(false);
    let streams = spread.open().clone();
    // Registered with the runtime of the thread that accepts on it.
    let socket = match TcpListener::from_std(socket) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(listener = %name, "cannot accept: {e}");
            return Draining {
                stop: stop_connections,
                open: streams,
            };
        }
    };
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
    // Idle HTTP/1 connections of this listener wait here between requests.
    let lot = match ParkingLot::new(ResumeContext {
        name: name.clone(),
        live: live.clone(),
        port: port.clone(),
        local_port,
        finish: finish.clone(),
    }) {
        Ok(lot) => {
            tokio::spawn(lot.clone().run());
            Some(lot)
        }
        Err(e) => {
            tracing::warn!(listener = %name, "idle connections will not be parked: {e}");
            None
        }
    };
    loop {
        // A connection: accepted here, or handed over by a sibling loop with its
        // place among this loop's connections already taken.
        let (accepted, mut share, place) = if stopping {
            // Straight to the kernel: tokio's cached readiness may not know yet
            // of connections already queued. Then what siblings handed over
            // (closed first, so nothing is left in the channel).
            match accept_queued(&socket) {
                Some(r) => (r, budget.try_take(), None),
                None => {
                    spread.handed.close();
                    match spread.handed.try_recv() {
                        Ok(h) => handed(h),
                        Err(_) => break,
                    }
                }
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
                Some(h) = spread.handed.recv() => Err(handed(h)),
                share = budget.take() => Ok(share),
            };
            match share {
                Err(h) => h,
                Ok(share) => tokio::select! {
                    biased;
                    _ = stop.notified() => {
                        stopping = true;
                        continue;
                    }
                    Some(h) = spread.handed.recv() => handed(h),
                    r = socket.accept() => (r, Some(share), None),
                },
            }
        };
        let (mut stream, peer) = match accepted {
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
        let place = match place {
            Some(place) => place,
            None => {
                // A worker with fewer connections takes this one (see listener::spread).
                if let Some(to) = spread.lighter().filter(|_| !stopping) {
                    match spread.hand(to, stream, peer, share.take()) {
                        None => continue,
                        Some((back, back_share)) => {
                            stream = back;
                            share = back_share;
                        }
                    }
                }
                streams.enter()
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
        let conn = Arc::new(ClientConn::new(
            peer,
            &runtime,
            live.clone(),
            &port,
            local_port,
        ));
        let finish = finish.clone();
        runtime.metrics.active_connections.inc();
        let held = Held {
            _open: place,
            _share: share,
            active: runtime.metrics.active_connections.clone(),
        };
        // The PROXY header names the address this connection really reached.
        let local = if runtime.proxy_protocol {
            stream.local_addr().unwrap_or(bound)
        } else {
            bound
        };
        // One task per connection; its future is small (a silent connection
        // costs little): the serving state is boxed once there is something to serve.
        let accepted = Accepted {
            stream,
            conn,
            runtime,
            finish,
            local,
            held,
        };
        match accepted.runtime.tls.clone() {
            None => tokio::spawn(serve_plain(accepted, lot.clone())),
            Some(tls) => tokio::spawn(serve_tls(accepted, tls, lot.clone())),
        };
    }
    Draining {
        stop: stop_connections,
        open: streams,
    }
}

/// A connection a sibling loop handed over, as an accept's result.
fn handed(
    h: Handed,
) -> (
    io::Result<(tokio::net::TcpStream, SocketAddr)>,
    Option<super::budget::BudgetGuard>,
    Option<StreamGuard>,
) {
    let stream = tokio::net::TcpStream::from_std(h.stream).map(|s| (s, h.peer));
    (stream, h.share, Some(h.open))
}

/// An accepted connection and what serving it needs.
struct Accepted {
    stream: tokio::net::TcpStream,
    conn: Arc<ClientConn>,
    runtime: Arc<ListenerRuntime>,
    finish: tokio::sync::watch::Receiver<bool>,
    /// The address the client reached (for a PROXY header).
    local: SocketAddr,
    held: Held,
}

/// Serves a connection of an http or tcp listener.
async fn serve_plain(a: Accepted, lot: Option<Arc<ParkingLot>>) {
    // hyper allocates its read buffer on its first read: a silent HTTP
    // connection waits here, costing only this task.
    if a.runtime.protocol.is_http()
        && !first_byte(&a.stream, a.runtime.idle_timeout, a.finish.clone()).await
    {
        return;
    }
    if a.runtime.protocol.is_http() {
        Box::pin(serve_http(
            a.stream,
            a.conn,
            a.runtime,
            a.finish,
            lot,
            a.held,
            Arrival::Accepted,
        ))
        .await;
        return;
    }
    Box::pin(crate::proxy::tcp::serve(
        a.stream, &a.conn, a.local, a.runtime,
    ))
    .await;
    drop(a.held);
}

/// The server side of a TLS handshake. With a tls-alpn-01 challenge
/// configuration (SPEC §10), the ClientHello is read first: one offering
/// ALPN `acme-tls/1` is an ACME server's validation and gets `challenge`;
/// every other handshake gets `tls`, whose ALPN list is left as it is.
async fn handshake(
    stream: tokio::net::TcpStream,
    tls: Arc<rustls::ServerConfig>,
    challenge: Option<Arc<rustls::ServerConfig>>,
) -> std::io::Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
    let Some(challenge) = challenge else {
        return tokio_rustls::TlsAcceptor::from(tls).accept(stream).await;
    };
    let start =
        tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream).await?;
    let validation = start
        .client_hello()
        .alpn()
        .is_some_and(|mut offered| offered.any(|p| p == crate::tls::acme::ACME_TLS_ALPN));
    start
        .into_stream(if validation { challenge } else { tls })
        .await
}

/// Serves a connection of an https or tls listener: the handshake, then the stream.
async fn serve_tls(a: Accepted, tls: Arc<rustls::ServerConfig>, lot: Option<Arc<ParkingLot>>) {
    let handshake = Box::pin(handshake(a.stream, tls, a.runtime.acme_challenge.clone()));
    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(stream)) => {
            // An ACME server's tls-alpn-01 validation: the handshake was the
            // answer; no application data follows (RFC 8737).
            if stream.get_ref().1.alpn_protocol() == Some(crate::tls::acme::ACME_TLS_ALPN) {
                return;
            }
            let mode = a.runtime.client_certs;
            if mode != Mode::Off
                && let Some(chain) = stream.get_ref().1.peer_certificates()
                && let Some(identity) = ClientIdentity::of(chain, mode == Mode::Verify)
            {
                let _ = a.conn.identity.set(identity);
            }
            // The PROXY header of a listener with mutual TLS names the version.
            if a.runtime.access_log.is_some() || mode != Mode::Off {
                let _ = a
                    .conn
                    .tls
                    .set(crate::proxy::record::TlsInfo::of(stream.get_ref().1));
            }
            if a.runtime.protocol.is_http() {
                let arrival = match stream.get_ref().1.alpn_protocol() {
                    Some(b"h2") => Arrival::AlpnH2,
                    _ => Arrival::Accepted,
                };
                Box::pin(serve_http(
                    stream, a.conn, a.runtime, a.finish, lot, a.held, arrival,
                ))
                .await;
                return;
            }
            Box::pin(crate::proxy::tcp::serve(
                stream, &a.conn, a.local, a.runtime,
            ))
            .await;
            drop(a.held);
        }
        Ok(Err(e)) => {
            tracing::debug!(peer = %a.conn.peer, "TLS handshake failed: {e}");
            a.runtime.metrics.tls_handshake_errors.inc();
            if let Some(errors) = &a.runtime.metrics.client_cert_errors
                && let Some(reason) = failure_reason(&e)
            {
                let i = REASONS.iter().position(|r| *r == reason).unwrap_or(1);
                errors[i].inc();
                if let Some(log) = &a.runtime.access_log {
                    crate::proxy::record::handshake_refused(
                        log,
                        &a.runtime.name,
                        a.conn.peer,
                        reason,
                    );
                }
            }
        }
        Err(_) => {
            tracing::debug!(peer = %a.conn.peer, "TLS handshake not finished within {TLS_HANDSHAKE_TIMEOUT:?}");
            a.runtime.metrics.tls_handshake_errors.inc();
        }
    }
}
