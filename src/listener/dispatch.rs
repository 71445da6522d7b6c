//! Which stack serves what, decided in one place: the listener decides, and
//! passes its decision down as data ([`crate::proxy::client::ClientConn`]'s
//! `fast_path`), so nothing below reads a switch of its own.
//!
//! - An HTTP/1.1 connection of an http or https listener (h2 by ALPN
//!   excepted) starts on the fast path ([`super::fast`]) and moves to hyper's
//!   server ([`super::http`]) at its first request the fast path does not
//!   serve; HTTP/2 and every TLS connection that chose h2 are hyper's from the
//!   start. A connection that carried HTTP/1 requests is HTTP/1 only after.
//! - A body-less request hyper's server took goes to a plain `http` group on
//!   the fast path's raw target sockets ([`crate::proxy::raw`]) when the fast
//!   path is on; everything else goes through hyper's client.
//! - tcp and tls listeners are L4 ([`crate::proxy::tcp`]).
//!
//! Two environment switches exist for comparison and for running the test
//! suite in both positions (both read once, at the first connection):
//! `EDGELB_HTTP1_FAST_PATH=off` (hyper's server and client for everything)
//! and `EDGELB_SPREAD=off` (connections stay on the worker the kernel chose).

use std::sync::OnceLock;

/// Whether the HTTP/1 fast path (and its raw target sockets) serve.
pub fn fast_path() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("EDGELB_HTTP1_FAST_PATH").map_or(true, |v| v != "off"))
}

/// Whether new connections are spread by count over the workers
/// ([`super::spread`]).
pub fn spread() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("EDGELB_SPREAD").map_or(true, |v| v != "off"))
}
