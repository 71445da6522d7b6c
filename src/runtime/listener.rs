//! A listener as one snapshot sees it: its settings, its routing, its handles.

use crate::balance::cookie::CookieKeys;
use crate::config::{Listener, ListenerProtocol};
use crate::route;
use crate::runtime::target::GroupRuntime;
use crate::telemetry::metrics::{ListenerMetrics, UnroutedMetrics};
use crate::wire::forwarded::ForwardedFor;
use http::HeaderValue;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// One listener in one snapshot.
pub struct ListenerRuntime {
    pub name: Arc<str>,
    pub protocol: ListenerProtocol,
    pub bind: SocketAddr,
    pub idle_timeout: Duration,
    pub header_read_timeout: Duration,
    pub max_header_bytes: usize,
    /// Request bodies longer than this get 413; `u64::MAX` = no limit.
    pub max_body_bytes: u64,
    pub http2: bool,
    /// `[global] http1_fast_path`: whether this listener's new HTTP/1
    /// connections start on the fast path (the dispatch, `listener::dispatch`).
    pub fast_path: bool,
    /// 0 = unlimited.
    pub max_connections: u32,
    /// Rules and default action.
    pub routes: RuleTable,
    /// Keys of the stickiness cookies.
    pub cookie_keys: Arc<CookieKeys>,
    /// `X-Forwarded-Proto` of this listener.
    pub forwarded_proto: HeaderValue,
    pub metrics: ListenerMetrics,
    /// The access log, when it is on.
    pub access_log: Option<Arc<crate::telemetry::access_log::AccessLog>>,
    /// tcp/tls: send a PROXY protocol v2 header to targets.
    pub proxy_protocol: bool,
    /// Client certificates (SPEC §8): what a handshake asks, and what the
    /// target learns of them.
    pub client_certs: crate::tls::client_auth::Mode,
    /// TLS settings of https and tls listeners (certificates of this snapshot).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The TLS settings a tls-alpn-01 validation is answered with (SPEC §10),
    /// when that is the ACME challenge.
    pub acme_challenge: Option<Arc<rustls::ServerConfig>>,
    /// (first DNS name, notAfter) of each certificate served, for the
    /// expiry gauge.
    pub certificates: Vec<(String, i64)>,
    /// The logins of this listener's rules, one per provider: the callback
    /// at `/oauth2/idpresponse` ends theirs (SPEC §9).
    pub gates: Vec<Arc<crate::oidc::gate::Gate>>,
    /// hyper's server settings for this listener.
    pub http: auto::Builder<TokioExecutor>,
    /// The same settings, HTTP/1 only: for a connection that already carried
    /// HTTP/1 requests (RFC 9113 §3.4: the HTTP/2 preface only opens one).
    pub http1: hyper::server::conn::http1::Builder,
    /// Responses not forwarded to any group (`target_group=""`).
    pub unrouted: UnroutedMetrics,
}

/// The route types with the runtime's target groups in them.
pub type RuleTable = route::RuleTable<GroupRuntime>;
/// See [`RuleTable`].
pub type RouteAction = route::RouteAction<GroupRuntime>;
/// See [`RuleTable`].
pub type GroupChoice = route::GroupChoice<GroupRuntime>;
/// See [`RuleTable`].
pub type CompiledRule = route::CompiledRule<GroupRuntime>;

impl ListenerRuntime {
    /// The target group a tcp or tls listener's next connection goes to (its
    /// default action; a weighted forward splits connections among groups).
    pub fn tcp_group(&self) -> Option<Arc<GroupRuntime>> {
        match self.routes.default_action() {
            RouteAction::Forward(f) => Some(
                f.pick(&http::HeaderMap::new(), &self.cookie_keys)
                    .choice
                    .group
                    .clone(),
            ),
            _ => None,
        }
    }

    /// `http` or `https`: what `#{protocol}` and X-Forwarded-Proto say.
    pub fn protocol_name(&self) -> &'static str {
        if self.protocol == ListenerProtocol::Https {
            "https"
        } else {
            "http"
        }
    }

    /// The X-Forwarded-* values for a client at `peer` on local `port`.
    pub fn forwarded_for(&self, peer: SocketAddr, port: &HeaderValue) -> ForwardedFor {
        let ip = peer.ip().to_canonical().to_string();
        ForwardedFor {
            client_ip: HeaderValue::from_str(&ip).expect("an IP address is a valid header value"),
            proto: self.forwarded_proto.clone(),
            port: port.clone(),
        }
    }
}

/// Concurrent HTTP/2 streams per client connection.
const H2_MAX_CONCURRENT_STREAMS: u32 = 128;

/// The hyper server settings of a listener, built once per snapshot: HTTP/1
/// with HTTP/2 by its preface (used only where the listener allows HTTP/2).
pub fn http_builder(listener: &Listener) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // Our ClientIo runs the head deadline (from the first byte, answering 408).
        .header_read_timeout(None)
        .max_buf_size(listener.max_header_bytes)
        // (A client that half-closes after its request still gets its answer:
        // ClientIo holds its end back while the request is in flight.)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(listener.max_header_bytes as u32)
        .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS);
    builder
}

/// The same HTTP/1 settings as [`http_builder`], HTTP/1 alone: for listeners
/// without `http2`, and for connections that carried HTTP/1 requests already
/// (RFC 9113 §3.4: only a connection's first bytes may be the HTTP/2
/// preface). hyper-util's `serve_connection_with_upgrades` reads the preface
/// whatever its `http1_only` says, so these connections use hyper's own
/// HTTP/1 server.
pub fn http1_builder(listener: &Listener) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_buf_size(listener.max_header_bytes)
        .keep_alive(true);
    builder
}
