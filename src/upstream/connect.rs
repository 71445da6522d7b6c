//! Opening connections to a target: plain sockets for the fast path and the
//! raw target sockets, hyper HTTP/1.1 client connections (over TLS for https
//! groups), and connections for a protocol switch; each bounded by the
//! group's `connect_timeout`.

use super::pool::{TARGET_MAX_HEAD_BYTES, TargetConn};
use super::request_body::RequestBody;
use crate::tls::{TargetStream, TargetTls};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;

// Why no connection could be opened.
#[derive(Debug)]
pub enum ConnectError {
    /// Nothing answered within `connect_timeout`.
    Timeout,
    /// Refused, unreachable, reset during the handshake, …
    Io(io::Error),
}

impl ConnectError {
    /// The attempt policy's name for this failure (`proxy::attempt`).
    pub fn timed_out(&self) -> bool {
        matches!(self, ConnectError::Timeout)
    }
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Timeout => f.write_str("connect timed out"),
            ConnectError::Io(e) => write!(f, "{e}"),
        }
    }
}

async fn connect_stream(
    addr: SocketAddr,
    timeout: Duration,
    tls: Option<&TargetTls>,
) -> Result<TargetStream, ConnectError> {
    match tokio::time::timeout(timeout, crate::tls::stream::connect(addr, tls)).await {
        Err(_) => Err(ConnectError::Timeout),
        Ok(Err(e)) => Err(ConnectError::Io(e)),
        Ok(Ok(s)) => Ok(s),
    }
}

/// Opens a plain connection to `addr` for the HTTP/1 fast path.
pub async fn connect_raw(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, ConnectError> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => Err(ConnectError::Timeout),
        Ok(Err(e)) => Err(ConnectError::Io(e)),
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
    }
}

/// Opens a new HTTP/1.1 connection to `addr` (over TLS with `tls`), driven by its user.
pub async fn connect(
    addr: SocketAddr,
    timeout: Duration,
    tls: Option<&TargetTls>,
) -> Result<TargetConn, ConnectError> {
    let stream = connect_stream(addr, timeout, tls).await?;
    let (sender, driver) = http1::Builder::new()
        .max_buf_size(TARGET_MAX_HEAD_BYTES)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ConnectError::Io(io::Error::other(e)))?;
    Ok(TargetConn::new(sender, driver))
}

/// Opens a connection for a request that asks to switch protocols: its driver
/// runs in a task of its own so that it can hand the socket over on `101`.
pub async fn connect_upgradable(
    addr: SocketAddr,
    timeout: Duration,
    tls: Option<&TargetTls>,
) -> Result<http1::SendRequest<RequestBody>, ConnectError> {
    let stream = connect_stream(addr, timeout, tls).await?;
    let (sender, driver) = http1::Builder::new()
        .max_buf_size(TARGET_MAX_HEAD_BYTES)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ConnectError::Io(io::Error::other(e)))?;
    tokio::spawn(async move {
        if let Err(e) = driver.with_upgrades().await {
            tracing::debug!(target_addr = %addr, "target connection ended: {e}");
        }
    });
    Ok(sender)
}
