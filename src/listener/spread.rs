//! Spreading a listener's connections evenly over the workers.
//!
//! SO_REUSEPORT hashes each new connection to one worker's socket by its
//! addresses. Over many short connections that evens out; over a handful of
//! long-lived ones (ten HTTP/2 clients, a pool of keep-alive connections) it
//! often does not: a 7/3 split leaves one core idle while the other saturates
//! (measured in docs/performance.md). So each accept loop, after accepting,
//! compares the connections it holds with its siblings': when another worker
//! of the same listener holds at least [`MARGIN`] fewer, the new connection is
//! handed to that worker's accept loop before a byte of it is read, and is
//! served there from then on. HAProxy does the same (each accepted connection
//! goes to the least-loaded thread); nginx leaves it to the kernel.
//! `[global] spread_connections = false` keeps every connection where the
//! kernel put it.

use super::accept::OpenStreams;
use super::budget::BudgetGuard;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::mpsc;

/// A worker hands a connection on to one holding at least this many fewer:
/// with one fewer, handing over leaves both even where keeping it would leave
/// them two apart.
pub const MARGIN: usize = 1;

/// A connection accepted by one worker for another to serve, with its place
/// among the receiver's open connections already taken (so a burst of accepts
/// sees it counted) and its share of the descriptor budget.
pub(super) struct Handed {
    pub(super) stream: std::net::TcpStream,
    pub(super) peer: SocketAddr,
    pub(super) open: super::accept::StreamGuard,
    pub(super) share: Option<BudgetGuard>,
}

/// What one accept loop knows of its listener's other loops.
pub(super) struct Spread {
    index: usize,
    /// More than one loop, and spreading not switched off.
    spreads: bool,
    open: Arc<[Arc<OpenStreams>]>,
    senders: Arc<[mpsc::UnboundedSender<Handed>]>,
    /// Connections siblings handed to this loop.
    pub(super) handed: mpsc::UnboundedReceiver<Handed>,
}

impl Spread {
    /// One [`Spread`] per accept loop of a listener with `loops` sockets.
    pub fn for_loops(loops: usize, spread: bool) -> Vec<Spread> {
        let open: Arc<[Arc<OpenStreams>]> = (0..loops).map(|_| Arc::default()).collect();
        let (senders, receivers): (Vec<_>, Vec<_>) =
            (0..loops).map(|_| mpsc::unbounded_channel()).unzip();
        let senders: Arc<[_]> = senders.into();
        receivers
            .into_iter()
            .enumerate()
            .map(|(index, handed)| Spread {
                index,
                spreads: loops > 1 && spread,
                open: open.clone(),
                senders: senders.clone(),
                handed,
            })
            .collect()
    }

    /// This loop's open connections (its drain waits on them).
    pub fn open(&self) -> &Arc<OpenStreams> {
        &self.open[self.index]
    }

    /// The sibling to hand a new connection to, if one holds at least
    /// [`MARGIN`] fewer connections than this loop (the fewest, if several).
    pub fn lighter(&self) -> Option<usize> {
        if !self.spreads {
            return None;
        }
        let mine = self.open[self.index].count.load(Ordering::Relaxed);
        let (least, count) = self
            .open
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != self.index)
            .map(|(i, o)| (i, o.count.load(Ordering::Relaxed)))
            .min_by_key(|(_, c)| *c)?;
        (count + MARGIN <= mine).then_some(least)
    }

    /// Hands `stream` to loop `to`. Gives it back, to be served here, if that
    /// loop has stopped taking connections.
    pub fn hand(
        &self,
        to: usize,
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
        share: Option<BudgetGuard>,
    ) -> Option<(tokio::net::TcpStream, Option<BudgetGuard>)> {
        // Its place is taken at once, so the next accept here counts it.
        let open = self.open[to].enter();
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                // Deregistering failed and closed it; nothing was read yet.
                tracing::debug!(%peer, "cannot hand a connection to another worker: {e}");
                return None;
            }
        };
        let handed = Handed {
            stream,
            peer,
            open,
            share,
        };
        let back = self.senders[to].send(handed).err()?.0;
        match tokio::net::TcpStream::from_std(back.stream) {
            Ok(s) => Some((s, back.share)),
            Err(e) => {
                tracing::debug!(%peer, "cannot take back a connection: {e}");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    fn open(s: &Spread) -> usize {
        s.open().count.load(Ordering::Relaxed)
    }

    /// A loopback connection: the client's end, and the accepted end with its peer.
    async fn connection(socket: &TcpListener) -> (TcpStream, TcpStream, SocketAddr) {
        let client = TcpStream::connect(socket.local_addr().unwrap())
            .await
            .unwrap();
        let (server, peer) = socket.accept().await.unwrap();
        (client, server, peer)
    }

    #[tokio::test]
    async fn a_connection_goes_to_the_loop_with_fewer_and_comes_back_from_a_stopped_one() {
        let [a, mut b]: [Spread; 2] = Spread::for_loops(2, true).try_into().ok().unwrap();
        assert_eq!(a.lighter(), None, "even: stays");
        let _held = a.open().enter();
        assert_eq!(a.lighter(), Some(1));
        assert_eq!(b.lighter(), None, "the lighter loop keeps its own");

        let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (mut client, server, peer) = connection(&socket).await;
        client.write_all(b"first bytes").await.unwrap();
        assert!(a.hand(1, server, peer, None).is_none(), "handed over");
        assert_eq!(open(&b), 1, "counted at the receiver at once");
        assert_eq!(a.lighter(), None);
        let handed = b.handed.recv().await.unwrap();
        assert_eq!(handed.peer, peer);
        let mut served = TcpStream::from_std(handed.stream).unwrap();
        let mut got = [0u8; 11];
        served.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"first bytes", "nothing read before the hand-over");
        served.write_all(b"answer").await.unwrap();
        let mut answer = [0u8; 6];
        client.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"answer");
        drop(handed.open);
        assert_eq!(open(&b), 0);

        // A loop that stopped taking connections gives them back, uncounted.
        b.handed.close();
        let (mut client, server, peer) = connection(&socket).await;
        let (mut back, _) = a.hand(1, server, peer, None).expect("given back");
        assert_eq!(open(&b), 0);
        client.write_all(b"still here").await.unwrap();
        let mut got = [0u8; 10];
        back.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"still here");
    }

    #[test]
    fn a_single_loop_never_hands_over() {
        let [only]: [Spread; 1] = Spread::for_loops(1, true).try_into().ok().unwrap();
        let _held = [only.open().enter(), only.open().enter()];
        assert_eq!(only.lighter(), None);
    }
}
