//! The fast path's client connection: requests read in place, forwarded on
//! plain keep-alive target connections, responses relayed as they come.

use crate::config::GroupProtocol;
use crate::listener::http::PARK_AFTER;
use crate::proxy::attempt::{self, ClientFailure, Failure, Next as AttemptNext, idempotent};
use crate::proxy::client::ClientConn;
use crate::proxy::pool::{self, TARGET_MAX_HEAD_BYTES};
use crate::proxy::record::{RawHead, RequestRecord};
use crate::route::RequestView;
use crate::runtime::listener::ListenerRuntime;
use crate::runtime::listener::{GroupChoice, RouteAction};
use crate::runtime::target::{GroupRuntime, OutstandingGuard};
use crate::telemetry::metrics::{ClassCounters, ListenerMetrics, flush_bytes};
use crate::wire::body::BodyEnd;
use crate::wire::request::{MAX_HEADERS, Parsed, RequestHead};
use crate::wire::response::HEAD_TOO_LARGE;
use crate::wire::response::{self, Framing, ResponseHead};
use crate::wire::rewrite;
use http::Method;
use std::future::{Future, poll_fn};
use std::io::{self, IoSlice};
use std::pin::{Pin, pin};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// First size of a client's read buffer (it grows for a larger head).
const CLIENT_BUF: usize = 4096;
/// Size of the buffer a target's response goes through.
const TARGET_BUF: usize = 16 * 1024;
/// Body bytes copied behind the response head to go out in one write.
const MERGE_BODY: usize = 8 * 1024;

/// How a connection left the fast path.
pub enum End {
    Closed,
    /// Idle: to the parking lot with this much of its idle timeout left.
    Park(Duration),
    /// A request the fast path does not serve is at the start of the buffer:
    /// hyper takes the connection from there.
    Hyper,
}

/// After a response: what the connection does next.
enum Next {
    KeepAlive,
    Close,
    Hyper,
}

/// One timer per connection, re-armed lazily: a deadline that moves later
/// (the next request's) leaves the timer where it is; when it fires early it
/// is set to the current deadline. Most requests touch no timer at all.
struct Clock {
    sleep: Option<Pin<Box<Sleep>>>,
    armed: Instant,
}

impl Clock {
    fn new() -> Self {
        Clock {
            sleep: None,
            armed: Instant::now(),
        }
    }

    /// Ready once `deadline` has passed.
    fn poll_until(&mut self, cx: &mut Context<'_>, deadline: Instant) -> Poll<()> {
        let sleep = match &mut self.sleep {
            Some(s) => {
                if self.armed > deadline {
                    s.as_mut().reset(deadline);
                    self.armed = deadline;
                }
                s
            }
            None => {
                self.armed = deadline;
                self.sleep
                    .insert(Box::pin(tokio::time::sleep_until(deadline)))
            }
        };
        loop {
            ready!(sleep.as_mut().poll(cx));
            if Instant::now() >= deadline {
                return Poll::Ready(());
            }
            sleep.as_mut().reset(deadline);
            self.armed = deadline;
        }
    }
}

/// How long a wait may last.
#[derive(Clone, Copy)]
enum Limit {
    At(Instant),
    /// This long from when the wait starts (read from the clock only if it does).
    Quiet(Duration),
}

impl Limit {
    fn deadline(self) -> Instant {
        match self {
            Limit::At(t) => t,
            Limit::Quiet(d) => Instant::now() + d,
        }
    }
}

/// Why a read or write did not happen.
enum Wait {
    Timeout,
    Io,
}

/// Reads what `stream` has into the spare capacity of `buf` (`max` bytes of
/// capacity at least); the number of bytes, 0 at the end of the stream.
async fn read_some<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    clock: &mut Clock,
    limit: Limit,
    max: usize,
) -> Result<usize, Wait> {
    if buf.capacity() - buf.len() < max / 4 {
        buf.reserve(max);
    }
    let mut deadline = None;
    poll_fn(|cx| {
        if let Poll::Ready(r) = poll_read_into(stream, cx, buf, max) {
            return Poll::Ready(r.map_err(|_| Wait::Io));
        }
        let d = *deadline.get_or_insert_with(|| limit.deadline());
        ready!(clock.poll_until(cx, d));
        Poll::Ready(Err(Wait::Timeout))
    })
    .await
}

