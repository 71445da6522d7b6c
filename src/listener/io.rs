//! The client side of a connection as hyper reads it, with the listener's
//! timers: the request-head deadline (408) and the idle keep-alive timeout, and
//! the processed-bytes counters.

use crate::listener::coalesce::{Take, WriteCoalescer};
use crate::listener::framing::RequestFraming;
use crate::listener::h2_watch::H2FloodWatch;
use crate::proxy::client::ClientConn;
use crate::telemetry::metrics::ListenerMetrics;
use crate::upstream::stall::StallTimer;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// What a client whose request head is late gets before the connection closes.
pub(crate) const REQUEST_TIMEOUT_RESPONSE: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 20\r\n\r\n408 Request Timeout\n";
const H2_PREFACE_START: &[u8] = b"PRI ";

/// Where the connection is between requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the first byte of a request: the idle timeout runs.
    Idle,
    /// Part of a request head has arrived: the head deadline runs.
    Head,
    /// A request is being served: no timer of ours runs.
    Busy,
}

const PRESENT: &str = "the stream is only taken out on drop";

/// What parking a connection frees (hyper's buffers and state), roughly.
const PARKING_FREES_KIB: u64 = 16;

/// Where a parked connection's stream goes when hyper lets go of it, with
/// what is left of its idle timeout.
pub type ParkSlot<S> = Arc<std::sync::Mutex<Option<(S, Duration)>>>;

/// Wraps a client stream; hyper reads and writes through it.
pub struct ClientIo<S> {
    /// Always present until drop (then maybe handed to `park`).
    inner: Option<S>,
    /// An HTTP/1 connection idle for `park_after` is parked: the reader reports
    /// end of stream, hyper ends the connection quietly and frees its buffers,
    /// and the stream goes into the slot to wait for its next request at the
    /// cost of a silent connection.
    park: Option<(ParkSlot<S>, Duration)>,
    parked: bool,
    /// When the idle timeout of the current idle period ends.
    idle_deadline: Instant,
    /// The timer runs to the park deadline, not the idle one.
    park_timer: bool,
    conn: Arc<ClientConn>,
    phase: Phase,
    timer: Pin<Box<Sleep>>,
    idle_timeout: Duration,
    header_read_timeout: Duration,
    /// Bytes of the HTTP/2 preface seen so far; `None` once the protocol is known.
    preface_seen: Option<usize>,
    is_h2: bool,
    /// Follows HTTP/1 request framing to spot ambiguous heads; `None` on HTTP/2
    /// or once it stops following.
    framing: Option<RequestFraming>,
    /// Counts HTTP/2 control frames; made once the preface is seen.
    h2_watch: Option<H2FloodWatch>,
    /// Fails the connection when the client stops reading for the idle timeout.
    write_stall: StallTimer,
    bytes_in: u64,
    bytes_out: u64,
    metrics: ListenerMetrics,
    /// HTTP/2 output held for one turn of the scheduler (see [`coalesce`]).
    ///
    /// [`coalesce`]: crate::listener::coalesce
    coalescer: WriteCoalescer,
    /// The client ended its side while a request was in flight: the end is
    /// told to hyper once no request is (a client that half-closes after its
    /// request still gets its answer, as on the fast path; hyper's own
    /// `half_close` would stop the reads this wrapper's timers hang off).
    held_eof: bool,
}

impl<S> ClientIo<S> {
    /// Wraps `inner` for a connection of a listener with these timeouts.
    pub fn new(
        inner: S,
        conn: Arc<ClientConn>,
        idle_timeout: Duration,
        header_read_timeout: Duration,
        metrics: ListenerMetrics,
        park: Option<(ParkSlot<S>, Duration)>,
    ) -> Self {
        ClientIo {
            inner: Some(inner),
            park,
            parked: false,
            idle_deadline: Instant::now() + idle_timeout,
            park_timer: false,
            conn,
            phase: Phase::Idle,
            timer: Box::pin(tokio::time::sleep(idle_timeout)),
            idle_timeout,
            header_read_timeout,
            preface_seen: Some(0),
            is_h2: false,
            framing: Some(RequestFraming::default()),
            h2_watch: None,
            write_stall: StallTimer::new(idle_timeout),
            bytes_in: 0,
            bytes_out: 0,
            metrics,
            coalescer: WriteCoalescer::default(),
            held_eof: false,
        }
    }

