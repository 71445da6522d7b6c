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
//! `[global] http1_fast_path = false` (read for each new connection, so a
//! reload switches it) gives everything to hyper's server and client: for
//! comparison, and the test suite runs in both positions.
//! `[global] spread_connections = false` (read when a listener is bound)
//! leaves connections on the worker the kernel chose ([`super::spread`]).

use super::accept::Held;
use super::http::ClientStream;
use super::park::ParkingLot;
use crate::proxy::client::ClientConn;
use crate::runtime::listener::ListenerRuntime;
use std::sync::Arc;

/// How an HTTP connection comes to the dispatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Just accepted (and decrypted): HTTP/1.1, or h2c's preface.
    Accepted,
    /// TLS chose h2 by ALPN.
    AlpnH2,
    /// Back from the parking lot after HTTP/1 requests: HTTP/1 only.
    Unparked,
}

/// Serves a connection of an http or https listener (decrypted) on the stack
/// the dispatch picks for it.
pub async fn serve_http<S: ClientStream>(
    stream: S,
    conn: Arc<ClientConn>,
    runtime: Arc<ListenerRuntime>,
    finish: tokio::sync::watch::Receiver<bool>,
    lot: Option<Arc<ParkingLot>>,
    held: Held,
    arrival: Arrival,
) {
    // Whether an HTTP/2 preface may still open the connection.
    let first = arrival != Arrival::Unparked;
    if arrival == Arrival::AlpnH2 || !conn.fast_path {
        super::http::serve(stream, conn, runtime, finish, lot, held, first).await;
    } else {
        super::fast::serve(stream, conn, runtime, finish, lot, held, first).await;
    }
}