/// Reads at most `cap` bytes into the spare capacity of `buf`.
fn poll_read_into<S: AsyncRead + Unpin>(
    stream: &mut S,
    cx: &mut Context<'_>,
    buf: &mut Vec<u8>,
    cap: usize,
) -> Poll<io::Result<usize>> {
    if buf.capacity() == buf.len() {
        buf.reserve(CLIENT_BUF);
    }
    let spare = buf.spare_capacity_mut();
    let room = spare.len().min(cap);
    let mut read = ReadBuf::uninit(&mut spare[..room]);
    ready!(Pin::new(stream).poll_read(cx, &mut read))?;
    let n = read.filled().len();
    // SAFETY: the reader initialised the first `n` bytes of the spare capacity.
    unsafe { buf.set_len(buf.len() + n) };
    Poll::Ready(Ok(n))
}

/// Writes all of `bufs`; fails when the peer takes nothing for the limit.
async fn write_all<S: AsyncWrite + Unpin>(
    stream: &mut S,
    clock: &mut Clock,
    limit: Limit,
    mut bufs: &mut [IoSlice<'_>],
) -> Result<usize, Wait> {
    let mut total = 0;
    IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        let mut deadline = None;
        // One slice with bytes: a plain `write` (the kernel's `writev` path
        // costs a little more per call).
        let single = bufs.iter().skip(1).all(|b| b.is_empty());
        let n = poll_fn(|cx| {
            let polled = if single {
                Pin::new(&mut *stream).poll_write(cx, &bufs[0])
            } else {
                Pin::new(&mut *stream).poll_write_vectored(cx, bufs)
            };
            match polled {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => Poll::Ready(Err(Wait::Io)),
                Poll::Ready(Ok(n)) => Poll::Ready(Ok(n)),
                Poll::Pending => {
                    let d = *deadline.get_or_insert_with(|| limit.deadline());
                    ready!(clock.poll_until(cx, d));
                    Poll::Ready(Err(Wait::Timeout))
                }
            }
        })
        .await?;
        total += n;
        IoSlice::advance_slices(&mut bufs, n);
    }
    // A TLS stream may hold records back until flushed (a socket's flush is a no-op).
    let mut deadline = None;
    poll_fn(|cx| match Pin::new(&mut *stream).poll_flush(cx) {
        Poll::Ready(r) => Poll::Ready(r.map_err(|_| Wait::Io)),
        Poll::Pending => {
            let d = *deadline.get_or_insert_with(|| limit.deadline());
            ready!(clock.poll_until(cx, d));
            Poll::Ready(Err(Wait::Timeout))
        }
    })
    .await?;
    Ok(total)
}

/// A fast-path connection's state between and during requests.
pub struct Session<'a, S> {
    pub stream: &'a mut S,
    pub conn: &'a ClientConn,
    pub finish: &'a mut tokio::sync::watch::Receiver<bool>,
    /// Whether an idle connection goes to a parking lot.
    pub parkable: bool,
    clock: Clock,
    /// The target's request head.
    target_head: Vec<u8>,
    /// What goes to the client before a body: a response head.
    out: Vec<u8>,
    /// A target's response as it is read.
    tbuf: Vec<u8>,
    bytes_in: u64,
    bytes_out: u64,
    metrics: ListenerMetrics,
    /// The current request's access-log record, when the listener logs.
    record: Option<Box<RequestRecord>>,
    /// Bytes of the current request's body still to come from the client
    /// (past those already in its buffer): while some are, an answer closes.
    body_left: u64,
    /// Requests answered on this connection by the fast path.
    pub served: u64,
}

impl<'a, S: AsyncRead + AsyncWrite + Unpin> Session<'a, S> {
    /// A session on `stream`, counting bytes into `metrics`.
    pub fn new(
        stream: &'a mut S,
        conn: &'a ClientConn,
        finish: &'a mut tokio::sync::watch::Receiver<bool>,
        parkable: bool,
        metrics: ListenerMetrics,
    ) -> Self {
        Session {
            stream,
            conn,
            finish,
            parkable,
            clock: Clock::new(),
            target_head: Vec::new(),
            out: Vec::new(),
            tbuf: Vec::new(),
            bytes_in: 0,
            bytes_out: 0,
            metrics,
            record: None,
            body_left: 0,
            served: 0,
        }
    }

