//! The body of every response edgelb sends to a client.

use crate::proxy::pool::TargetConn;
use crate::proxy::raw::{RawBody, RawBodyError};
use crate::proxy::record::RequestRecord;
use crate::runtime::target::{GroupRuntime, OutstandingGuard};
use crate::upstream::h2::{H2Body, StreamSlot};
pub use crate::upstream::request_body::{
    BodyFraming, ClientBodyError, FramingVerdict, RequestBody,
};
use crate::upstream::stall::StallTimer;
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
    /// An HTTP/2 target reset the stream or its connection failed.
    H2(h2::Error),
}

impl std::fmt::Display for ResponseBodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResponseBodyError::Target(e) => write!(f, "target response body: {e}"),
            ResponseBodyError::Stalled => f.write_str("target response body stalled"),
            ResponseBodyError::Raw(e) => e.fmt(f),
            ResponseBodyError::H2(e) => write!(f, "HTTP/2 target response body: {e}"),
        }
    }
}

impl std::error::Error for ResponseBodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ResponseBodyError::Target(e) => Some(e),
            ResponseBodyError::H2(e) => Some(e),
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
    H2(H2TargetBody),
}

/// What an HTTP/2 target's streamed response holds until its end: the
/// stream's slot on its connection, the target's outstanding count; on
/// failure, a failed passive health check of the target.
pub struct H2Release {
    pub slot: StreamSlot,
    pub outstanding: OutstandingGuard,
    pub group: Arc<GroupRuntime>,
    pub index: usize,
    /// `edgelb_grpc_responses_total` of the route, for a `grpc` group: the
    /// target's `grpc-status` is read from its trailers.
    pub grpc: Option<crate::telemetry::metrics::GrpcCodes>,
}

/// An HTTP/2 target's response body, streamed with its trailers.
struct H2TargetBody {
    body: H2Body,
    release: Option<H2Release>,
    stall: StallTimer,
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
    /// An HTTP/2 target's body; `release` is let go at its end. A body that
    /// makes no progress for `stall_timeout` is cut off (a long-lived stream
    /// lives as long as data flows).
    pub fn h2(
        body: H2Body,
        release: H2Release,
        stall_timeout: Duration,
        in_flight: Option<InFlight>,
    ) -> Self {
        ProxyBody {
            kind: Kind::H2(H2TargetBody {
                body,
                release: Some(release),
                stall: StallTimer::new(stall_timeout),
            }),
            _in_flight: in_flight,
            record: None,
        }
    }

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
            Kind::H2(t) => match Pin::new(&mut t.body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    t.stall.progress();
                    if let Some(trailers) = frame.trailers_ref() {
                        let code = crate::wire::grpc::status_of(trailers);
                        if let (Some(code), Some(r)) = (code, &t.release)
                            && let Some(codes) = &r.grpc
                        {
                            codes.count(code);
                        }
                        if let (Some(code), Some(record)) = (code, &mut this.record) {
                            record.grpc_status(code);
                        }
                    }
                    if t.body.is_end_stream() {
                        t.release = None;
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                Poll::Ready(None) => {
                    t.release = None;
                    Poll::Ready(None)
                }
                Poll::Ready(Some(Err(e))) => {
                    if let Some(r) = t.release.take() {
                        crate::proxy::attempt::body_broken(
                            &r.group,
                            r.index,
                            &format_args!("HTTP/2 response body: {e}"),
                        );
                    }
                    Poll::Ready(Some(Err(ResponseBodyError::H2(e))))
                }
                Poll::Pending => match t.stall.poll_expired(cx) {
                    Poll::Ready(()) => {
                        if let Some(r) = t.release.take() {
                            crate::proxy::attempt::body_broken(
                                &r.group,
                                r.index,
                                &"HTTP/2 response body stalled",
                            );
                        }
                        Poll::Ready(Some(Err(ResponseBodyError::Stalled)))
                    }
                    Poll::Pending => Poll::Pending,
                },
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
            Kind::H2(t) => t.body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            Kind::Target(t) => t.body.size_hint(),
            Kind::Raw(b) => b
                .exact_len()
                .map_or_else(SizeHint::new, SizeHint::with_exact),
            Kind::H2(_) => SizeHint::new(),
        }
    }
}
