//! Serving one client connection of an http listener with hyper: HTTP/1.1 with
//! keep-alive, and HTTP/2 by prior knowledge when the listener allows it.

use crate::listener::accept::Held;
use crate::listener::io::{ClientIo, ParkSlot};
use crate::listener::park::{Parkable, ParkingLot};
use crate::proxy::body::InFlight;
use crate::proxy::client::ClientConn;
use crate::runtime::listener::ListenerRuntime;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// On a drain, how long a connection that has not sent its first request yet
/// is given to start it (it may be on the wire already).
pub const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(1);

pin_project_lite::pin_project! {
    /// A connection served by either builder.
    #[project = ServedProj]
    enum Served<A, B> {
        Auto { #[pin] conn: A },
        Http1 { #[pin] conn: B },
    }
}

impl<A, B, EA, EB> Served<A, B>
where
    A: Future<Output = Result<(), EA>>,
    B: Future<Output = Result<(), EB>>,
{
    /// See hyper's `graceful_shutdown`: HTTP/1 closes after the current
    /// request (at once if idle), HTTP/2 sends GOAWAY.
    fn graceful_shutdown<SA, SB>(self: Pin<&mut Self>, auto: SA, h1: SB)
    where
        SA: FnOnce(Pin<&mut A>),
        SB: FnOnce(Pin<&mut B>),
    {
        match self.project() {
            ServedProj::Auto { conn } => auto(conn),
            ServedProj::Http1 { conn } => h1(conn),
        }
    }
}

impl<A, B, EA: std::fmt::Display, EB: std::fmt::Display> Future for Served<A, B>
where
    A: Future<Output = Result<(), EA>>,
    B: Future<Output = Result<(), EB>>,
{
    type Output = Result<(), String>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ServedProj::Auto { conn } => conn.poll(cx).map_err(|e| e.to_string()),
            ServedProj::Http1 { conn } => conn.poll(cx).map_err(|e| e.to_string()),
        }
    }
}

/// An HTTP/1 connection idle this long is parked: hyper's state and buffers
/// are freed and the socket waits for its next request like a new one.
pub const PARK_AFTER: Duration = Duration::from_secs(1);

/// A client stream, and whether it can be parked: a plain socket can; a TLS
/// stream can with its session, unless it carries HTTP/2 (never parked) or
/// has TLS records of its own still to send.
pub trait ClientStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// The stream for the parking lot; `Err(self)` when it cannot park.
    fn into_parkable(self) -> Result<Parkable, Self>
    where
        Self: Sized;

    /// Whether the connection may park when idle.
    fn is_parkable(&self) -> bool;
}

impl ClientStream for TcpStream {
    fn into_parkable(self) -> Result<Parkable, Self> {
        Ok(Parkable::Plain(self))
    }

    fn is_parkable(&self) -> bool {
        true
    }
}

impl ClientStream for tokio_rustls::server::TlsStream<TcpStream> {
    fn into_parkable(self) -> Result<Parkable, Self> {
        if !self.is_parkable() || self.get_ref().1.wants_write() {
            return Err(self);
        }
        Ok(Parkable::Tls(Box::new(self)))
    }

    fn is_parkable(&self) -> bool {
        self.get_ref().1.alpn_protocol() != Some(b"h2")
    }
}

/// Serves requests on `stream` until the client leaves, the connection idles
/// out, or a graceful shutdown closes it. An idle HTTP/1 connection is parked
/// in `lot` (see [`PARK_AFTER`]), which serves its next request with a new
/// call; `held` goes with the connection wherever it waits. `first` is false
/// for a connection that carried requests already (back from the lot, or
/// handed over by the fast path): no first-request grace on a drain, and
/// no HTTP/2 preface.
pub async fn serve<S: ClientStream>(
    stream: S,
    conn: Arc<ClientConn>,
    runtime: Arc<ListenerRuntime>,
    mut finish: tokio::sync::watch::Receiver<bool>,
    lot: Option<Arc<ParkingLot>>,
    held: Held,
    first: bool,
) {
    let slot: Option<ParkSlot<S>> = lot
        .as_ref()
        .filter(|_| stream.is_parkable())
        .map(|_| Arc::default());
    let parked = serve_until_parked(stream, &conn, &runtime, &mut finish, first, slot.as_ref());
    // Boxed: the task's own future stays small.
    let Some((stream, idle_left)) = Box::pin(parked).await else {
        return;
    };
    if let (Some(lot), Ok(socket)) = (lot, stream.into_parkable()) {
        lot.park(socket, &conn, idle_left, held);
    }
}

/// Serves one hyper connection on `stream`; `Some` with the stream and what is
/// left of its idle timeout when the connection was parked.
async fn serve_until_parked<S: ClientStream>(
    stream: S,
    conn: &Arc<ClientConn>,
    runtime: &Arc<ListenerRuntime>,
    finish: &mut tokio::sync::watch::Receiver<bool>,
    first_cycle: bool,
    slot: Option<&ParkSlot<S>>,
) -> Option<(S, Duration)> {
    let io = ClientIo::new(
        stream,
        conn.clone(),
        runtime.idle_timeout,
        runtime.header_read_timeout,
        runtime.metrics.clone(),
        slot.map(|s| (s.clone(), PARK_AFTER)),
    );
    let served = Arc::new(AtomicU64::new(0));
    let counter = served.clone();
    let service_conn = conn.clone();
    let service = service_fn(move |req| {
        let index = counter.fetch_add(1, Ordering::Relaxed);
        let in_flight = InFlight::new(&service_conn.in_flight);
        let conn = service_conn.clone();
        // Boxed: hyper moves the service future into a task per HTTP/2 stream
        // (and into its dispatcher per HTTP/1 request); a pointer moves cheaper
        // than the ~3 KiB future.
        Box::pin(async move {
            Ok::<_, Infallible>(crate::proxy::http::handle(conn, index, req, in_flight).await)
        })
    });
    // Only a connection's first bytes may open HTTP/2.
    let mut connection = Box::pin(if first_cycle && runtime.http2 {
        Served::Auto {
            conn: runtime
                .http
                .serve_connection_with_upgrades(TokioIo::new(io), service),
        }
    } else {
        Served::Http1 {
            conn: runtime
                .http1
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades(),
        }
    });
    let mut finishing = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!("client connection ended: {e}");
                }
                break;
            }
            changed = finish.changed(), if !finishing => {
                finishing = true;
                if changed.is_err() || *finish.borrow() {
                    // A connection that has not sent its first request yet may have
                    // one on the wire: let it start (briefly) so it is answered. A
                    // parked one was woken by its next request: it is on its way.
                    if first_cycle && served.load(Ordering::Relaxed) == 0 {
                        let first = async {
                            while served.load(Ordering::Relaxed) == 0 {
                                tokio::time::sleep(Duration::from_millis(5)).await;
                            }
                        };
                        let _ = tokio::time::timeout(FIRST_REQUEST_GRACE, first).await;
                    }
                    // HTTP/1: close after the current request (now if idle); HTTP/2: GOAWAY.
                    connection.as_mut().graceful_shutdown(|c| c.graceful_shutdown(), |c| c.graceful_shutdown());
                }
            }
        }
    }
    // Dropping the connection drops the stream's wrapper, which parks it.
    drop(connection);
    slot.and_then(|s| s.lock().ok()?.take())
}
