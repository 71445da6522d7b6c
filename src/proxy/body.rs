//! The body of every response edgelb sends to a client.

use crate::proxy::client::ClientConn;
use crate::proxy::pool::TargetConn;
use crate::proxy::raw::{RawBody, RawBodyError};
use crate::proxy::record::RequestRecord;
use crate::proxy::sent::{SendProgress, Waiting};
use crate::proxy::stall::StallTimer;
use crate::runtime::target::{GroupRuntime, OutstandingGuard};
use atomic_waker::AtomicWaker;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Requests in flight on one client connection, and the reader to wake when
/// the last one finishes (its idle timer starts then).
#[derive(Default)]
pub struct InFlightCount {
    count: AtomicU32,
    idle_waker: AtomicWaker,
}

impl InFlightCount {
    /// Requests whose responses are not finished.
    #[inline]
    pub fn get(&self) -> u32 {
        self.count.load(Ordering::Acquire)
    }

    /// The reader registers here while the connection is busy.
    pub fn register(&self, waker: &std::task::Waker) {
        self.idle_waker.register(waker);
    }
}

/// Marks a request as in flight on its client connection until the response
/// body is done (dropped), so the connection's idle timer knows it is busy.
pub struct InFlight(Arc<InFlightCount>);

impl InFlight {
    /// Counts one more request on `counter`.
    pub fn new(counter: &Arc<InFlightCount>) -> Self {
        counter.count.fetch_add(1, Ordering::AcqRel);
        InFlight(counter.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle_waker.wake();
        }
    }
}

/// What a streamed response gives back at its end: the connection to the
/// target's pool, the target's outstanding count; and on failure, a failed
/// passive health check of the target.
pub struct Release {
    pub conn: TargetConn,
    /// The connection may carry another request after this response.
    pub reusable: bool,
    pub outstanding: OutstandingGuard,
    /// When the request was sent (the connection's idle age counts from there).
    pub sent_at: Instant,
    pub group: Arc<GroupRuntime>,
    pub index: usize,
}

/// A target's response body, streamed; the connection it comes on is driven
/// from here, and at the body's end it goes back to the target's pool.
pub struct TargetBody {
    body: Incoming,
    release: Option<Release>,
    /// Cuts off a body that makes no progress for the listener's idle timeout.
    stall: StallTimer,
}

impl TargetBody {
    fn finish(&mut self) {
        if let Some(r) = self.release.take()
            && r.reusable
        {
            r.outstanding.shared().pool.put(r.conn, r.sent_at);
        }
    }

    /// The target broke off its body: the connection is dropped (closed) and
    /// the failure counts as a failed health check.
    fn fail(&mut self) {
        if let Some(r) = self.release.take() {
            crate::proxy::attempt::body_broken(&r.group, r.index, &"response body cut off");
        }
    }
}

/// Why a response body ended early.
#[derive(Debug)]
pub enum ResponseBodyError {
    /// The target's side failed (reset, malformed chunking, closed early).
    Target(hyper::Error),
    /// No byte from the target for the listener's idle timeout.
    Stalled,
    /// A body read off a target's socket by [`crate::proxy::raw`] ended early.
    Raw(RawBodyError),
}

impl std::fmt::Display for ResponseBodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResponseBodyError::Target(e) => write!(f, "target response body: {e}"),
            ResponseBodyError::Stalled => f.write_str("target response body stalled"),
            ResponseBodyError::Raw(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ResponseBodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ResponseBodyError::Target(e) => Some(e),
            ResponseBodyError::Stalled | ResponseBodyError::Raw(_) => None,
        }
    }
}

/// A response body: streamed from a target, or a small one edgelb wrote.
pub struct ProxyBody {
    kind: Kind,
    _in_flight: Option<InFlight>,
    /// The access-log record, written when the body is done (dropped).
    record: Option<Box<RequestRecord>>,
}

enum Kind {
    Full(Option<Bytes>),
    Target(TargetBody),
    Raw(RawBody),
}

impl ProxyBody {
    /// Attaches the request's access-log record (written when the body ends).
    pub fn set_record(&mut self, record: Option<Box<RequestRecord>>) {
        self.record = record;
    }

