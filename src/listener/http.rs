//! Serving one client connection of an http listener with hyper: HTTP/1.1 with
//! keep-alive, and HTTP/2 by prior knowledge when the listener allows it.

use crate::config::Listener;
use crate::listener::ClientConn;
use crate::listener::io::ClientIo;
use crate::proxy::body::InFlight;
use crate::runtime::listener::ListenerRuntime;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// On a drain, how long a connection that has not sent its first request yet
/// is given to start it (it may be on the wire already).
pub const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(1);

/// Concurrent HTTP/2 streams per client connection.
const H2_MAX_CONCURRENT_STREAMS: u32 = 128;

/// The hyper server settings of a listener, built once per snapshot.
pub fn http_builder(listener: &Listener) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // Our ClientIo runs the head deadline (from the first byte, answering 408).
        .header_read_timeout(None)
        .max_buf_size(listener.max_header_bytes)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(listener.max_header_bytes as u32)
        .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS);
    if !listener.http2 {
        builder = builder.http1_only();
    }
    builder
}

/// Serves requests on `stream` until the client leaves, the connection idles
/// out, or a graceful shutdown closes it.
pub async fn serve<S>(
    stream: S,
    conn: Arc<ClientConn>,
    runtime: Arc<ListenerRuntime>,
    mut finish: tokio::sync::watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = ClientIo::new(
        stream,
        conn.clone(),
        runtime.idle_timeout,
        runtime.header_read_timeout,
        runtime.metrics.clone(),
    );
    let served = Arc::new(AtomicU64::new(0));
    let counter = served.clone();
    let service = service_fn(move |req| {
        let index = counter.fetch_add(1, Ordering::Relaxed);
        let in_flight = InFlight::new(&conn.in_flight);
        let conn = conn.clone();
        async move { Ok::<_, Infallible>(crate::proxy::http::handle(conn, index, req, in_flight).await) }
    });
    let connection = runtime
        .http
        .serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(connection);
    let mut finishing = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!("client connection ended: {e}");
                }
                return;
            }
            changed = finish.changed(), if !finishing => {
                finishing = true;
                if changed.is_err() || *finish.borrow() {
                    // A connection that has not sent its first request yet may have
                    // one on the wire: let it start (briefly) so it is answered.
                    if served.load(Ordering::Relaxed) == 0 {
                        let first = async {
                            while served.load(Ordering::Relaxed) == 0 {
                                tokio::time::sleep(Duration::from_millis(5)).await;
                            }
                        };
                        let _ = tokio::time::timeout(FIRST_REQUEST_GRACE, first).await;
                    }
                    // HTTP/1: close after the current request (now if idle); HTTP/2: GOAWAY.
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}
