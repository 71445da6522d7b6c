//! A body-less request that hyper's server side took (HTTP/2 streams, and
//! HTTP/1 requests the fast path handed over) sent to a plain target on the
//! fast path's own sockets instead of hyper's HTTP/1 client: the head written
//! straight from the request's parts, the response head parsed in place into
//! parts, the body read off the socket into frames that share one buffer.
//! That skips hyper's request channel, dispatcher and a header-map copy kept
//! for replays (the head bytes are kept instead): ~13,000 of ~62,000
//! instructions per HTTP/2 request (docs/performance.md).

use crate::h1::chunked::ChunkedScan;
use crate::h1::response::{Framing, HeadFacts, MAX_HEADERS, is_hop_by_hop};
use crate::proxy::headers::{ForwardedFor, X_FORWARDED_FOR, X_REQUEST_ID, new_request_id_bytes};
use crate::proxy::pool::TARGET_MAX_HEAD_BYTES;
use crate::proxy::stall::StallTimer;
use crate::runtime::target::{GroupRuntime, OutstandingGuard};
use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, StatusCode, Version};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// Room kept free in a response buffer before each read of a body.
const READ_SIZE: usize = 16 * 1024;
/// A response buffer's first size: most heads and small bodies fit, and a
/// smaller block is cheaper to allocate; it grows to [`READ_SIZE`].
pub const FIRST_READ: usize = 4 * 1024;

/// Whether a request of `method` may take this path: no body (so it can be
/// sent again whole), and not asking to switch protocols.
pub fn eligible(method: &Method, body_ended: bool, upgrade: bool) -> bool {
    body_ended && !upgrade && method != Method::CONNECT
}