    /// A complete body (error pages, fixed responses, redirects).
    pub fn full(data: Bytes, in_flight: Option<InFlight>) -> Self {
        let data = (!data.is_empty()).then_some(data);
        ProxyBody {
            kind: Kind::Full(data),
            _in_flight: in_flight,
            record: None,
        }
    }

    /// A target's body; `release` returns the connection to the pool when the
    /// body was read to its end (and only then: a body cut short closes it).
    /// A body that makes no progress for `stall_timeout` is cut off.
    pub fn target(
        body: Incoming,
        release: Option<Release>,
        stall_timeout: Duration,
        in_flight: Option<InFlight>,
    ) -> Self {
        let mut t = TargetBody {
            body,
            release,
            stall: StallTimer::new(stall_timeout),
        };
        if t.body.is_end_stream() {
            t.finish();
        }
        ProxyBody {
            kind: Kind::Target(t),
            _in_flight: in_flight,
            record: None,
        }
    }
}

impl ProxyBody {
    /// A target's body read off its socket by [`crate::proxy::raw`].
    pub fn raw(body: RawBody, in_flight: Option<InFlight>) -> Self {
        ProxyBody {
            kind: Kind::Raw(body),
            _in_flight: in_flight,
            record: None,
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = ResponseBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ResponseBodyError>>> {
        let this = self.get_mut();
        let polled = match &mut this.kind {
            Kind::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Kind::Target(t) => {
                if let Some(r) = &mut t.release {
                    r.conn.poll_drive(cx);
                }
                match Pin::new(&mut t.body).poll_frame(cx) {
                    Poll::Ready(None) => {
                        t.finish();
                        Poll::Ready(None)
                    }
                    Poll::Ready(Some(Ok(frame))) => {
                        t.stall.progress();
                        if t.body.is_end_stream() {
                            t.finish();
                        }
                        Poll::Ready(Some(Ok(frame)))
                    }
                    Poll::Ready(Some(Err(e))) => {
                        t.fail();
                        Poll::Ready(Some(Err(ResponseBodyError::Target(e))))
                    }
                    Poll::Pending => match t.stall.poll_expired(cx) {
                        Poll::Ready(()) => {
                            t.fail();
                            Poll::Ready(Some(Err(ResponseBodyError::Stalled)))
                        }
                        Poll::Pending => Poll::Pending,
                    },
                }
            }
            Kind::Raw(b) => match b.poll_data(cx) {
                Poll::Ready(Some(Ok(data))) => Poll::Ready(Some(Ok(Frame::data(data)))),
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(ResponseBodyError::Raw(e)))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
        };
        if let (Some(record), Poll::Ready(Some(Ok(frame)))) = (&mut this.record, &polled)
            && let Some(data) = frame.data_ref()
        {
            record.add_sent(data.len());
        }
        polled
    }
    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(data) => data.is_none(),
            Kind::Target(t) => t.body.is_end_stream(),
            Kind::Raw(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            Kind::Target(t) => t.body.size_hint(),
            Kind::Raw(b) => b
                .exact_len()
                .map_or_else(SizeHint::new, SizeHint::with_exact),
        }
    }
}

/// The body of a request sent to a target: the client's, streamed (and cut
/// off past the listener's `max_body_bytes`), or none (a body-less request
/// replayed on another target).
pub enum RequestBody {
    Client {
        body: Incoming,
        /// Bytes the body may still carry.
        left: u64,
        /// Fails a body the client stops sending for the idle timeout.
        stall: StallTimer,
        /// Which side the body waits on, for `request_timeout` (a body that
        /// was complete with its head has none).
        progress: Option<Arc<SendProgress>>,
        framing: BodyFraming,
    },
    Empty,
}

/// The shadow framing reader's verdict on the request a body belongs to
/// ([`crate::listener::framing`]): a body it could not follow (a bare LF in
/// chunked framing or its trailers, say) fails at its end instead of being
/// passed on as hyper read it.
pub struct BodyFraming {
    conn: Arc<ClientConn>,
    index: u64,
}

impl BodyFraming {
    /// For request `index` (0-based, in order of arrival) of `conn`.
    pub fn new(conn: &Arc<ClientConn>, index: u64) -> Self {
        BodyFraming {
            conn: conn.clone(),
            index,
        }
    }

