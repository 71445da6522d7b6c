//! A target's response body read straight off its socket into frames.

use super::{READ_SIZE, poll_read_buf};
use crate::runtime::target::{GroupRuntime, OutstandingGuard};
use crate::upstream::stall::StallTimer;
use crate::wire::body::BodyEnd;
use crate::wire::response::Framing;
use bytes::{Buf, Bytes, BytesMut};
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// What a raw response body gives back at its end: the socket to its target's
/// pool when the exchange ended cleanly; a failed passive health check when
/// the target broke it off.
pub struct RawRelease {
    pub stream: TcpStream,
    pub outstanding: OutstandingGuard,
    /// When the request was sent (the connection's idle age counts from there).
    pub sent_at: Instant,
    pub group: Arc<GroupRuntime>,
    pub index: usize,
}

/// A target's response body read straight off its socket.
pub struct RawBody {
    /// The bytes read and not yet given out; frames are split off it.
    buf: BytesMut,
    end: BodyEnd,
    reusable: bool,
    ended: bool,
    release: Option<RawRelease>,
    stall: StallTimer,
}

/// Why a raw response body ended early.
#[derive(Debug, Clone, Copy)]
pub enum RawBodyError {
    Broken(&'static str),
    Stalled,
}

impl RawBody {
    /// A body framed by `framing` whose first bytes are in `buf` (`reusable`:
    /// the socket can carry another request after it); one that makes no
    /// progress for `stall_timeout` is cut off.
    pub fn new(
        framing: Framing,
        reusable: bool,
        buf: BytesMut,
        release: RawRelease,
        stall_timeout: Duration,
    ) -> Self {
        let mut body = RawBody {
            buf,
            end: BodyEnd::new(framing),
            reusable,
            ended: false,
            release: Some(release),
            stall: StallTimer::new(stall_timeout),
        };
        if body.end.is_done() {
            body.finish();
        }
        body
    }

    /// Whether the last frame has been given out.
    pub fn is_end_stream(&self) -> bool {
        self.ended
    }

    /// Body bytes still to come, when the target said how many.
    pub fn exact_len(&self) -> Option<u64> {
        if self.ended {
            return Some(0);
        }
        self.end.remaining()
    }

    /// The body ended cleanly: the socket goes back to the pool if the
    /// exchange left it in step (nothing after the body).
    fn finish(&mut self) {
        self.ended = true;
        if let Some(r) = self.release.take()
            && self.reusable
            && self.buf.is_empty()
        {
            r.outstanding.shared().pool.put_raw(r.stream, r.sent_at);
        }
    }

    /// The target broke the body off: the socket is closed and the failure
    /// counts against the target.
    fn fail(&mut self, why: RawBodyError) -> RawBodyError {
        self.ended = true;
        if let Some(r) = self.release.take() {
            crate::proxy::attempt::body_broken(&r.group, r.index, &why);
        }
        why
    }

    /// The next piece of body data; `None` at its end.
    pub fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, RawBodyError>>> {
        loop {
            if self.ended {
                return Poll::Ready(None);
            }
            if !self.buf.is_empty() {
                let Ok(step) = self.end.next_data(&self.buf) else {
                    let e = self.fail(RawBodyError::Broken("malformed chunked body"));
                    return Poll::Ready(Some(Err(e)));
                };
                let mut followed = self.buf.split_to(step.taken);
                if self.end.is_done() {
                    self.finish();
                }
                if !step.data.is_empty() {
                    followed.advance(step.data.start);
                    followed.truncate(step.data.len());
                    return Poll::Ready(Some(Ok(followed.freeze())));
                }
                if step.taken > 0 {
                    continue;
                }
            }
            let Some(release) = &mut self.release else {
                return Poll::Ready(None);
            };
            if self.buf.capacity() - self.buf.len() < READ_SIZE / 4 {
                self.buf.reserve(READ_SIZE);
            }
            match poll_read_buf(&mut release.stream, cx, &mut self.buf) {
                Poll::Ready(Ok(0)) if self.end.closed() => {
                    self.reusable = false;
                    self.finish();
                    return Poll::Ready(None);
                }
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                    let e = self.fail(RawBodyError::Broken("closed inside its response body"));
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Ok(_)) => self.stall.progress(),
                Poll::Pending => {
                    ready!(self.stall.poll_expired(cx));
                    let e = self.fail(RawBodyError::Stalled);
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }
}

impl std::fmt::Display for RawBodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RawBodyError::Broken(why) => write!(f, "target response body: {why}"),
            RawBodyError::Stalled => f.write_str("target response body stalled"),
        }
    }
}
