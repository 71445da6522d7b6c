//! A client's request head read in place, and whether the fast path serves it.
//!
//! The fast path takes the common request: HTTP/1.1, origin form, no body or one
//! of a declared length, no protocol switch. Everything else — chunked bodies,
//! `Expect`, upgrades, HTTP/1.0, an
//! absolute-form target, the HTTP/2 preface, heads to refuse (400, 414, 431) —
//! is left to hyper with the bytes read so far, so it gets the same answer as
//! before the fast path existed.

use super::connection::Token;

/// Longest request target accepted (nginx's default large header buffer);
/// longer ones get 414. Heads over `max_header_bytes` get 431 before this.
pub const MAX_URI_BYTES: usize = 8192;

/// Header lines a fast-path request may have (more: hyper's path).
pub const MAX_HEADERS: usize = 64;

/// A request head the fast path serves, borrowed from the client's buffer.
pub struct RequestHead<'b> {
    pub method: &'b str,
    /// Origin form: `/path?query`.
    pub target: &'b [u8],
    /// The one `Host` header's value.
    pub host: &'b [u8],
    pub headers: &'b [httparse::Header<'b>],
    /// Bytes of the head, blank line included.
    pub len: usize,
    /// `Connection: close`: the connection ends after this response.
    pub close: bool,
    /// The body's length (`Content-Length`; 0 without one).
    pub body_len: u64,
}

/// What the bytes read so far hold.
pub enum Parsed<'b> {
    Complete(RequestHead<'b>),
    /// A head has started and is not complete yet.
    Partial,
    /// Something for hyper's path.
    Unusual,
}

/// Reads a request head at the start of `buf` into `slots`.
pub fn parse<'b>(
    buf: &'b [u8],
    slots: &'b mut [httparse::Header<'b>],
    max_header_bytes: usize,
) -> Parsed<'b> {
    let mut req = httparse::Request::new(slots);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Unusual,
    };
    let (Some(method), Some(target), Some(1)) = (req.method, req.path, req.version) else {
        return Parsed::Unusual;
    };
    let target = target.as_bytes();
    if method == "CONNECT"
        || target.first() != Some(&b'/')
        || target.len() > MAX_URI_BYTES
        || !target.iter().all(|&b| is_plain_target_byte(b))
    {
        return Parsed::Unusual;
    }
    let headers: &'b [httparse::Header<'b>] = req.headers;
    // The size hyper's path compares with `max_header_bytes`.
    let mut size = method.len() + target.len() + 12;
    let mut host = None;
    let mut close = false;
    let mut body_len = None;
    for h in headers {
        size += h.name.len() + h.value.len() + 4;
        match classify(h.name) {
            Name::Other => {}
            Name::Host => {
                if host.replace(h.value).is_some() {
                    return Parsed::Unusual;
                }
            }
            Name::ContentLength => {
                // One plain decimal length; anything else is hyper's to refuse.
                let digits = h.value;
                if body_len.is_some()
                    || digits.is_empty()
                    || digits.len() > 18
                    || !digits.iter().all(u8::is_ascii_digit)
                {
                    return Parsed::Unusual;
                }
                body_len = Some(digits.iter().fold(0u64, |n, d| n * 10 + (d - b'0') as u64));
            }
            Name::Connection => {
                for token in super::connection::tokens(h.value) {
                    match token {
                        Token::Close => close = true,
                        Token::KeepAlive => {}
                        // Upgrades, and headers named hop-by-hop.
                        Token::Upgrade | Token::Other(_) => return Parsed::Unusual,
                    }
                }
            }
            Name::Unusual => return Parsed::Unusual,
        }
    }
    if size > max_header_bytes {
        return Parsed::Unusual;
    }
    let Some(host) = host else {
        return Parsed::Unusual;
    };
    Parsed::Complete(RequestHead {
        method,
        target,
        host,
        headers,
        len,
        close,
        body_len: body_len.unwrap_or(0),
    })
}

/// Bytes of a request target any parser reads the same way: unreserved,
/// sub-delims, `:@/?%` (RFC 3986). Anything else goes to hyper's stricter URI.
fn is_plain_target_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
                | b'/'
                | b'?'
                | b'%'
        )
}

enum Name {
    Other,
    Host,
    ContentLength,
    Connection,
    /// A body, an upgrade or an expectation: hyper's path.
    Unusual,
}

fn classify(name: &str) -> Name {
    // Cheap first cut on the length: most names are none of these.
    match name.len() {
        4 if name.eq_ignore_ascii_case("host") => Name::Host,
        6 if name.eq_ignore_ascii_case("expect") => Name::Unusual,
        7 if name.eq_ignore_ascii_case("upgrade") => Name::Unusual,
        10 if name.eq_ignore_ascii_case("connection") => Name::Connection,
        13 if name.eq_ignore_ascii_case("http2-settings") => Name::Unusual,
        14 if name.eq_ignore_ascii_case("content-length") => Name::ContentLength,
        17 if name.eq_ignore_ascii_case("transfer-encoding") => Name::Unusual,
        // An underscore spelling of a header edgelb writes: hyper's path drops it.
        12 | 15 | 16 | 17 if super::forwarded::aliases_own_header(name) => Name::Unusual,
        _ => Name::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(head: &str) -> Option<(String, bool)> {
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        match parse(head.as_bytes(), &mut slots, 8192) {
            Parsed::Complete(h) => Some((String::from_utf8(h.target.to_vec()).unwrap(), h.close)),
            Parsed::Partial => Some(("partial".into(), false)),
            Parsed::Unusual => None,
        }
    }

    #[test]
    fn common_requests_are_served() {
        assert_eq!(
            parsed("GET /a?b=1 HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some(("/a?b=1".into(), false))
        );
        assert_eq!(
            parsed(
                "DELETE /a HTTP/1.1\r\nhost: x\r\nConnection: Close\r\nX-Request-Id: 7\r\ncontent-length: 0\r\n\r\n"
            ),
            Some(("/a".into(), true))
        );
        assert_eq!(
            parsed("GET / HTTP/1.1\r\nHost: x\r\n"),
            Some(("partial".into(), false))
        );
    }

    #[test]
    fn a_declared_body_length_is_read() {
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let Parsed::Complete(h) = parse(
            b"POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\nhello",
            &mut slots,
            8192,
        ) else {
            panic!("a fast-path head");
        };
        assert_eq!((h.body_len, h.len), (12, 51));
    }

    #[test]
    fn everything_else_goes_to_hyper() {
        for head in [
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, x-secret\r\n\r\n",
            "PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n",
            "GET / HTTP/1.0\r\nHost: x\r\n\r\n",
            "GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n",
            "CONNECT x:443 HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET /a<b> HTTP/1.1\r\nHost: x\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
        ] {
            assert_eq!(parsed(head), None, "{head:?}");
        }
        let long = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nx-big: {}\r\n\r\n",
            "a".repeat(9000)
        );
        assert_eq!(parsed(&long), None);
    }
}
