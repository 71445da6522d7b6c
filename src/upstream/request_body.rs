//! The body of a request on its way to a target: the client's, streamed with
//! back-pressure, cut off past `max_body_bytes` or after a stall, failed when
//! the framing reader could not follow it, and telling which side it waits on
//! (`request_timeout`, [`super::sent`]).

use super::sent::{SendProgress, Waiting};
use super::stall::StallTimer;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

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
    conn: Arc<dyn FramingVerdict>,
    index: u64,
}

/// Whether the shadow framing reader refused a request of a connection
/// (implemented by the client connection, above this layer).
pub trait FramingVerdict: Send + Sync {
    /// Request `index` (0-based, in order of arrival) must be refused.
    fn is_ambiguous(&self, index: u64) -> bool;
}

impl BodyFraming {
    /// For request `index` (0-based, in order of arrival) of `conn`.
    pub fn new(conn: Arc<dyn FramingVerdict>, index: u64) -> Self {
        BodyFraming { conn, index }
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
