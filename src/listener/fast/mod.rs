//! The HTTP/1 fast path's client connection: HTTP/1.1 keep-alive requests
//! without a body or with a Content-Length one (from plain or TLS clients) are
//! read in place, routed, and forwarded with their head rewritten straight
//! into the target's buffer, on plain target connections of our own pool;
//! responses are relayed as they arrive. Per request that is ~13,000
//! instructions and no allocation, against ~41,000 and 10 through hyper's
//! header maps, dispatchers and body channels (see docs/performance.md). The
//! bytes themselves — heads, chunked framing, the target's head — are the
//! wire layer's ([`crate::wire`]), shared with hyper's path.
//!
//! Anything else on the connection — a chunked body, an upgrade, HTTP/2's preface,
//! a head to refuse, a route that redirects, answers itself or is sticky, a
//! TLS target group — hands the connection to hyper's path
//! ([`crate::listener`]) with the bytes read so far, from that request on.

mod conn;
mod rewind;

use crate::listener::accept::Held;
use crate::listener::http::ClientStream;
use crate::listener::park::ParkingLot;
use crate::proxy::client::ClientConn;
use crate::runtime::listener::ListenerRuntime;
use std::sync::Arc;

/// Serves a client connection of an http or https listener (decrypted), starting
/// on the fast path; the arguments are those of the hyper path it may hand over
/// to. Called by the dispatch ([`crate::listener::dispatch`]) only.
pub async fn serve<S: ClientStream>(
    mut stream: S,
    conn: Arc<ClientConn>,
    runtime: Arc<ListenerRuntime>,
    mut finish: tokio::sync::watch::Receiver<bool>,
    lot: Option<Arc<ParkingLot>>,
    held: Held,
    first: bool,
) {
    let lot = lot.filter(|_| stream.is_parkable());
    let mut buf = Vec::new();
    let (end, served) = {
        let mut session = conn::Session::new(
            &mut stream,
            &conn,
            &mut finish,
            lot.is_some(),
            runtime.metrics.clone(),
        );
        let end = Box::pin(session.run(&mut buf)).await;
        (end, session.served)
    };
    match end {
        conn::End::Closed => {}
        conn::End::Park(idle_left) => {
            if let (Some(lot), Ok(socket)) = (lot, stream.into_parkable()) {
                drop(buf);
                crate::trim::freed(20);
                lot.park(socket, &conn, idle_left, held);
            }
        }
        conn::End::Hyper => {
            let stream = rewind::Rewind::new(stream, buf);
            // After HTTP/1.1 requests, hyper serves HTTP/1 only (no preface).
            let first = first && served == 0;
            Box::pin(crate::listener::http::serve(
                stream, conn, runtime, finish, lot, held, first,
            ))
            .await;
        }
    }
}
