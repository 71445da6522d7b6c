//! A target's response head parsed in place into parts for hyper's server.

use crate::wire::response::{FinalHead, Framing, MAX_HEADERS, Parsed, read_head};
use bytes::{Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode, Version};

/// A target's response head, as parts for hyper's server side.
pub struct RawResponse {
    pub parts: http::response::Parts,
    pub framing: Framing,
    /// The connection can carry another request after the body.
    pub reusable: bool,
    /// Bytes of the target's head.
    pub len: usize,
}

/// Parses a response head at the start of `buf`.
pub(super) fn parse(buf: &BytesMut, head_request: bool) -> Parsed<RawResponse> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    read_head(buf, &mut slots, head_request).and_then(|head| into_parts(buf, head))
}

/// The parts of `head`, read from the start of `buf`.
#[inline(always)]
fn into_parts(buf: &BytesMut, head: FinalHead<'_, '_>) -> Parsed<RawResponse> {
    let FinalHead {
        len,
        version,
        status,
        reason,
        headers: lines,
        facts,
    } = head;
    let Ok(status) = StatusCode::from_u16(status) else {
        return Parsed::Invalid("status out of range");
    };
    // Header values are slices of one shared copy of the head.
    let head = Bytes::copy_from_slice(&buf[..len]);
    let base = buf.as_ptr() as usize;
    let mut headers = HeaderMap::with_capacity(lines.len());
    for h in lines {
        if facts.drops(h.name) {
            continue;
        }
        let Ok(name) = HeaderName::from_bytes(h.name.as_bytes()) else {
            return Parsed::Invalid("malformed header name");
        };
        let start = h.value.as_ptr() as usize - base;
        // SAFETY: httparse took only HTAB, SP..=0x7E and 0x80..=0xFF into a
        // value, the bytes a HeaderValue may hold (debug builds check again);
        // hyper's own HTTP/1 parser skips the second scan the same way.
        let value = unsafe {
            HeaderValue::from_maybe_shared_unchecked(head.slice(start..start + h.value.len()))
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
    if let Some(reason) = reason
        && Some(reason) != status.canonical_reason()
        && let Ok(phrase) = hyper::ext::ReasonPhrase::try_from(reason.as_bytes().to_vec())
    {
        parts.extensions.insert(phrase);
    }
    Parsed::Complete(RawResponse {
        parts,
        framing: facts.framing,
        reusable: facts.reusable,
        len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(head: &str, head_request: bool) -> Parsed<RawResponse> {
        parse(&BytesMut::from(head.as_bytes()), head_request)
    }

    #[test]
    fn response_heads_become_parts_without_hop_by_hop_headers() {
        let head = "HTTP/1.1 200 OK\r\nServer: t\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nContent-Length: 3\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\nabc";
        let Parsed::Complete(resp) = parsed(head, false) else {
            panic!("not complete")
        };
        assert_eq!(resp.len, head.len() - 3);
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
        let Parsed::Complete(resp) = parsed("HTTP/1.1 299 Fine\r\n\r\n", false) else {
            panic!("not complete")
        };
        assert_eq!(resp.framing, Framing::UntilClose);
        let reason = resp.parts.extensions.get::<hyper::ext::ReasonPhrase>();
        assert_eq!(reason.map(|r| r.as_bytes()), Some(&b"Fine"[..]));
        let chunked = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n";
        let Parsed::Complete(resp) = parsed(chunked, false) else {
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
            Parsed::Complete(RawResponse {
                framing: Framing::Empty,
                ..
            })
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

    #[test]
    fn header_values_keep_every_byte_a_target_may_send_and_refuse_the_rest() {
        let mut head =
            b"HTTP/1.1 200 OK\r\nX-Text: a\tb \xe9t\xff~\r\nContent-Length: 0\r\n\r\n".to_vec();
        let Parsed::Complete(resp) = parse(&BytesMut::from(&head[..]), false) else {
            panic!("not complete")
        };
        let value = resp.parts.headers.get("x-text").unwrap();
        assert_eq!(value.as_bytes(), b"a\tb \xe9t\xff~");
        for bad in [0x7f, 0x01, 0x00] {
            head[25] = bad;
            assert!(
                matches!(parse(&BytesMut::from(&head[..]), false), Parsed::Invalid(_)),
                "byte {bad:#x} in a value"
            );
        }
    }
}
