//! HTTP/2 connections to one target (SPEC §7): a pool of multiplexed
//! connections, each carrying streams up to the target's
//! `SETTINGS_MAX_CONCURRENT_STREAMS` (another connection is opened when
//! every one is full); a connection the target sent GOAWAY on, or that
//! closed, takes no new stream. Spoken with the `h2` crate (the one hyper
//! uses) rather than hyper's HTTP/2 client because hyper does not tell how
//! many streams a target allows, nor which streams a GOAWAY refused.
//! Request bodies are pumped into the stream with HTTP/2 flow control
//! (back-pressure both ways), trailers included.

use super::connect::ConnectError;
use super::request_body::RequestBody;
use crate::tls::TargetTls;
use bytes::Bytes;
use h2::client::SendRequest;
use http_body::{Body, Frame};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// An idle connection (no stream) older than this is closed.
const IDLE_AFTER: Duration = Duration::from_secs(60);

/// Streams a connection carries until the target's SETTINGS say otherwise
/// (RFC 9113 §6.5.2 recommends at least 100).
const INITIAL_MAX_STREAMS: usize = 100;

/// The HTTP/2 connections of one target.
#[derive(Default)]
pub struct H2Pool {
    conns: Mutex<Vec<H2Conn>>,
}

/// One multiplexed connection.
struct H2Conn {
    send: SendRequest<Bytes>,
    /// Streams open on it now.
    streams: Arc<AtomicUsize>,
    /// Set when the connection ended or the target sent GOAWAY.
    closed: Arc<AtomicBool>,
    idle_since: Instant,
}

/// A stream slot on a pooled connection: held while the stream lives (its
/// request and response bodies), freed when dropped.
pub struct StreamSlot {
    streams: Arc<AtomicUsize>,
    closed: Arc<AtomicBool>,
}

impl StreamSlot {
    /// Takes no new stream on this connection (GOAWAY, a broken connection).
    pub fn retire(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.streams.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A handle to send one request on, with its slot.
pub struct H2Stream {
    pub send: SendRequest<Bytes>,
    pub slot: StreamSlot,
}

impl H2Pool {
    /// A stream on a pooled connection with room for one more, if any.
    pub fn checkout(&self) -> Option<H2Stream> {
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        conns.retain(|c| !c.closed.load(Ordering::Relaxed));
        let conn = conns.iter_mut().find(|c| {
            let limit = c.send.current_max_send_streams().max(1);
            c.streams.load(Ordering::Acquire) < limit
        })?;
        Some(conn.take_stream())
    }

    /// Puts a new connection in the pool and takes its first stream.
    pub fn add(&self, send: SendRequest<Bytes>, closed: Arc<AtomicBool>) -> H2Stream {
        let mut conn = H2Conn {
            send,
            streams: Arc::default(),
            closed,
            idle_since: Instant::now(),
        };
        let stream = conn.take_stream();
        self.conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(conn);
        stream
    }

    /// Closes connections without a stream for a minute, and forgets closed
    /// ones (dropping the last handle ends the connection with GOAWAY).
    pub fn purge(&self, now: Instant) {
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        conns.retain_mut(|c| {
            if c.closed.load(Ordering::Relaxed) {
                return false;
            }
            if c.streams.load(Ordering::Acquire) > 0 {
                c.idle_since = now;
                return true;
            }
            now.duration_since(c.idle_since) < IDLE_AFTER
        });
    }
}

impl H2Conn {
    fn take_stream(&mut self) -> H2Stream {
        self.streams.fetch_add(1, Ordering::AcqRel);
        self.idle_since = Instant::now();
        H2Stream {
            send: self.send.clone(),
            slot: StreamSlot {
                streams: self.streams.clone(),
                closed: self.closed.clone(),
            },
        }
    }
}

/// Opens an HTTP/2 connection to `addr`: prior knowledge in clear text, or
/// TLS with ALPN `h2` (a target that does not agree is an error). Its driver
/// runs as its own task and sets `closed` when the connection ends.
pub async fn connect(
    addr: SocketAddr,
    timeout: Duration,
    tls: Option<&TargetTls>,
) -> Result<(SendRequest<Bytes>, Arc<AtomicBool>), ConnectError> {
    let open = async {
        let stream = crate::tls::stream::connect_h2(addr, tls).await?;
        h2::client::Builder::new()
            .initial_max_send_streams(INITIAL_MAX_STREAMS)
            .initial_window_size(1 << 20)
            .initial_connection_window_size(4 << 20)
            .handshake::<_, Bytes>(stream)
            .await
            .map_err(std::io::Error::other)
    };
    let (send, connection) = match tokio::time::timeout(timeout, open).await {
        Err(_) => return Err(ConnectError::Timeout),
        Ok(Err(e)) => return Err(ConnectError::Io(e)),
        Ok(Ok(c)) => c,
    };
    let closed = Arc::new(AtomicBool::new(false));
    let flag = closed.clone();
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(%addr, "HTTP/2 target connection ended: {e}");
        }
        flag.store(true, Ordering::Relaxed);
    });
    Ok((send, closed))
}