    /// A request finished and none is in flight: the idle timeout starts, and
    /// the park timer before it on a parkable HTTP/1 connection.
    fn enter_idle(&mut self) {
        self.phase = Phase::Idle;
        let now = Instant::now();
        self.idle_deadline = now + self.idle_timeout;
        let park_at = match &self.park {
            Some((_, after)) if !self.is_h2 => {
                Some(now + *after).filter(|t| *t < self.idle_deadline)
            }
            _ => None,
        };
        self.park_timer = park_at.is_some();
        self.timer
            .as_mut()
            .reset(park_at.unwrap_or(self.idle_deadline));
    }

    fn flush_counters(&mut self) {
        crate::telemetry::metrics::flush_bytes(
            &self.metrics,
            &mut self.bytes_in,
            &mut self.bytes_out,
        );
    }

    fn note_protocol(&mut self, data: &[u8]) {
        if let Some(seen) = self.preface_seen {
            let want = &H2_PREFACE_START[seen..];
            let n = want.len().min(data.len());
            if data[..n] != want[..n] {
                self.preface_seen = None;
            } else if seen + n == H2_PREFACE_START.len() {
                self.preface_seen = None;
                self.is_h2 = true;
            } else {
                self.preface_seen = Some(seen + n);
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> ClientIo<S> {
    /// Best effort: the 408 response goes out if the socket takes it at once.
    fn send_request_timeout(&mut self, cx: &mut Context<'_>) {
        if let Poll::Ready(Ok(n)) =
            Pin::new(self.inner.as_mut().expect(PRESENT)).poll_write(cx, REQUEST_TIMEOUT_RESPONSE)
        {
            self.bytes_out += n as u64;
            let _ = Pin::new(self.inner.as_mut().expect(PRESENT)).poll_flush(cx);
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for ClientIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let busy = this.conn.in_flight.get() > 0 || this.conn.upgraded.load(Ordering::Relaxed);
        if busy {
            this.phase = Phase::Busy;
        } else if this.phase == Phase::Busy {
            this.enter_idle();
            this.flush_counters();
        }
        // A request in flight on a connection that has not switched protocols.
        let answering =
            this.conn.in_flight.get() > 0 && !this.conn.upgraded.load(Ordering::Relaxed);
        if this.held_eof {
            if answering {
                this.conn.in_flight.register(cx.waker());
                if this.conn.in_flight.get() > 0 {
                    return Poll::Pending;
                }
            }
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(this.inner.as_mut().expect(PRESENT)).poll_read(cx, buf) {
            Poll::Ready(Ok(()))
                if buf.filled().len() == before
                    && answering
                    && this.framing.as_ref().is_some_and(|f| f.between_requests()) =>
            {
                // The client's end after complete requests, while one is
                // answered: held back. (Mid-body, it is told at once: the
                // body fails and the client is gone.)
                this.held_eof = true;
                this.conn.in_flight.register(cx.waker());
                if this.conn.in_flight.get() > 0 {
                    return Poll::Pending;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len() - before;
                if n > 0 {
                    this.bytes_in += n as u64;
                    let preface_before = this.preface_seen;
                    if preface_before.is_some() {
                        this.note_protocol(&buf.filled()[before..]);
                    }
                    if this.is_h2 {
                        this.framing = None;
                        let watch = this
                            .h2_watch
                            .get_or_insert_with(|| H2FloodWatch::new(preface_before.unwrap_or(0)));
                        if let Err(flood) = watch.feed(&buf.filled()[before..]) {
                            tracing::debug!(peer = %this.conn.peer, "HTTP/2 connection closed: {flood}");
                            this.metrics.client_floods.inc();
                            return Poll::Ready(Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                flood,
                            )));
                        }
                    } else if this.framing.is_some() && this.conn.upgraded.load(Ordering::Relaxed) {
                        // The protocol really switched (a 101 went out): what
                        // follows is not HTTP.
                        this.framing = None;
                    } else if let Some(framing) = this.framing.as_mut() {
                        framing.feed(&buf.filled()[before..]);
                        if let Some(index) = framing.first_ambiguous() {
                            this.conn.ambiguous_from.store(index, Ordering::Relaxed);
                            this.framing = None;
                        } else if !framing.is_following() {
                            this.framing = None;
                        }
                    }
                    if this.phase == Phase::Idle {
                        if this.is_h2 {
                            this.timer
                                .as_mut()
                                .reset(Instant::now() + this.idle_timeout);
                        } else {
                            this.phase = Phase::Head;
                            this.timer
                                .as_mut()
                                .reset(Instant::now() + this.header_read_timeout);
                        }
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if this.phase != Phase::Busy {
                    ready!(this.timer.as_mut().poll(cx));
                    if this.phase == Phase::Idle && this.park_timer {
                        // End of stream for hyper; the stream itself lives on.
                        this.parked = true;
                        crate::trim::freed(PARKING_FREES_KIB);
                        return Poll::Ready(Ok(()));
                    }
                    if this.phase == Phase::Head {
                        tracing::debug!(peer = %this.conn.peer, "request head not complete within header_read_timeout");
                        this.send_request_timeout(cx);
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "request head timeout",
                        )));
                    }
                    // Idle for idle_timeout: end of stream, hyper closes quietly.
                    return Poll::Ready(Ok(()));
                }
                // Wake up when the last request finishes, to start the idle timer.
                this.conn.in_flight.register(cx.waker());
                if this.conn.in_flight.get() == 0 && !this.conn.upgraded.load(Ordering::Relaxed) {
                    cx.waker().wake_by_ref();
                }
                Poll::Pending
            }
        }
    }
}

impl<S> ClientIo<S> {
    /// Accounts for a write: bytes out and progress, or the stall deadline.
    fn wrote(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match polled {
            Poll::Ready(Ok(n)) => {
                self.write_stall.progress();
                self.bytes_out += n as u64;
                Poll::Ready(Ok(n))
            }
            Poll::Pending => self.write_pending(cx),
            failed => failed,
        }
    }

    /// What a write that could not go on means: `Pending`, or an error once
    /// the client has read nothing for the idle timeout.
    fn write_pending<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        match self.write_stall.poll_expired(cx) {
            Poll::Ready(()) => {
                tracing::debug!(peer = %self.conn.peer, "client stopped reading for idle_timeout");
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "client stopped reading",
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> ClientIo<S> {
    /// An HTTP/2 write: held in the coalescer, or written through.
    fn write_h2(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        loop {
            match self.coalescer.take(bufs) {
                Take::Took(n) => return Poll::Ready(Ok(n)),
                Take::Drain => ready!(self.drain_coalesced(cx))?,
                Take::Through => {
                    let polled =
                        Pin::new(self.inner.as_mut().expect(PRESENT)).poll_write_vectored(cx, bufs);
                    return self.wrote(cx, polled);
                }
            }
        }
    }

    /// Writes the held HTTP/2 output to the socket.
    fn drain_coalesced(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut coalescer = std::mem::take(&mut self.coalescer);
        let drained = coalescer.drain(cx, |cx, bytes| {
            let polled = Pin::new(self.inner.as_mut().expect(PRESENT)).poll_write(cx, bytes);
            self.wrote(cx, polled)
        });
        self.coalescer = coalescer;
        drained
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for ClientIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.is_h2 {
            return this.write_h2(cx, &[io::IoSlice::new(data)]);
        }
        let polled = Pin::new(this.inner.as_mut().expect(PRESENT)).poll_write(cx, data);
        this.wrote(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.is_h2 {
            return this.write_h2(cx, bufs);
        }
        let polled = Pin::new(this.inner.as_mut().expect(PRESENT)).poll_write_vectored(cx, bufs);
        this.wrote(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.is_h2 || self.inner.as_ref().is_some_and(|s| s.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.coalescer.is_empty() {
            if this.coalescer.put_off_flush(cx) {
                return Poll::Pending;
            }
            ready!(this.drain_coalesced(cx))?;
        }
        match Pin::new(this.inner.as_mut().expect(PRESENT)).poll_flush(cx) {
            Poll::Pending => this.write_pending(cx),
            done => done,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.parked {
            return Poll::Ready(Ok(()));
        }
        if !self.coalescer.is_empty() {
            ready!(self.drain_coalesced(cx))?;
        }
        Pin::new(self.inner.as_mut().expect(PRESENT)).poll_shutdown(cx)
    }
}

impl<S> Drop for ClientIo<S> {
    fn drop(&mut self) {
        self.flush_counters();
        if self.parked
            && let (Some((slot, _)), Some(stream)) = (&self.park, self.inner.take())
        {
            let left = self.idle_deadline.saturating_duration_since(Instant::now());
            if let Ok(mut slot) = slot.lock() {
                *slot = Some((stream, left));
            }
        }
    }
}