    fn flush_counters(&mut self) {
        flush_bytes(&self.metrics, &mut self.bytes_in, &mut self.bytes_out);
    }

    /// Serves requests from `buf` (bytes already read) and the stream until
    /// the connection closes, idles into the lot, or meets a request for hyper.
    pub async fn run(&mut self, buf: &mut Vec<u8>) -> End {
        let mut head_deadline: Option<Instant> = None;
        let end = loop {
            let Some(listener) = self.conn.listener() else {
                break End::Hyper;
            };
            if !buf.is_empty() {
                let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
                match crate::wire::request::parse(buf, &mut slots, listener.max_header_bytes) {
                    Parsed::Complete(head) => {
                        let rest = &buf[head.len..];
                        // The head and the part of its body already read.
                        let len = head.len + (head.body_len.min(rest.len() as u64) as usize);
                        match self.handle(&listener, &head, rest).await {
                            Next::Hyper => break End::Hyper,
                            Next::Close => break End::Closed,
                            Next::KeepAlive => self.served += 1,
                        }
                        buf.drain(..len);
                        head_deadline = None;
                        self.flush_counters();
                        continue;
                    }
                    // hyper answers a head over the limit (431).
                    Parsed::Partial if buf.len() <= listener.max_header_bytes + 1024 => {}
                    Parsed::Partial | Parsed::Unusual => break End::Hyper,
                }
                let deadline = *head_deadline
                    .get_or_insert_with(|| Instant::now() + listener.header_read_timeout);
                match read_some(
                    self.stream,
                    buf,
                    &mut self.clock,
                    Limit::At(deadline),
                    CLIENT_BUF,
                )
                .await
                {
                    Ok(0) | Err(Wait::Io) => break End::Closed,
                    Ok(n) => self.bytes_in += n as u64,
                    Err(Wait::Timeout) => {
                        tracing::debug!(peer = %self.conn.peer, "request head not complete within header_read_timeout");
                        let mut slices =
                            [IoSlice::new(crate::listener::io::REQUEST_TIMEOUT_RESPONSE)];
                        if let Ok(n) = write_all(
                            self.stream,
                            &mut self.clock,
                            Limit::Quiet(Duration::ZERO),
                            &mut slices,
                        )
                        .await
                        {
                            self.bytes_out += n as u64;
                        }
                        break End::Closed;
                    }
                }
                continue;
            }
            // Idle between requests: the next one, the park or idle deadline, or a drain.
            let now = Instant::now();
            let idle = listener.idle_timeout;
            let park = self.parkable && PARK_AFTER < idle;
            let deadline = now + if park { PARK_AFTER } else { idle };
            drop(listener);
            let mut finishing = pin!(self.finish.changed());
            let stream = &mut *self.stream;
            let clock = &mut self.clock;
            let woke = poll_fn(|cx| {
                if let Poll::Ready(r) = poll_read_into(stream, cx, buf, usize::MAX) {
                    return Poll::Ready(Some(r));
                }
                if finishing.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(None);
                }
                ready!(clock.poll_until(cx, deadline));
                Poll::Ready(Some(Err(io::ErrorKind::TimedOut.into())))
            })
            .await;
            match woke {
                Some(Ok(0)) | None => break End::Closed,
                Some(Ok(n)) => self.bytes_in += n as u64,
                Some(Err(e)) if e.kind() == io::ErrorKind::TimedOut && park => {
                    break End::Park(idle - PARK_AFTER);
                }
                Some(Err(_)) => break End::Closed,
            }
        };
        self.flush_counters();
        end
    }

    /// Serves one request if it is the fast path's kind; `Next::Hyper` (with
    /// nothing done yet) when it is not.
    async fn handle(
        &mut self,
        listener: &ListenerRuntime,
        head: &RequestHead<'_>,
        rest: &[u8],
    ) -> Next {
        // hyper answers a declared body over the limit (413).
        if head.body_len > listener.max_body_bytes {
            return Next::Hyper;
        }
        let Ok(method) = Method::from_bytes(head.method.as_bytes()) else {
            return Next::Hyper;
        };
        // The end of a login (SPEC §9) is answered on hyper's path.
        if !listener.gates.is_empty() && is_login_callback(head.target) {
            return Next::Hyper;
        }
        let view = RequestView::raw(
            &method,
            head.target,
            head.host,
            head.headers,
            self.conn.peer.ip(),
        );
        let selected = listener.routes.select(&view);
        let RouteAction::Forward(forward) = selected.action else {
            return Next::Hyper;
        };
        // Decided before the pick, which moves the group split along.
        let plain = |c: &GroupChoice| {
            c.group.stickiness.is_none()
                && c.group.protocol == GroupProtocol::Http
                && !c.group.protocol_version.is_h2()
        };
        if !forward.choices.iter().all(plain) {
            return Next::Hyper;
        }
        let Some(choice) = forward.pick_without_cookies() else {
            return Next::Hyper;
        };
        let close = head.close || *self.finish.borrow();
        let line = rewrite::RequestLine {
            method: head.method.as_bytes(),
            target: head.target,
            host: None,
            identity: self.conn.identity.get().map_or(&[][..], |i| &i.lines[..]),
            extra: b"",
        };
        let lines = || head.headers.iter().map(|h| (h.name, h.value));
        let made_id =
            rewrite::target_head(&mut self.target_head, &line, lines, &self.conn.forwarded);
        if let Some(log) = &listener.access_log {
            let raw = RawHead {
                method: head.method,
                target: head.target,
                host: head.host,
                user_agent: header_value(head, "user-agent"),
                body_len: head.body_len,
            };
            let mut record = RequestRecord::new_raw(log, self.conn, &listener.name, raw);
            record.routed(selected.priority, "forward");
            match &made_id {
                Some(id) => record.request_id_raw(Some(id)),
                None => record.request_id_raw(header_value(head, "x-request-id")),
            }
            self.record = Some(record);
        }
        // Only a body-less request can go again: a body is read once.
        let replayable = head.body_len == 0 && idempotent(&method);
        let first_body = &rest[..head.body_len.min(rest.len() as u64) as usize];
        self.body_left = head.body_len - first_body.len() as u64;
        let request = Outgoing {
            head_request: method == Method::HEAD,
            replayable,
            first_body,
        };
        let next = self.forward(listener, choice, &request, close).await;
        // Written now that the response is done (or cut off).
        self.record = None;
        next
    }

    /// Sends the request in `target_head` to a target of `choice` and relays
    /// the answer; failures before a response are answered as the load
    /// balancer (502, 503, 504).
    async fn forward(
        &mut self,
        listener: &ListenerRuntime,
        choice: &GroupChoice,
        request: &Outgoing<'_>,
        close: bool,
    ) -> Next {
        choice.metrics.requests.inc();
        let group = &choice.group;
        let Some(mut index) = group.pick(None) else {
            self.note_error("no_target");
            return self.lb_error(503, &choice.metrics.from_lb, close).await;
        };
        let mut attempts = pool::RawAttempts::default();
        loop {
            let got = pool::raw_socket(group, &mut index, &mut attempts).await;
            let target = &group.targets[index];
            let Some((mut tconn, reused, sent_at)) = got else {
                if let Some(r) = &mut self.record {
                    r.target(&group.name, target.addr);
                    r.error("connect_failed");
                }
                return self.lb_error(502, &choice.metrics.from_lb, close).await;
            };
            let outstanding = target.start_request();
            if let Some(r) = &mut self.record {
                r.target(&group.name, target.addr);
            }
            match self
                .exchange_head(
                    &mut tconn,
                    (sent_at, group.request_timeout),
                    request,
                    listener.idle_timeout,
                    close,
                )
                .await
            {
                Ok((resp, close, written_at)) => {
                    group
                        .metrics
                        .response_time
                        .observe(written_at.elapsed().as_secs_f64());
                    choice.metrics.from_target.count(resp.status);
                    if let Some(r) = &mut self.record {
                        r.target_status(resp.status);
                        r.response(resp.status);
                    }
                    return self
                        .relay_body(
                            listener,
                            tconn,
                            resp,
                            group,
                            index,
                            outstanding,
                            sent_at,
                            close,
                        )
                        .await;
                }
                Err(e) => {
                    let failure = match e {
                        HeadError::Stale => Failure::Stale { unsent: false },
                        HeadError::Timeout => Failure::Timeout,
                        HeadError::Broken(why) => Failure::InvalidHead {
                            too_large: why == HEAD_TOO_LARGE,
                        },
                        HeadError::ClientGone => Failure::Client(ClientFailure::Gone),
                        HeadError::ClientStalled => Failure::Client(ClientFailure::Stalled),
                    };
                    let attempt = attempt::Request {
                        replayable: request.replayable,
                        reused,
                    };
                    let verdict = attempt::decide(failure, attempt, attempts.tried(), 1);
                    verdict.charge(group, index, &format_args!("target failed: {e}"));
                    if let (Some(r), Some(error)) = (&mut self.record, verdict.error) {
                        r.error(error);
                    }
                    if attempts.go_again(verdict.next, group, &mut index) {
                        continue;
                    }
                    match verdict.next {
                        AttemptNext::Answer(status) => {
                            return self.lb_error(status, &choice.metrics.from_lb, close).await;
                        }
                        AttemptNext::AnswerAndClose(status) => {
                            return self.lb_error(status, &choice.metrics.from_lb, true).await;
                        }
                        AttemptNext::Close
                        | AttemptNext::Failover
                        | AttemptNext::Again
                        | AttemptNext::Replay => {
                            return Next::Close;
                        }
                    }
                }
            }
        }
    }

    /// Sends the target head and reads the response head (1xx ones skipped);
    /// the client's head is in `out` after, with when the request's last byte
    /// was written. `request_timeout` runs from that last byte: the time a
    /// client takes to send its body is the client's (a stall there is 408),
    /// never the target's; a target that takes no byte of the request for
    /// `request_timeout` is the target's.
    async fn exchange_head(
        &mut self,
        tconn: &mut TcpStream,
        (sent_at, request_timeout): (std::time::Instant, Duration),
        request: &Outgoing<'_>,
        body_stall: Duration,
        close: bool,
    ) -> Result<(ResponseHead, bool, std::time::Instant), HeadError> {
        let head_request = request.head_request;
        let target_stall = Limit::Quiet(request_timeout);
        // The head and the body bytes already read, in one write.
        let mut slices = [
            IoSlice::new(&self.target_head),
            IoSlice::new(request.first_body),
        ];
        match write_all(tconn, &mut self.clock, target_stall, &mut slices).await {
            Ok(_) => {}
            Err(Wait::Timeout) => return Err(HeadError::Timeout),
            Err(Wait::Io) => return Err(HeadError::Stale),
        }
        // The rest of the body, as the client sends it.
        let mut left = self.body_left;
        let streamed = left > 0;
        while left > 0 {
            self.tbuf.clear();
            let want = left.min(TARGET_BUF as u64) as usize;
            match read_some(
                self.stream,
                &mut self.tbuf,
                &mut self.clock,
                Limit::Quiet(body_stall),
                want,
            )
            .await
            {
                Ok(0) | Err(Wait::Io) => return Err(HeadError::ClientGone),
                Err(Wait::Timeout) => return Err(HeadError::ClientStalled),
                Ok(n) => {
                    self.bytes_in += n as u64;
                    left -= n as u64;
                }
            }
            let mut slices = [IoSlice::new(&self.tbuf)];
            match write_all(tconn, &mut self.clock, target_stall, &mut slices).await {
                Ok(_) => {}
                Err(Wait::Timeout) => return Err(HeadError::Timeout),
                Err(Wait::Io) => return Err(HeadError::Broken("closed while the body was sent")),
            }
            self.body_left = left;
        }
        self.tbuf.clear();
        // A head (and body) that went out in one write went out at `sent_at`.
        let written_at = if streamed {
            std::time::Instant::now()
        } else {
            sent_at
        };
        let deadline = Instant::from_std(written_at) + request_timeout;
        loop {
            if !self.tbuf.is_empty() {
                // A drain that began meanwhile closes the connection after this response.
                let close = close || *self.finish.borrow();
                match response::parse(&self.tbuf, head_request, close, &mut self.out) {
                    response::Parsed::Complete(h) => return Ok((h, close, written_at)),
                    response::Parsed::Informational(n) => {
                        self.tbuf.drain(..n);
                        continue;
                    }
                    response::Parsed::Invalid(why) => return Err(HeadError::Broken(why)),
                    response::Parsed::Partial => {}
                }
                if self.tbuf.len() > TARGET_MAX_HEAD_BYTES {
                    return Err(HeadError::Broken(HEAD_TOO_LARGE));
                }
            }
            let empty = self.tbuf.is_empty();
            match read_some(
                tconn,
                &mut self.tbuf,
                &mut self.clock,
                Limit::At(deadline),
                TARGET_BUF,
            )
            .await
            {
                Ok(0) | Err(Wait::Io) if empty => return Err(HeadError::Stale),
                Ok(0) | Err(Wait::Io) => {
                    return Err(HeadError::Broken("closed inside its response head"));
                }
                Ok(_) => {}
                Err(Wait::Timeout) => return Err(HeadError::Timeout),
            }
        }
    }

    /// Relays the head in `out` and the body after it from the target to the
    /// client; the target connection goes back to its pool if it can.
    #[allow(clippy::too_many_arguments)]
    async fn relay_body(
        &mut self,
        listener: &ListenerRuntime,
        mut tconn: TcpStream,
        resp: ResponseHead,
        group: &GroupRuntime,
        index: usize,
        outstanding: OutstandingGuard,
        sent_at: std::time::Instant,
        close: bool,
    ) -> Next {
        let stall = Limit::Quiet(listener.idle_timeout);
        let mut start = resp.len;
        let mut reusable = resp.reusable;
        let mut end = BodyEnd::new(resp.framing);
        let mut head_sent = false;
        loop {
            let avail = self.tbuf.len() - start;
            let Ok(take) = end.pass(&self.tbuf[start..]) else {
                return self.broken(group, index, "malformed chunked body");
            };
            let done = end.is_done();
            if done && take < avail {
                // Bytes after the body: the connection cannot be trusted.
                reusable = false;
            }
            // A small first piece of body goes into the head's buffer: one
            // contiguous `write` instead of a `writev` of two slices.
            let mut body = &self.tbuf[start..start + take];
            if !head_sent && resp.framing != Framing::UntilClose && take <= MERGE_BODY {
                self.out.extend_from_slice(body);
                body = b"";
            }
            let mut size_line = [0u8; 18];
            let head: &[u8] = if head_sent { b"" } else { &self.out };
            let written = if resp.framing == Framing::UntilClose {
                let size = chunk_size_line(&mut size_line, take);
                let last: &[u8] = if done { b"0\r\n\r\n" } else { b"" };
                let (size, crlf): (&[u8], &[u8]) = if take > 0 {
                    (size, b"\r\n")
                } else {
                    (b"", b"")
                };
                let mut slices = [
                    IoSlice::new(head),
                    IoSlice::new(size),
                    IoSlice::new(body),
                    IoSlice::new(crlf),
                    IoSlice::new(last),
                ];
                write_all(self.stream, &mut self.clock, stall, &mut slices).await
            } else {
                let mut slices = [IoSlice::new(head), IoSlice::new(body)];
                write_all(self.stream, &mut self.clock, stall, &mut slices).await
            };
            match written {
                Ok(n) => {
                    self.bytes_out += n as u64;
                    if let Some(r) = &mut self.record {
                        r.add_sent(take);
                    }
                }
                // The client left or stopped reading: the target connection is dropped.
                Err(_) => return Next::Close,
            }
            head_sent = true;
            if done {
                break;
            }
            self.tbuf.clear();
            start = 0;
            match read_some(
                &mut tconn,
                &mut self.tbuf,
                &mut self.clock,
                stall,
                TARGET_BUF,
            )
            .await
            {
                Ok(0) if end.closed() => {}
                Ok(0) | Err(Wait::Io) => {
                    return self.broken(group, index, "closed inside its response body");
                }
                Ok(_) => {}
                Err(Wait::Timeout) => {
                    return self.broken(group, index, "response body stalled");
                }
            }
        }
        if reusable {
            group.targets[index].shared.pool.put_raw(tconn, sent_at);
        }
        drop(outstanding);
        if close { Next::Close } else { Next::KeepAlive }
    }

    /// A target broke off a response already under way: it counts against the
    /// target, and the client connection closes (its response is cut short).
    fn broken(&mut self, group: &GroupRuntime, index: usize, why: &str) -> Next {
        attempt::body_broken(group, index, &format_args!("target response failed: {why}"));
        Next::Close
    }

    /// Answers as the load balancer (the same text as hyper's path writes).
    async fn lb_error(&mut self, status: u16, counters: &ClassCounters, close: bool) -> Next {
        counters.count(status);
        // A body not read to its end leaves nothing to frame the next request by.
        let close = close || self.body_left > 0;
        if let Some(r) = &mut self.record {
            r.response(status);
        }
        let close = close || *self.finish.borrow();
        let (line, text) = crate::proxy::respond::error_page(status);
        let (line, text) = (line.as_bytes(), text.as_bytes());
        let out = &mut self.out;
        out.clear();
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ");
        out.extend_from_slice(text.len().to_string().as_bytes());
        if close {
            out.extend_from_slice(b"\r\nconnection: close");
        }
        out.extend_from_slice(b"\r\ndate: ");
        crate::wire::date::append(out);
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(text);
        let mut slices = [IoSlice::new(&self.out)];
        match write_all(
            self.stream,
            &mut self.clock,
            Limit::Quiet(Duration::from_secs(10)),
            &mut slices,
        )
        .await
        {
            Ok(n) => {
                self.bytes_out += n as u64;
                if let Some(r) = &mut self.record {
                    r.add_sent(text.len());
                }
            }
            Err(_) => return Next::Close,
        }
        if close { Next::Close } else { Next::KeepAlive }
    }
}

