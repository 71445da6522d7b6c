//! A connection to a target: plain TCP or TLS over it.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// What an HTTP connection to a target runs over.
pub enum TargetStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for TargetStream {
    #[inline]
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            TargetStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            TargetStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for TargetStream {
    #[inline]
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            TargetStream::Plain(s) => Pin::new(s).poll_write(cx, data),
            TargetStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, data),
        }
    }

    #[inline]
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            TargetStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            TargetStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            TargetStream::Plain(s) => s.is_write_vectored(),
            TargetStream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            TargetStream::Plain(s) => Pin::new(s).poll_flush(cx),
            TargetStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            TargetStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            TargetStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// TLS settings for connecting to one target.
#[derive(Debug, Clone)]
pub struct TargetTls {
    pub config: std::sync::Arc<rustls::ClientConfig>,
    /// The same settings offering ALPN `h2` only, for HTTP/2 groups and gRPC
    /// checks (SPEC §7).
    pub h2_config: std::sync::Arc<rustls::ClientConfig>,
    pub name: rustls::pki_types::ServerName<'static>,
}

/// Connects to `addr`, then speaks TLS when `tls` is given.
pub async fn connect(
    addr: std::net::SocketAddr,
    tls: Option<&TargetTls>,
) -> io::Result<TargetStream> {
    open(addr, tls, false).await
}

/// Connects to `addr` for HTTP/2: in clear text (prior knowledge), or over
/// TLS offering ALPN `h2` only, failing when the target does not agree.
pub async fn connect_h2(
    addr: std::net::SocketAddr,
    tls: Option<&TargetTls>,
) -> io::Result<TargetStream> {
    open(addr, tls, true).await
}

async fn open(
    addr: std::net::SocketAddr,
    tls: Option<&TargetTls>,
    h2: bool,
) -> io::Result<TargetStream> {
    let tcp = TcpStream::connect(addr).await?;
    let _ = tcp.set_nodelay(true);
    let Some(t) = tls else {
        return Ok(TargetStream::Plain(tcp));
    };
    let config = if h2 { &t.h2_config } else { &t.config };
    let stream = tokio_rustls::TlsConnector::from(config.clone())
        .connect(t.name.clone(), tcp)
        .await?;
    if h2 && stream.get_ref().1.alpn_protocol() != Some(b"h2") {
        return Err(io::Error::other(
            "the target did not agree to HTTP/2 (ALPN h2)",
        ));
    }
    Ok(TargetStream::Tls(Box::new(stream)))
}
