//! Listeners: accept loops, the per-connection HTTP service, the set of running
//! listeners and how it changes on reload.

pub(crate) mod accept;
pub mod budget;
pub mod coalesce;
pub mod framing;
pub mod h2_watch;
pub(crate) mod http;
pub(crate) mod io;
pub(crate) mod park;

mod set;
mod spread;

pub use accept::bind;
pub use http::{http_builder, http1_builder};
pub use set::{ListenerSet, Prepared, drain};

use crate::proxy::body::InFlightCount;
use crate::proxy::headers::ForwardedFor;
use crate::runtime::Live;
use crate::runtime::listener::ListenerRuntime;
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
    /// Index of the first HTTP/1 request on this connection whose head had both
    /// Content-Length and Transfer-Encoding or a repeated Content-Length
    /// (`u64::MAX`: none); see [`framing`].
    pub ambiguous_from: AtomicU64,
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
            ambiguous_from: AtomicU64::new(u64::MAX),
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