impl<S> Session<'_, S> {
    /// Why the load balancer answered itself, for the access log.
    fn note_error(&mut self, reason: &'static str) {
        if let Some(r) = &mut self.record {
            r.error(reason);
        }
    }
}

/// The first value of header `name` (lower case) in a head read in place.
fn header_value<'b>(head: &RequestHead<'b>, name: &str) -> Option<&'b [u8]> {
    head.headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

/// A request as it goes to a target: its head is in the session's
/// `target_head`, its first body bytes (already read) here.
struct Outgoing<'a> {
    head_request: bool,
    /// Body-less and idempotent: may be sent again.
    replayable: bool,
    first_body: &'a [u8],
}

/// Why no response head came.
#[derive(Debug)]
enum HeadError {
    /// Nothing at all came back (closed or reset): on a reused connection,
    /// most likely closed by the target while idle.
    Stale,
    Timeout,
    Broken(&'static str),
    /// The client left in the middle of its body.
    ClientGone,
    /// The client's body made no progress for the listener's idle timeout.
    ClientStalled,
}

/// `{size:x}\r\n` into `buf`.
fn chunk_size_line(buf: &mut [u8; 18], size: usize) -> &[u8] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut i = 16;
    let mut v = size;
    loop {
        i -= 1;
        buf[i] = DIGITS[v & 0xf];
        v >>= 4;
        if v == 0 {
            break;
        }
    }
    buf[16] = b'\r';
    buf[17] = b'\n';
    &buf[i..]
}

