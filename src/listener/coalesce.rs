//! HTTP/2 output held back for a few turns of the runtime, so that the
//! responses finished meanwhile leave in one socket write (and, over TLS, one
//! record) instead of one each.
//!
//! h2 ends every DATA frame it holds by reference with a flush, so on a busy
//! connection each response was its own `writev`: one per request, where
//! HAProxy writes about one per three. A flush with bytes waiting is put off:
//! the connection's task returns `Pending` and is woken once the runtime has
//! polled its sockets again, so the streams whose target answered meanwhile
//! add their frames first. It is put off again while a turn adds output, up
//! to [`MAX_PUT_OFF_TURNS`] turns; a lone response waits one turn (no timer,
//! just one pass over the ready tasks and a poll of the sockets).

use std::io::{self, IoSlice};
use std::task::{Context, Poll, ready};

/// Bytes held at most; a write of at least half this with nothing held goes
/// straight through (bulk DATA frames gain nothing from a copy).
const COALESCE_LIMIT: usize = 64 * 1024;
/// Turns of the runtime a flush waits at most while each adds output: with
/// one, a connection of ten busy streams wrote about one response in two
/// (HAProxy: one in three); with up to four, one in four (docs/performance.md).
pub const MAX_PUT_OFF_TURNS: u8 = 4;
/// A buffer grown past this is given back once written.
const KEEP_CAPACITY: usize = 16 * 1024;

/// What the writer does with a write handed to [`WriteCoalescer::take`].
#[derive(Debug, PartialEq, Eq)]
pub enum Take {
    /// Held: this many bytes of it.
    Took(usize),
    /// Write what is held first, then offer the write again.
    Drain,
    /// Write it to the socket directly: it is large and nothing is held.
    Through,
}

/// Output waiting for the flush that writes it; see the module comment.
#[derive(Debug, Default)]
pub struct WriteCoalescer {
    out: Vec<u8>,
    /// How much of `out` is already written.
    pos: usize,
    /// Turns the current flush has been put off.
    turns: u8,
    /// What `out` held when it was last put off.
    held_at_put_off: usize,
}

impl WriteCoalescer {
    /// Nothing is waiting to be written.
    pub fn is_empty(&self) -> bool {
        self.pos == self.out.len()
    }