/// Sends the request body to the target's stream as flow control lets it
/// (the client is read no faster than the target takes), then its trailers
/// or the end of the stream. A client body that fails resets the stream.
/// What is ready at once (a small unary gRPC call's one message, say) is
/// sent here, with the end of the stream on its last DATA frame; only a body
/// still coming is left to a task of its own.
pub async fn send_body(body: RequestBody, stream: h2::SendStream<Bytes>) -> BodySent {
    let mut pump = BodyPump {
        body,
        stream,
        sent: false,
        held: None,
    };
    match std::future::poll_fn(|cx| Poll::Ready(pump.step(cx))).await {
        Poll::Ready(done) => BodySent::Whole(done),
        Poll::Pending => BodySent::Pumping(tokio::spawn(async move {
            std::future::poll_fn(|cx| pump.step(cx)).await
        })),
    }
}

/// Where a request body stands: sent whole (or failed) already, or being
/// pumped by its own task. Either gives whether anything was sent (data or
/// trailers: a body that was empty can go again whole) or what failed.
pub enum BodySent {
    Whole(Result<bool, PumpError>),
    Pumping(tokio::task::JoinHandle<Result<bool, PumpError>>),
}

/// The largest first DATA frame sent without waiting for the target's
/// window: one default-size HTTP/2 frame, so at most this much per stream
/// waits in `h2`'s buffer instead of the client's.
const UNRESERVED_FIRST_FRAME: usize = 16 * 1024;

/// A request body on its way into a target's stream.
struct BodyPump {
    body: RequestBody,
    stream: h2::SendStream<Bytes>,
    sent: bool,
    /// Data read from the client and waiting for the target's window, with
    /// whether it ends the body.
    held: Option<(Bytes, bool)>,
}

impl BodyPump {
    fn step(&mut self, cx: &mut Context<'_>) -> Poll<Result<bool, PumpError>> {
        loop {
            if let Some((data, last)) = &mut self.held {
                // The first frame, small as a unary call's message is, goes
                // into the stream at once: `h2` holds it until the target's
                // window (65,535 at least, as every peer starts) takes it.
                // Waiting for capacity instead would wait for the stream to
                // open on the connection's task, and so for a task of its own.
                if !self.sent && data.len() <= UNRESERVED_FIRST_FRAME {
                    let end = *last;
                    self.sent = true;
                    let chunk = std::mem::take(data);
                    if let Err(e) = self.stream.send_data(chunk, end) {
                        return Poll::Ready(Err(PumpError::Target(e)));
                    }
                    if end {
                        return Poll::Ready(Ok(true));
                    }
                }
                while !data.is_empty() {
                    self.stream.reserve_capacity(data.len());
                    let granted = match self.stream.poll_capacity(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(None) => return Poll::Ready(Err(PumpError::Closed)),
                        Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(PumpError::Target(e))),
                        Poll::Ready(Some(Ok(n))) => n,
                    };
                    if granted == 0 {
                        continue;
                    }
                    let chunk = data.split_to(granted.min(data.len()));
                    let end = *last && data.is_empty();
                    self.sent = true;
                    if let Err(e) = self.stream.send_data(chunk, end) {
                        return Poll::Ready(Err(PumpError::Target(e)));
                    }
                    if end {
                        return Poll::Ready(Ok(true));
                    }
                }
                self.held = None;
            }
            let frame = match Pin::new(&mut self.body).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    // The client's body ended. If the target's stream is gone
                    // by now but nothing was sent, the body was empty: nothing
                    // of it is lost, and the request may go again.
                    return Poll::Ready(match self.stream.send_data(Bytes::new(), true) {
                        Ok(()) => Ok(self.sent),
                        Err(_) if !self.sent => Ok(false),
                        Err(e) => Err(PumpError::Target(e)),
                    });
                }
                Poll::Ready(Some(Err(e))) => {
                    self.stream.send_reset(h2::Reason::CANCEL);
                    return Poll::Ready(Err(PumpError::Client(e)));
                }
                Poll::Ready(Some(Ok(frame))) => frame,
            };
            match frame.into_data() {
                Ok(data) if data.is_empty() => {}
                Ok(data) => self.held = Some((data, self.body.is_end_stream())),
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        return Poll::Ready(
                            self.stream
                                .send_trailers(trailers)
                                .map(|()| true)
                                .map_err(PumpError::Target),
                        );
                    }
                }
            }
        }
    }
}

/// How sending a request body to an HTTP/2 target failed.
#[derive(Debug)]
pub enum PumpError {
    /// The client's body failed (the stream was reset).
    Client(super::request_body::ClientBodyError),
    /// The target's side of the stream failed.
    Target(h2::Error),
    /// The stream was closed before the body was sent (the target answered
    /// early or reset it).
    Closed,
}

/// A target's HTTP/2 response body as an [`http_body::Body`]: data as the
/// target sends it (its flow-control window given back as it is passed on),
/// then its trailers.
pub struct H2Body {
    recv: h2::RecvStream,
    data_done: bool,
    done: bool,
}

impl H2Body {
    pub fn new(recv: h2::RecvStream) -> Self {
        let done = recv.is_end_stream();
        H2Body {
            recv,
            data_done: false,
            done,
        }
    }
}

impl Body for H2Body {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if !this.data_done {
            match this.recv.poll_data(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(data))) => {
                    let _ = this.recv.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Poll::Ready(Some(Err(e))) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => this.data_done = true,
            }
        }
        match this.recv.poll_trailers(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(got) => {
                this.done = true;
                Poll::Ready(match got {
                    Ok(Some(trailers)) => Some(Ok(Frame::trailers(trailers))),
                    Ok(None) => None,
                    Err(e) => Some(Err(e)),
                })
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}
