//! A target's response head read in place, and the head the client gets:
//! hop-by-hop headers out, framing made explicit, `Date` added when missing.

use super::connection::Token;

/// A target's response head larger than this is refused (502), as HAProxy's
/// 16 KiB buffer and nginx's `proxy_buffer_size` do; it also caps hyper's read
/// buffer for response bodies (streamed in reads of up to this size).
pub const TARGET_MAX_HEAD_BYTES: usize = 64 * 1024;

/// Header lines a target's response may have (hyper's limit too).
pub const MAX_HEADERS: usize = 100;

/// How a response body is delimited on the target connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (HEAD, 204, 304, or `Content-Length: 0`).
    Empty,
    Length(u64),
    /// Passed on as it is; [`super::chunked::ChunkedScan`] finds its end.
    Chunked,
    /// Until the target closes; sent on chunked to the client.
    UntilClose,
}

/// A response head, with the client's version written.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: u16,
    /// Bytes of the target's head.
    pub len: usize,
    pub framing: Framing,
    /// The target connection can carry another request after this body.
    pub reusable: bool,
}

/// Why a target's response was refused: its head is larger than we take.
pub const HEAD_TOO_LARGE: &str = "response head too large";

/// What the bytes read from the target so far hold: for the fast path a
/// [`ResponseHead`], for `proxy::raw` the parts hyper's server takes.
#[derive(Debug)]
pub enum Parsed<T = ResponseHead> {
    Complete(T),
    Partial,
    /// A 1xx head of this many bytes: skipped, the real one follows.
    Informational(usize),
    Invalid(&'static str),
}

/// A final response head httparse took whole: what both parsers start from.
pub struct FinalHead<'b, 'h> {
    /// Bytes of the target's head.
    pub len: usize,
    pub version: u8,
    pub status: u16,
    pub reason: Option<&'b str>,
    pub headers: &'h [httparse::Header<'b>],
    pub facts: HeadFacts<'b>,
}

impl<T> Parsed<T> {
    /// `f` of a complete head; anything else as it is.
    #[inline(always)]
    pub fn and_then<U>(self, f: impl FnOnce(T) -> Parsed<U>) -> Parsed<U> {
        match self {
            Parsed::Complete(t) => f(t),
            Parsed::Partial => Parsed::Partial,
            Parsed::Informational(n) => Parsed::Informational(n),
            Parsed::Invalid(why) => Parsed::Invalid(why),
        }
    }
}

/// Reads a response head at the start of `buf` into `slots` (the answer to a
/// HEAD request when `head_request`): complete only for a final status, with
/// its framing and connection facts; a head over `TARGET_MAX_HEAD_BYTES` is
/// refused.
#[inline(always)]
pub fn read_head<'b, 'h>(
    buf: &'b [u8],
    slots: &'h mut [httparse::Header<'b>],
    head_request: bool,
) -> Parsed<FinalHead<'b, 'h>> {
    let mut resp = httparse::Response::new(slots);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Invalid("malformed response head"),
    };
    if len > TARGET_MAX_HEAD_BYTES {
        return Parsed::Invalid(HEAD_TOO_LARGE);
    }
    let (Some(version), Some(status)) = (resp.version, resp.code) else {
        return Parsed::Invalid("malformed response head");
    };
    match final_status(status) {
        Ok(true) => {}
        Ok(false) => return Parsed::Informational(len),
        Err(why) => return Parsed::Invalid(why),
    }
    let headers: &'h [httparse::Header<'b>] = resp.headers;
    match HeadFacts::read(version, status, headers, head_request) {
        Ok(facts) => Parsed::Complete(FinalHead {
            len,
            version,
            status,
            reason: resp.reason,
            headers,
            facts,
        }),
        Err(why) => Parsed::Invalid(why),
    }
}