    /// Takes what fits of `bufs`, or says what must happen first.
    pub fn take(&mut self, bufs: &[IoSlice<'_>]) -> Take {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let large = total >= COALESCE_LIMIT / 2;
        if self.out.len() >= COALESCE_LIMIT || (large && !self.is_empty()) {
            return Take::Drain;
        }
        if large {
            return Take::Through;
        }
        let room = COALESCE_LIMIT - self.out.len();
        let mut taken = 0;
        for buf in bufs {
            let n = buf.len().min(room - taken);
            self.out.extend_from_slice(&buf[..n]);
            taken += n;
            if taken == room {
                break;
            }
        }
        Take::Took(taken)
    }

    /// At a flush: `true` when it is put off (the task is woken to come back
    /// once the runtime has polled its sockets again), `false` when the caller
    /// drains now: nothing waits, the last turn added nothing, or the flush
    /// was put off [`MAX_PUT_OFF_TURNS`] times.
    pub fn put_off_flush(&mut self, cx: &mut Context<'_>) -> bool {
        let quiet = self.turns > 0 && self.out.len() == self.held_at_put_off;
        if self.is_empty() || quiet || self.turns >= MAX_PUT_OFF_TURNS {
            return false;
        }
        self.turns += 1;
        self.held_at_put_off = self.out.len();
        wake_after_io(cx);
        true
    }

    /// Writes everything held with `write`, resuming where a `Pending` left off.
    pub fn drain(
        &mut self,
        cx: &mut Context<'_>,
        mut write: impl FnMut(&mut Context<'_>, &[u8]) -> Poll<io::Result<usize>>,
    ) -> Poll<io::Result<()>> {
        while !self.is_empty() {
            match ready!(write(cx, &self.out[self.pos..]))? {
                0 => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                n => self.pos += n,
            }
        }
        self.out.clear();
        self.pos = 0;
        self.turns = 0;
        if self.out.capacity() > KEEP_CAPACITY {
            self.out = Vec::new();
        }
        Poll::Ready(Ok(()))
    }
}

/// Wakes the task once the runtime has polled its sockets again (tokio's
/// `yield_now` defers the wake that far; outside a runtime it wakes at once):
/// the streams whose target answered meanwhile add their frames first.
fn wake_after_io(cx: &mut Context<'_>) {
    let mut yielded = std::pin::pin!(tokio::task::yield_now());
    let _ = std::future::Future::poll(yielded.as_mut(), cx);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Wake, Waker};

    struct CountWakes(AtomicUsize);
    impl Wake for CountWakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn waker() -> (Arc<CountWakes>, Waker) {
        let count = Arc::new(CountWakes(AtomicUsize::new(0)));
        (count.clone(), Waker::from(count))
    }

    /// A socket that takes at most `per_call` bytes a write and records each write.
    struct Socket {
        writes: Vec<Vec<u8>>,
        per_call: usize,
        pending_once: bool,
    }

    impl Socket {
        fn new(per_call: usize) -> Self {
            Socket {
                writes: Vec::new(),
                per_call,
                pending_once: false,
            }
        }
        fn write(&mut self, data: &[u8]) -> Poll<io::Result<usize>> {
            if std::mem::take(&mut self.pending_once) {
                return Poll::Pending;
            }
            let n = data.len().min(self.per_call);
            self.writes.push(data[..n].to_vec());
            Poll::Ready(Ok(n))
        }
        fn all(&self) -> Vec<u8> {
            self.writes.concat()
        }
    }

    #[test]
    fn responses_of_one_turn_leave_in_one_write() {
        let (wakes, waker) = waker();
        let mut cx = Context::from_waker(&waker);
        let mut c = WriteCoalescer::default();
        let mut socket = Socket::new(usize::MAX);
        // First response: held, and its flush put off with a wake to come back.
        assert_eq!(
            c.take(&[IoSlice::new(b"head1"), IoSlice::new(b"body1")]),
            Take::Took(10)
        );
        assert!(c.put_off_flush(&mut cx));
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        // A second response arrived meanwhile: put off again; a turn that adds
        // nothing writes them all.
        assert_eq!(c.take(&[IoSlice::new(b"head2body2")]), Take::Took(10));
        assert!(c.put_off_flush(&mut cx));
        assert_eq!(wakes.0.load(Ordering::SeqCst), 2);
        assert!(!c.put_off_flush(&mut cx));
        assert!(c.drain(&mut cx, |_, b| socket.write(b)).is_ready());
        assert_eq!(socket.writes, vec![b"head1body1head2body2".to_vec()]);
        assert!(c.is_empty());
        // The next response is put off again.
        assert_eq!(c.take(&[IoSlice::new(b"three")]), Take::Took(5));
        assert!(c.put_off_flush(&mut cx));
        assert_eq!(wakes.0.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn a_busy_connection_waits_a_bounded_number_of_turns() {
        let (wakes, waker) = waker();
        let mut cx = Context::from_waker(&waker);
        let mut c = WriteCoalescer::default();
        // Every turn adds a response: put off MAX_PUT_OFF_TURNS times, then written.
        for turn in 0..MAX_PUT_OFF_TURNS {
            assert_eq!(c.take(&[IoSlice::new(b"resp")]), Take::Took(4));
            assert!(c.put_off_flush(&mut cx), "turn {turn}");
        }
        assert_eq!(c.take(&[IoSlice::new(b"resp")]), Take::Took(4));
        assert!(!c.put_off_flush(&mut cx));
        assert_eq!(wakes.0.load(Ordering::SeqCst), MAX_PUT_OFF_TURNS as usize);
        let mut socket = Socket::new(usize::MAX);
        assert!(c.drain(&mut cx, |_, b| socket.write(b)).is_ready());
        assert_eq!(socket.writes.len(), 1);
        assert_eq!(socket.all().len(), 4 * (MAX_PUT_OFF_TURNS as usize + 1));
    }

    #[test]
    fn a_flush_with_nothing_held_is_not_put_off() {
        let (wakes, waker) = waker();
        let mut cx = Context::from_waker(&waker);
        let mut c = WriteCoalescer::default();
        assert!(!c.put_off_flush(&mut cx));
        assert_eq!(wakes.0.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn large_writes_go_through_unless_bytes_wait() {
        let mut c = WriteCoalescer::default();
        let big = vec![b'b'; COALESCE_LIMIT / 2];
        assert_eq!(c.take(&[IoSlice::new(&big)]), Take::Through);
        assert_eq!(c.take(&[IoSlice::new(b"small")]), Take::Took(5));
        assert_eq!(c.take(&[IoSlice::new(&big)]), Take::Drain);
    }

    #[test]
    fn a_full_buffer_takes_what_fits_then_asks_for_a_drain() {
        let (_, waker) = waker();
        let mut cx = Context::from_waker(&waker);
        let mut c = WriteCoalescer::default();
        let piece = vec![b'p'; COALESCE_LIMIT / 2 - 1];
        assert_eq!(c.take(&[IoSlice::new(&piece)]), Take::Took(piece.len()));
        assert_eq!(c.take(&[IoSlice::new(&piece)]), Take::Took(piece.len()));
        // 2 bytes of room left: a write of 5 is taken in part.
        assert_eq!(
            c.take(&[IoSlice::new(b"abc"), IoSlice::new(b"de")]),
            Take::Took(2)
        );
        assert_eq!(c.take(&[IoSlice::new(b"cde")]), Take::Drain);
        let mut socket = Socket::new(usize::MAX);
        assert!(c.drain(&mut cx, |_, b| socket.write(b)).is_ready());
        assert_eq!(socket.all().len(), COALESCE_LIMIT);
        assert!(socket.all().ends_with(b"ab"));
    }

    #[test]
    fn a_drain_resumes_where_the_socket_stopped() {
        let (_, waker) = waker();
        let mut cx = Context::from_waker(&waker);
        let mut c = WriteCoalescer::default();
        assert_eq!(c.take(&[IoSlice::new(b"0123456789")]), Take::Took(10));
        let mut socket = Socket::new(4);
        // 4 bytes go, then the socket is full.
        let mut calls = 0;
        let polled = c.drain(&mut cx, |_, b| {
            calls += 1;
            if calls == 2 {
                socket.pending_once = true;
            }
            socket.write(b)
        });
        assert!(polled.is_pending());
        assert!(!c.is_empty());
        assert!(c.drain(&mut cx, |_, b| socket.write(b)).is_ready());
        assert_eq!(socket.all(), b"0123456789");
        assert!(c.is_empty());
    }

    #[test]
    fn a_socket_that_takes_nothing_is_an_error() {
        let (_, waker) = waker();
        let mut cx = Context::from_waker(&waker);
        let mut c = WriteCoalescer::default();
        c.take(&[IoSlice::new(b"x")]);
        match c.drain(&mut cx, |_, _| Poll::Ready(Ok(0))) {
            Poll::Ready(Err(e)) => assert_eq!(e.kind(), io::ErrorKind::WriteZero),
            other => panic!("{other:?}"),
        }
    }
}