/// The HTTP/1.1 head a target gets for `req`, written straight from the
/// client's request as `proxy::headers::prepare_request` would rewrite it:
/// origin-form target, `Host` from the authority of an HTTP/2 request,
/// hop-by-hop headers out, `X-Forwarded-*` replaced (the client's
/// `X-Forwarded-For` values kept in front), an `X-Request-Id` made when
/// missing (returned), and `Content-Length: 0` for a body-less request of a
/// method that usually has a body (as hyper's client writes). `None` when the
/// client's `Connection` header names other headers to drop: the rare case
/// is left to the header-map rewrite.
pub fn target_head<B>(req: &http::Request<B>, fwd: &ForwardedFor) -> Option<TargetHead> {
    let headers = req.headers();
    for value in headers.get_all(http::header::CONNECTION) {
        let names_others = value.as_bytes().split(|&b| b == b',').any(|t| {
            let t = t.trim_ascii();
            !(t.is_empty()
                || t.eq_ignore_ascii_case(b"keep-alive")
                || t.eq_ignore_ascii_case(b"close"))
        });
        if names_others {
            return None;
        }
    }
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(req.method().as_str().as_bytes());
    out.push(b' ');
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let http1 = matches!(req.version(), Version::HTTP_10 | Version::HTTP_11);
    let authority = req
        .uri()
        .authority()
        .filter(|_| !http1 || !headers.contains_key(http::header::HOST));
    if let Some(a) = authority {
        out.extend_from_slice(b"host: ");
        out.extend_from_slice(a.as_str().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let mut forwarded_for = false;
    let mut request_id = false;
    for (name, value) in headers {
        let n = name.as_str();
        if is_hop_by_hop(n) || (authority.is_some() && name == http::header::HOST) {
            continue;
        }
        if n.len() > 12 && n.starts_with("x-forwarded-") {
            match &n[12..] {
                "for" => {
                    forwarded_for = true;
                    continue;
                }
                "proto" | "port" => continue,
                _ => {}
            }
        }
        request_id |= name == X_REQUEST_ID;
        out.extend_from_slice(n.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    // The client's own X-Forwarded-For values first, then its address: one line.
    out.extend_from_slice(b"x-forwarded-for: ");
    if forwarded_for {
        for value in headers.get_all(&X_FORWARDED_FOR) {
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b", ");
        }
    }
    out.extend_from_slice(fwd.client_ip.as_bytes());
    out.extend_from_slice(b"\r\nx-forwarded-proto: ");
    out.extend_from_slice(fwd.proto.as_bytes());
    out.extend_from_slice(b"\r\nx-forwarded-port: ");
    out.extend_from_slice(fwd.port.as_bytes());
    out.extend_from_slice(b"\r\n");
    let made_id = (!request_id).then(new_request_id_bytes);
    if let Some(id) = &made_id {
        out.extend_from_slice(b"x-request-id: ");
        out.extend_from_slice(id);
        out.extend_from_slice(b"\r\n");
    }
    let bodyless_method = matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::DELETE | Method::OPTIONS | Method::TRACE
    );
    if !bodyless_method && !headers.contains_key(http::header::CONTENT_LENGTH) {
        out.extend_from_slice(b"content-length: 0\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Some(TargetHead {
        bytes: out,
        made_id,
    })
}

/// A request head for a target, and the request id made for it.
pub struct TargetHead {
    pub bytes: Vec<u8>,
    /// The `X-Request-Id` written, when the client sent none.
    pub made_id: Option<[u8; 32]>,
}

/// A target's response head, as parts for hyper's server side.
pub struct RawResponse {
    pub parts: http::response::Parts,
    pub framing: Framing,
    /// The connection can carry another request after the body.
    pub reusable: bool,
}

/// Why no response head came.
#[derive(Debug)]
pub enum HeadError {
    /// Nothing came back (closed or reset): on a reused connection, most
    /// likely closed by the target while idle; the request can go again.
    Stale,
    Broken(&'static str),
}

/// What the start of a target's bytes holds.
enum Parsed {
    Complete(RawResponse, usize),
    Partial,
    /// A 1xx head of this many bytes, skipped.
    Informational(usize),
    Invalid(&'static str),
}

/// Sends `head` on `stream` and reads the response head into `buf` (1xx
/// heads skipped); the bytes after the head stay in `buf`.
pub async fn exchange(
    stream: &mut TcpStream,
    head: &[u8],
    buf: &mut BytesMut,
    head_request: bool,
) -> Result<RawResponse, HeadError> {
    if stream.write_all(head).await.is_err() {
        return Err(HeadError::Stale);
    }
    buf.clear();
    let mut any = false;
    loop {
        if !buf.is_empty() {
            match parse(buf, head_request) {
                Parsed::Complete(resp, len) => {
                    buf.advance(len);
                    return Ok(resp);
                }
                Parsed::Informational(n) => {
                    buf.advance(n);
                    continue;
                }
                Parsed::Invalid(why) => return Err(HeadError::Broken(why)),
                Parsed::Partial if buf.len() > TARGET_MAX_HEAD_BYTES => {
                    return Err(HeadError::Broken(HEAD_TOO_LARGE));
                }
                Parsed::Partial => {}
            }
        }
        if buf.capacity() - buf.len() < FIRST_READ / 4 {
            buf.reserve(READ_SIZE);
        }
        let read = std::future::poll_fn(|cx| poll_read_buf(stream, cx, buf)).await;
        match read {
            Ok(0) | Err(_) if !any => return Err(HeadError::Stale),
            Ok(0) | Err(_) => return Err(HeadError::Broken("closed inside its response head")),
            Ok(_) => any = true,
        }
    }
}

/// Why a target's response was refused: its head is larger than we take.
pub const HEAD_TOO_LARGE: &str = "response head too large";

/// Reads into the spare capacity of `buf`.
fn poll_read_buf(
    stream: &mut TcpStream,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
) -> Poll<std::io::Result<usize>> {
    let spare = buf.spare_capacity_mut();
    let mut read = ReadBuf::uninit(spare);
    ready!(Pin::new(stream).poll_read(cx, &mut read))?;
    let n = read.filled().len();
    // SAFETY: the reader initialised the first `n` bytes of the spare capacity.
    unsafe { buf.set_len(buf.len() + n) };
    Poll::Ready(Ok(n))
}

/// Parses a response head at the start of `buf`.
fn parse(buf: &BytesMut, head_request: bool) -> Parsed {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut slots);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Invalid("malformed response head"),
    };
    if len > TARGET_MAX_HEAD_BYTES {
        return Parsed::Invalid(HEAD_TOO_LARGE);
    }
    let (Some(version), Some(code)) = (resp.version, resp.code) else {
        return Parsed::Invalid("malformed response head");
    };
    match code {
        101 => return Parsed::Invalid("101 to a request that asked for no upgrade"),
        100..=199 => return Parsed::Informational(len),
        200..=999 => {}
        _ => return Parsed::Invalid("status out of range"),
    }
    let Ok(status) = StatusCode::from_u16(code) else {
        return Parsed::Invalid("status out of range");
    };
    let facts = match HeadFacts::read(version, code, resp.headers, head_request) {
        Ok(f) => f,
        Err(why) => return Parsed::Invalid(why),
    };
    // Header values are slices of one shared copy of the head.
    let head = Bytes::copy_from_slice(&buf[..len]);
    let base = buf.as_ptr() as usize;
    let mut headers = HeaderMap::with_capacity(resp.headers.len());
    for h in resp.headers.iter() {
        if facts.drops(h.name) {
            continue;
        }
        let Ok(name) = HeaderName::from_bytes(h.name.as_bytes()) else {
            return Parsed::Invalid("malformed header name");
        };
        let start = h.value.as_ptr() as usize - base;
        let Ok(value) = HeaderValue::from_maybe_shared(head.slice(start..start + h.value.len()))
        else {
            return Parsed::Invalid("malformed header value");
        };
        headers.append(name, value);
    }
    let mut parts = http::Response::new(()).into_parts().0;
    parts.status = status;
    parts.version = if version == 0 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    parts.headers = headers;
    // A reason phrase of the target's own goes on to an HTTP/1 client, as
    // through hyper's client.
    if let Some(reason) = resp.reason
        && Some(reason) != status.canonical_reason()
        && let Ok(phrase) = hyper::ext::ReasonPhrase::try_from(reason.as_bytes().to_vec())
    {
        parts.extensions.insert(phrase);
    }
    Parsed::Complete(
        RawResponse {
            parts,
            framing: facts.framing,
            reusable: facts.reusable,
        },
        len,
    )
}

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
    framing: Framing,
    /// Body bytes still to come ([`Framing::Length`]).
    left: u64,
    chunks: ChunkedScan,
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
            framing,
            left: match framing {
                Framing::Length(n) => n,
                _ => 0,
            },
            chunks: ChunkedScan::default(),
            reusable,
            ended: false,
            release: Some(release),
            stall: StallTimer::new(stall_timeout),
        };
        if body.framing == Framing::Empty {
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
        match self.framing {
            Framing::Empty => Some(0),
            Framing::Length(_) => Some(self.left),
            _ if self.ended => Some(0),
            _ => None,
        }
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
            let name = &r.group.targets[r.index].address;
            tracing::warn!(target_group = %r.group.name, target = %name, "target response failed: {why}");
            r.group.metrics.response_errors.inc();
            r.group.record(
                r.index,
                crate::health::Outcome::Failure(crate::health::Reason::FailedHealthChecks),
            );
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
                match self.framing {
                    Framing::Empty => {}
                    Framing::Length(_) => {
                        let take = self.left.min(self.buf.len() as u64);
                        self.left -= take;
                        let data = self.buf.split_to(take as usize).freeze();
                        if self.left == 0 {
                            self.finish();
                        }
                        return Poll::Ready(Some(Ok(data)));
                    }
                    Framing::Chunked => {
                        let (n, run) = match self.chunks.next_data(&self.buf) {
                            Ok(r) => r,
                            Err(_) => {
                                let e = self.fail(RawBodyError::Broken("malformed chunked body"));
                                return Poll::Ready(Some(Err(e)));
                            }
                        };
                        let mut followed = self.buf.split_to(n);
                        if self.chunks.is_done() {
                            self.finish();
                        }
                        if let Some(run) = run.filter(|r| !r.is_empty()) {
                            followed.advance(run.start);
                            followed.truncate(run.len());
                            return Poll::Ready(Some(Ok(followed.freeze())));
                        }
                        continue;
                    }
                    Framing::UntilClose => {
                        return Poll::Ready(Some(Ok(self.buf.split().freeze())));
                    }
                }
            }
            let Some(release) = &mut self.release else {
                return Poll::Ready(None);
            };
            if self.buf.capacity() - self.buf.len() < READ_SIZE / 4 {
                self.buf.reserve(READ_SIZE);
            }
            match poll_read_buf(&mut release.stream, cx, &mut self.buf) {
                Poll::Ready(Ok(0)) if self.framing == Framing::UntilClose => {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn fwd() -> ForwardedFor {
        ForwardedFor {
            client_ip: HeaderValue::from_static("192.0.2.7"),
            proto: HeaderValue::from_static("https"),
            port: HeaderValue::from_static("443"),
        }
    }

    fn head_of(req: http::Request<()>) -> Option<String> {
        let head = target_head(&req, &fwd())?;
        Some(String::from_utf8(head.bytes).unwrap())
    }

    #[test]
    fn request_heads_are_written_as_the_header_map_rewrite_would() {
        let get = http::Request::get("/a?b=1")
            .header("host", "example.com")
            .header("x-two", "1")
            .header("x-two", "2")
            .header("te", "trailers")
            .header("connection", "keep-alive")
            .header("x-forwarded-for", "10.0.0.1")
            .header("x-forwarded-for", "10.0.0.2")
            .header("x-forwarded-proto", "http")
            .header("x-request-id", "abc")
            .body(())
            .unwrap();
        assert_eq!(
            head_of(get).unwrap(),
            "GET /a?b=1 HTTP/1.1\r\nhost: example.com\r\nx-two: 1\r\nx-two: 2\r\nx-request-id: abc\r\nx-forwarded-for: 10.0.0.1, 10.0.0.2, 192.0.2.7\r\nx-forwarded-proto: https\r\nx-forwarded-port: 443\r\n\r\n"
        );
        // HTTP/2: the authority is the Host; a body-less POST says so.
        let post = http::Request::post("https://app.example:8443/p")
            .version(Version::HTTP_2)
            .header("host", "ignored")
            .body(())
            .unwrap();
        let head = head_of(post).unwrap();
        assert!(
            head.starts_with(
                "POST /p HTTP/1.1\r\nhost: app.example:8443\r\nx-forwarded-for: 192.0.2.7\r\n"
            ),
            "{head}"
        );
        assert!(head.contains("\r\nx-request-id: "), "{head}");
        assert!(head.ends_with("\r\ncontent-length: 0\r\n\r\n"), "{head}");
        assert!(!head.contains("ignored"), "{head}");
        let declared = http::Request::put("/p")
            .header("content-length", "0")
            .header("x-request-id", "r")
            .body(())
            .unwrap();
        assert!(head_of(declared).unwrap().ends_with("x-request-id: r\r\nx-forwarded-for: 192.0.2.7\r\nx-forwarded-proto: https\r\nx-forwarded-port: 443\r\n\r\n"));
        let listing = http::Request::get("/")
            .header("connection", "keep-alive, x-secret")
            .body(())
            .unwrap();
        assert!(head_of(listing).is_none(), "left to the header-map rewrite");
    }

    fn parsed(head: &str, head_request: bool) -> Parsed {
        parse(&BytesMut::from(head.as_bytes()), head_request)
    }

    #[test]
    fn response_heads_become_parts_without_hop_by_hop_headers() {
        let head = "HTTP/1.1 200 OK\r\nServer: t\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nContent-Length: 3\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\nabc";
        let Parsed::Complete(resp, len) = parsed(head, false) else {
            panic!("not complete")
        };
        assert_eq!(len, head.len() - 3);
        assert_eq!(resp.parts.status, StatusCode::OK);
        assert_eq!((resp.framing, resp.reusable), (Framing::Length(3), true));
        let names: Vec<_> = resp.parts.headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["server", "content-length", "set-cookie"]);
        assert_eq!(resp.parts.headers.get_all("set-cookie").iter().count(), 2);
        assert!(
            resp.parts
                .extensions
                .get::<hyper::ext::ReasonPhrase>()
                .is_none()
        );
    }

    #[test]
    fn odd_response_heads() {
        let Parsed::Complete(resp, _) = parsed("HTTP/1.1 299 Fine\r\n\r\n", false) else {
            panic!("not complete")
        };
        assert_eq!(resp.framing, Framing::UntilClose);
        let reason = resp.parts.extensions.get::<hyper::ext::ReasonPhrase>();
        assert_eq!(reason.map(|r| r.as_bytes()), Some(&b"Fine"[..]));
        let chunked = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n";
        let Parsed::Complete(resp, _) = parsed(chunked, false) else {
            panic!("not complete")
        };
        assert_eq!((resp.framing, resp.reusable), (Framing::Chunked, false));
        assert!(resp.parts.headers.is_empty());
        assert!(matches!(
            parsed("HTTP/1.1 100 Continue\r\n\r\n", false),
            Parsed::Informational(25)
        ));
        assert!(matches!(
            parsed("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", true),
            Parsed::Complete(
                RawResponse {
                    framing: Framing::Empty,
                    ..
                },
                _
            )
        ));
        assert!(matches!(
            parsed("HTTP/1.1 200 OK\r\nX: ", false),
            Parsed::Partial
        ));
        assert!(matches!(
            parsed("nonsense\r\n\r\n", false),
            Parsed::Invalid(_)
        ));
        assert!(matches!(
            parsed("HTTP/1.1 101 Switching\r\n\r\n", false),
            Parsed::Invalid(_)
        ));
    }
}