impl std::fmt::Display for HeadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HeadError::Stale => "closed without a response",
            HeadError::Timeout => "no response within request_timeout",
            HeadError::Broken(why) => why,
            HeadError::ClientGone => "the client left mid-body",
            HeadError::ClientStalled => "the client's body stalled",
        })
    }
}

/// Whether a request-target is the callback of a login (SPEC §9).
fn is_login_callback(target: &[u8]) -> bool {
    let path = crate::oidc::gate::CALLBACK_PATH.as_bytes();
    target.starts_with(path) && matches!(target.get(path.len()), None | Some(b'?'))
}

#[cfg(test)]
mod tests {
    #[test]
    fn chunk_size_lines() {
        let mut b = [0u8; 18];
        assert_eq!(super::chunk_size_line(&mut b, 0), b"0\r\n");
        assert_eq!(super::chunk_size_line(&mut b, 255), b"ff\r\n");
        assert_eq!(super::chunk_size_line(&mut b, 4096), b"1000\r\n");
    }

    #[test]
    fn the_login_callback_is_its_path_alone() {
        assert!(super::is_login_callback(
            b"/oauth2/idpresponse?code=a&state=b"
        ));
        assert!(super::is_login_callback(b"/oauth2/idpresponse"));
        assert!(!super::is_login_callback(b"/oauth2/idpresponsex"));
        assert!(!super::is_login_callback(b"/oauth2/idp"));
    }
}