    fn lost(&self) -> bool {
        self.conn.is_ambiguous(self.index)
    }
}

impl RequestBody {
    /// The client's body, limited to `limit` bytes (`u64::MAX`: no limit) and
    /// failed when it makes no progress for `stall_timeout`.
    /// `framing` fails it at its end if the framing reader could not follow it.
    pub fn client(
        body: Incoming,
        limit: u64,
        stall_timeout: Duration,
        framing: BodyFraming,
    ) -> Self {
        let progress = (!body.is_end_stream()).then(Arc::default);
        RequestBody::Client {
            body,
            left: limit,
            stall: StallTimer::new(stall_timeout),
            progress,
            framing,
        }
    }

    /// Where this body stands on its way to the target (`None`: it has no
    /// body to stream, the target's clock starts with the head).
    pub fn progress(&self) -> Option<Arc<SendProgress>> {
        match self {
            RequestBody::Client { progress, .. } => progress.clone(),
            RequestBody::Empty => None,
        }
    }
}

/// Why a request body stopped before its end; tells a client's failure from
/// a target's when the exchange with the target fails.
#[derive(Debug)]
pub enum ClientBodyError {
    /// Longer than the listener's `max_body_bytes` (413).
    TooLarge,
    /// Nothing of it arrived for the listener's idle timeout (408).
    Stalled,
    /// Its chunked framing or trailer section was not one every parser reads
    /// the same way (400).
    Framing,
    /// The client's side broke off (reset, timeout, malformed chunking).
    Client(hyper::Error),
}

impl std::fmt::Display for ClientBodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientBodyError::TooLarge => f.write_str("request body larger than max_body_bytes"),
            ClientBodyError::Stalled => f.write_str("request body stalled"),
            ClientBodyError::Framing => f.write_str("request body framing refused"),
            ClientBodyError::Client(e) => write!(f, "client request body: {e}"),
        }
    }
}

impl std::error::Error for ClientBodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientBodyError::TooLarge | ClientBodyError::Stalled | ClientBodyError::Framing => None,
            ClientBodyError::Client(e) => Some(e),
        }
    }
}

impl ClientBodyError {
    /// The client body error somewhere in `err`'s chain of causes, if any.
    pub fn find<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a ClientBodyError> {
        let mut cause = Some(err);
        while let Some(e) = cause {
            if let Some(found) = e.downcast_ref::<ClientBodyError>() {
                return Some(found);
            }
            cause = e.source();
        }
        None
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = ClientBodyError;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        match self.get_mut() {
            RequestBody::Client {
                body,
                left,
                stall,
                progress,
                framing,
            } => {
                let polled = match Pin::new(&mut *body).poll_frame(cx) {
                    Poll::Ready(polled) => polled,
                    Poll::Pending => {
                        if let Some(p) = progress {
                            p.set(Waiting::Client);
                        }
                        return match stall.poll_expired(cx) {
                            Poll::Ready(()) => Poll::Ready(Some(Err(ClientBodyError::Stalled))),
                            Poll::Pending => Poll::Pending,
                        };
                    }
                };
                stall.progress();
                // The body's end (or its trailers) is where the framing reader's
                // doubt about it shows: its bytes have all been read by then.
                let at_end = polled.as_ref().is_none_or(|f| {
                    f.as_ref().map_or(true, |f| !f.is_data()) || body.is_end_stream()
                });
                if at_end && framing.lost() {
                    return Poll::Ready(Some(Err(ClientBodyError::Framing)));
                }
                match polled {
                    Some(Ok(frame)) => {
                        if let Some(data) = frame.data_ref() {
                            let n = data.len() as u64;
                            if n > *left {
                                return Poll::Ready(Some(Err(ClientBodyError::TooLarge)));
                            }
                            *left -= n;
                        }
                        if let Some(p) = progress {
                            p.set(if body.is_end_stream() {
                                Waiting::Done
                            } else {
                                Waiting::Target
                            });
                        }
                        Poll::Ready(Some(Ok(frame)))
                    }
                    Some(Err(e)) => Poll::Ready(Some(Err(ClientBodyError::Client(e)))),
                    None => {
                        if let Some(p) = progress {
                            p.set(Waiting::Done);
                        }
                        Poll::Ready(None)
                    }
                }
            }
            RequestBody::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Client { body, .. } => body.is_end_stream(),
            RequestBody::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Client { body, .. } => body.size_hint(),
            RequestBody::Empty => SizeHint::with_exact(0),
        }
    }
}
