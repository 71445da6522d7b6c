//! Listeners: accept loops, the per-connection HTTP service, the set of running
//! listeners and how it changes on reload.

mod accept;
mod http;
mod io;
mod set;

pub use accept::bind;
pub use http::http_builder;
pub use set::{ListenerSet, Prepared, drain};

use crate::proxy::body::InFlightCount;
use crate::proxy::headers::ForwardedFor;
use crate::runtime::Live;
use crate::runtime::listener::ListenerRuntime;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

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
}

impl ClientConn {
    /// This connection's listener in the live snapshot (`None` if a reload removed it).
    pub fn listener(&self) -> Option<Arc<ListenerRuntime>> {
        self.live.load().listener(&self.listener_name).cloned()
    }
}