/// Reads a response head at the start of `buf` (the answer to a HEAD request
/// when `head_request`) and writes the client's head into `out`; with
/// `close`, the client's connection closes after this response.
pub fn parse(buf: &[u8], head_request: bool, close: bool, out: &mut Vec<u8>) -> Parsed {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    read_head(buf, &mut slots, head_request).and_then(|head| write_client_head(head, close, out))
}

/// Writes the client's head for `head` into `out`.
#[inline(always)]
fn write_client_head(head: FinalHead<'_, '_>, close: bool, out: &mut Vec<u8>) -> Parsed {
    let FinalHead {
        len,
        status,
        reason,
        headers,
        facts,
        ..
    } = head;
    let framing = facts.framing;
    let reusable = facts.reusable;

    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa_3(status).as_slice());
    out.push(b' ');
    out.extend_from_slice(reason.unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for h in headers {
        if facts.drops(h.name) {
            continue;
        }
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    if matches!(framing, Framing::Chunked | Framing::UntilClose) {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    if !facts.has_date {
        out.extend_from_slice(b"date: ");
        super::date::append(out);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Parsed::Complete(ResponseHead {
        status,
        len,
        framing,
        reusable,
    })
}

/// Whether a target's response status ends the exchange (`false`: a 1xx head
/// to skip); a 101 nobody asked for, or a status out of range, is refused.
#[inline]
fn final_status(status: u16) -> Result<bool, &'static str> {
    match status {
        101 => Err("101 to a request that asked for no upgrade"),
        100..=199 => Ok(false),
        200..=999 => Ok(true),
        _ => Err("status out of range"),
    }
}

/// What a response head's framing and connection headers say.
pub struct HeadFacts<'h> {
    pub framing: Framing,
    /// The target connection can carry another request after this body.
    pub reusable: bool,
    pub has_date: bool,
    /// Transfer-Encoding was there: a Content-Length beside it is dropped.
    transfer_encoding: bool,
    /// Names the `Connection` header lists (hop-by-hop too).
    listed: [&'h [u8]; 8],
    n_listed: usize,
}

impl<'h> HeadFacts<'h> {
    /// Reads the headers of a response with `status` in HTTP/1.`version`, the
    /// answer to a HEAD request when `head_request`.
    #[inline(always)]
    fn read(
        version: u8,
        status: u16,
        headers: &[httparse::Header<'h>],
        head_request: bool,
    ) -> Result<Self, &'static str> {
        let mut listed: [&[u8]; 8] = [b""; 8];
        let mut n_listed = 0;
        let mut keep_alive = version == 1;
        let mut length: Option<u64> = None;
        let mut chunked = None;
        let mut has_date = false;
        for h in headers {
            match h.name.len() {
                4 if h.name.eq_ignore_ascii_case("date") => has_date = true,
                10 if h.name.eq_ignore_ascii_case("connection") => {
                    for token in super::connection::tokens(h.value) {
                        match token {
                            Token::Close => keep_alive = false,
                            Token::KeepAlive => keep_alive = keep_alive || version == 0,
                            Token::Upgrade if n_listed < listed.len() => {
                                listed[n_listed] = b"upgrade";
                                n_listed += 1;
                            }
                            Token::Other(name) if n_listed < listed.len() => {
                                listed[n_listed] = name;
                                n_listed += 1;
                            }
                            Token::Upgrade | Token::Other(_) => {}
                        }
                    }
                }
                14 if h.name.eq_ignore_ascii_case("content-length") => {
                    let Some(n) = parse_length(h.value) else {
                        return Err("malformed Content-Length");
                    };
                    if length.is_some_and(|l| l != n) {
                        return Err("two different Content-Lengths");
                    }
                    length = Some(n);
                }
                17 if h.name.eq_ignore_ascii_case("transfer-encoding") => {
                    if chunked.is_some() || !is_plain_chunked(h.value) {
                        return Err(NOT_CHUNKED);
                    }
                    chunked = Some(true);
                }
                _ => {}
            }
        }
        let bodiless = head_request || status == 204 || status == 304;
        let framing = match (chunked, length) {
            _ if bodiless => Framing::Empty,
            (Some(true), _) => Framing::Chunked,
            (Some(false), _) => Framing::UntilClose,
            (None, Some(0)) => Framing::Empty,
            (None, Some(n)) => Framing::Length(n),
            (None, None) => Framing::UntilClose,
        };
        // Both framings at once: chunked wins and the connection is not trusted
        // with another request (RFC 9112 §6.3).
        let reusable = keep_alive
            && framing != Framing::UntilClose
            && !(chunked.is_some() && length.is_some());
        Ok(HeadFacts {
            framing,
            reusable,
            has_date,
            transfer_encoding: chunked.is_some(),
            listed,
            n_listed,
        })
    }

    /// Whether header `name` stays on this side of the proxy: hop-by-hop, named
    /// in `Connection`, or a Content-Length beside a Transfer-Encoding.
    #[inline(always)]
    pub fn drops(&self, name: &str) -> bool {
        is_hop_by_hop(name)
            || (self.transfer_encoding && name.eq_ignore_ascii_case("content-length"))
            || self.listed[..self.n_listed]
                .iter()
                .any(|t| t.eq_ignore_ascii_case(name.as_bytes()))
    }
}

/// Why a response whose Transfer-Encoding is not one `chunked` is refused.
pub const NOT_CHUNKED: &str = "a Transfer-Encoding other than chunked";

/// Whether a Transfer-Encoding value is `chunked` alone. A target that answers
/// with other codings (`gzip`, `chunked, identity`) would have its body read
/// until the connection closes, which a keep-alive target never does: such a
/// response gets 502 at once (as nginx: "upstream sent unknown
/// Transfer-Encoding"), on every path.
pub fn is_plain_chunked(value: &[u8]) -> bool {
    value.trim_ascii().eq_ignore_ascii_case(b"chunked")
}

/// Hop-by-hop headers (RFC 9110 §7.6.1, and the old `Proxy-Connection`),
/// whatever their case.
pub fn is_hop_by_hop(name: &str) -> bool {
    let is = |n: &str| name.eq_ignore_ascii_case(n);
    match name.len() {
        2 => is("te"),
        7 => is("trailer") || is("upgrade"),
        10 => is("connection") || is("keep-alive"),
        16 => is("proxy-connection"),
        17 => is("transfer-encoding"),
        18 => is("proxy-authenticate"),
        _ => false,
    }
}

/// A Content-Length value: digits only (one value; a list of equal ones too).
fn parse_length(value: &[u8]) -> Option<u64> {
    let mut found: Option<u64> = None;
    for part in value.split(|&b| b == b',') {
        let part = part.trim_ascii();
        if part.is_empty() || part.len() > 18 || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = part.iter().fold(0u64, |n, d| n * 10 + (d - b'0') as u64);
        if found.is_some_and(|f| f != n) {
            return None;
        }
        found = Some(n);
    }
    found
}

fn itoa_3(status: u16) -> [u8; 3] {
    [
        b'0' + (status / 100 % 10) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_head(target: &str, head_request: bool, close: bool) -> (Parsed, String) {
        let mut out = Vec::new();
        let parsed = parse(target.as_bytes(), head_request, close, &mut out);
        (parsed, String::from_utf8(out).unwrap())
    }

    #[test]
    fn keeps_end_to_end_headers_and_drops_hop_by_hop_ones() {
        let target = "HTTP/1.1 200 OK\r\nDate: x\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nX-App: a\r\nContent-Length: 3\r\n\r\nabc";
        let (parsed, out) = client_head(target, false, false);
        let Parsed::Complete(h) = parsed else {
            panic!("{parsed:?}")
        };
        assert_eq!(
            (h.status, h.framing, h.reusable),
            (200, Framing::Length(3), true)
        );
        assert_eq!(h.len, target.len() - 3);
        assert_eq!(
            out,
            "HTTP/1.1 200 OK\r\nDate: x\r\nX-App: a\r\nContent-Length: 3\r\n\r\n"
        );
    }

    #[test]
    fn framing_of_each_kind() {
        let framing = |head: &str, head_request| match client_head(head, head_request, false).0 {
            Parsed::Complete(h) => (h.framing, h.reusable),
            other => panic!("{other:?}"),
        };
        let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(framing(chunked, false), (Framing::Chunked, true));
        let both = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(framing(both, false), (Framing::Chunked, false));
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\n\r\n", false),
            (Framing::UntilClose, false)
        );
        let length = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
        assert_eq!(framing(length, true), (Framing::Empty, true));
        assert_eq!(
            framing("HTTP/1.1 304 Not Modified\r\n\r\n", false),
            (Framing::Empty, true)
        );
        let old = "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n";
        assert_eq!(framing(old, false), (Framing::Length(1), false));
        let closing = "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n";
        assert_eq!(framing(closing, false), (Framing::Length(1), false));
    }

    #[test]
    fn codings_other_than_chunked_are_refused() {
        for te in ["chunked, identity", "gzip", "gzip, chunked", "identity"] {
            let head = format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: {te}\r\n\r\n");
            assert!(
                matches!(
                    client_head(&head, false, false).0,
                    Parsed::Invalid(NOT_CHUNKED)
                ),
                "{te}"
            );
        }
        let twice =
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(matches!(
            client_head(twice, false, false).0,
            Parsed::Invalid(_)
        ));
    }

    #[test]
    fn the_client_head_says_chunked_and_close_and_has_a_date() {
        let (_, out) = client_head("HTTP/1.1 299 Whatever\r\n\r\n", false, true);
        assert!(out.starts_with(
            "HTTP/1.1 299 Whatever\r\ntransfer-encoding: chunked\r\nconnection: close\r\ndate: "
        ));
        assert!(out.ends_with(" GMT\r\n\r\n"), "{out}");
    }

    #[test]
    fn odd_heads() {
        assert!(matches!(
            client_head("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1", false, false).0,
            Parsed::Informational(25)
        ));
        assert!(matches!(
            client_head("HTTP/1.1 101 Switching\r\n\r\n", false, false).0,
            Parsed::Invalid(_)
        ));
        assert!(matches!(
            client_head(
                "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                false,
                false
            )
            .0,
            Parsed::Invalid(_)
        ));
        assert!(matches!(
            client_head(
                "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                false,
                false
            )
            .0,
            Parsed::Invalid(_)
        ));
        assert!(matches!(
            client_head("HTTP/1.1 200 OK\r\nContent-Le", false, false).0,
            Parsed::Partial
        ));
        assert!(matches!(
            client_head("garbage\r\n\r\n", false, false).0,
            Parsed::Invalid(_)
        ));
    }

    #[test]
    fn a_head_larger_than_we_take_is_refused_whole() {
        let filler = "x".repeat(1000);
        let mut head = String::from("HTTP/1.1 200 OK\r\n");
        while head.len() <= TARGET_MAX_HEAD_BYTES {
            head.push_str(&format!("X-Fill: {filler}\r\n"));
        }
        head.push_str("Content-Length: 0\r\n\r\n");
        let (parsed, _) = client_head(&head, false, false);
        assert!(
            matches!(parsed, Parsed::Invalid(HEAD_TOO_LARGE)),
            "{parsed:?}"
        );
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let status_line = &head[..head.find("X-Fill").unwrap()];
        let small = format!("{status_line}Content-Length: 0\r\n\r\n");
        assert!(matches!(
            read_head(small.as_bytes(), &mut slots, false),
            Parsed::Complete(FinalHead { status: 200, .. })
        ));
    }
}
