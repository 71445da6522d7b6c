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
use hyper_util::server::graceful::Watcher;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};

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
    watcher: Watcher,
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
    let service = service_fn(move |req| {
        let in_flight = InFlight::new(&conn.in_flight);
        let conn = conn.clone();
        async move { Ok::<_, Infallible>(crate::proxy::http::handle(conn, req, in_flight).await) }
    });
    let connection = runtime
        .http
        .serve_connection_with_upgrades(TokioIo::new(io), service);
    if let Err(e) = watcher.watch(connection).await {
        tracing::debug!("client connection ended: {e}");
    }
}
