//! One client connection as the forwarding code sees it: who the client is,
//! which listener it came to, the requests in flight on it, whether it switched
//! protocols, and the framing reader's verdict on its requests. The listener
//! makes it; everything that forwards requests of the connection reads it.

use crate::proxy::body::InFlightCount;
use crate::runtime::Live;
use crate::runtime::listener::ListenerRuntime;
use crate::wire::forwarded::ForwardedFor;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// One client connection, shared by its service (per request) and its IO.
pub struct ClientConn {
    pub peer: SocketAddr,
    /// The listener's name: requests find its current settings in the live snapshot.
    pub listener_name: Arc<str>,
    pub live: Arc<Live>,
    /// Requests whose responses are not finished yet.
    pub in_flight: Arc<InFlightCount>,
    /// Switched protocols (WebSocket): no HTTP timers apply any more.
    pub upgraded: AtomicBool,
    pub forwarded: ForwardedFor,
    /// The port the client connected to (`#{port}` of redirects).
    pub local_port: u16,
    /// What TLS negotiated, on https and tls listeners (for the access log).
    pub tls: std::sync::OnceLock<crate::proxy::record::TlsInfo>,
    /// The client's certificate, on listeners that ask for one (SPEC §8):
    /// set once after the handshake, read by every request for its target.
    pub identity: std::sync::OnceLock<crate::tls::identity::ClientIdentity>,
    /// Index of the first HTTP/1 request on this connection whose head had both
    /// Content-Length and Transfer-Encoding or a repeated Content-Length
    /// (`u64::MAX`: none); see [`crate::listener::framing`].
    pub ambiguous_from: AtomicU64,
    /// The listener's dispatch decision ([`crate::listener::dispatch`]), from
    /// `[global] http1_fast_path` when it was accepted: the HTTP/1 fast path
    /// and its raw target sockets serve this connection.
    pub fast_path: bool,
}

impl ClientConn {
    /// A connection from `peer` accepted (or resumed from parking) on a
    /// listener with these settings, bound to `local_port`.
    pub fn new(
        peer: SocketAddr,
        runtime: &ListenerRuntime,
        live: Arc<Live>,
        port: &::http::HeaderValue,
        local_port: u16,
    ) -> Self {
        ClientConn {
            peer,
            listener_name: runtime.name.clone(),
            live,
            in_flight: Arc::default(),
            upgraded: AtomicBool::new(false),
            forwarded: if runtime.protocol.is_http() {
                runtime.forwarded_for(peer, port)
            } else {
                ForwardedFor::none()
            },
            local_port,
            tls: std::sync::OnceLock::new(),
            identity: std::sync::OnceLock::new(),
            ambiguous_from: AtomicU64::new(u64::MAX),
            fast_path: runtime.fast_path,
        }
    }

    /// This connection's listener in the live snapshot (`None` if a reload removed it).
    pub fn listener(&self) -> Option<Arc<ListenerRuntime>> {
        self.live.load().listener(&self.listener_name).cloned()
    }

    /// Whether request `index` of this connection must be refused as ambiguous.
    pub fn is_ambiguous(&self, index: u64) -> bool {
        index >= self.ambiguous_from.load(Ordering::Relaxed)
    }
}

impl crate::upstream::request_body::FramingVerdict for ClientConn {
    fn is_ambiguous(&self, index: u64) -> bool {
        ClientConn::is_ambiguous(self, index)
    }
}
