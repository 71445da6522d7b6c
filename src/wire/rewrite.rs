//! The request head a target gets, written straight from the client's head:
//! hop-by-hop headers out, `X-Forwarded-*` and `X-Request-Id` in, the rest as
//! the client sent it (names keep their case, as nginx and HAProxy keep them).

use super::forwarded::{ForwardedFor, new_request_id_bytes};
use super::request::RequestHead;
use super::response::is_hop_by_hop;

/// Writes the target's request head for `head` into `out`; the request id it
/// made, when the client sent none.
pub fn target_head(
    out: &mut Vec<u8>,
    head: &RequestHead<'_>,
    fwd: &ForwardedFor,
) -> Option<[u8; 32]> {
    out.clear();
    out.extend_from_slice(head.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(head.target);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut forwarded_for = 0;
    for h in head.headers {
        if is_hop_by_hop(h.name) {
            continue;
        }
        if h.name.len() > 12 && h.name.as_bytes()[..12].eq_ignore_ascii_case(b"x-forwarded-") {
            let rest = &h.name[12..];
            if rest.eq_ignore_ascii_case("for") {
                forwarded_for += 1;
                continue;
            }
            if rest.eq_ignore_ascii_case("proto") || rest.eq_ignore_ascii_case("port") {
                continue;
            }
        }
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    let earlier = head
        .headers
        .iter()
        .filter(|h| forwarded_for > 0 && h.name.eq_ignore_ascii_case("x-forwarded-for"))
        .map(|h| h.value);
    let made = forwarded_lines(out, earlier, fwd, head.has_request_id);
    out.extend_from_slice(b"\r\n");
    made
}

/// Writes the `X-Forwarded-*` lines (the client's own `X-Forwarded-For` values
/// `earlier` first, then its address: one line) and an `X-Request-Id` line when
/// the client sent none; the id made.
pub fn forwarded_lines<'v>(
    out: &mut Vec<u8>,
    earlier: impl Iterator<Item = &'v [u8]>,
    fwd: &ForwardedFor,
    has_request_id: bool,
) -> Option<[u8; 32]> {
    out.extend_from_slice(b"x-forwarded-for: ");
    for value in earlier {
        out.extend_from_slice(value);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(fwd.client_ip.as_bytes());
    out.extend_from_slice(b"\r\nx-forwarded-proto: ");
    out.extend_from_slice(fwd.proto.as_bytes());
    out.extend_from_slice(b"\r\nx-forwarded-port: ");
    out.extend_from_slice(fwd.port.as_bytes());
    out.extend_from_slice(b"\r\n");
    let made = (!has_request_id).then(new_request_id_bytes);
    if let Some(id) = &made {
        out.extend_from_slice(b"x-request-id: ");
        out.extend_from_slice(id);
        out.extend_from_slice(b"\r\n");
    }
    made
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::request::{MAX_HEADERS, Parsed, parse};
    use http::HeaderValue;

    fn rewritten(client: &str) -> String {
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let Parsed::Complete(head) = parse(client.as_bytes(), &mut slots, 8192) else {
            panic!("not a fast-path head: {client:?}");
        };
        let fwd = ForwardedFor {
            client_ip: HeaderValue::from_static("192.0.2.7"),
            proto: HeaderValue::from_static("http"),
            port: HeaderValue::from_static("8080"),
        };
        let mut out = Vec::new();
        target_head(&mut out, &head, &fwd);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn forwarded_headers_replace_and_append() {
        let out = rewritten(
            "GET /x?y HTTP/1.1\r\nHost: a.example\r\nX-Forwarded-For: 10.0.0.1\r\nConnection: keep-alive\r\nKeep-Alive: 5\r\nTE: trailers\r\nx-forwarded-proto: https\r\nX-Forwarded-For: 10.0.0.2\r\nX-Request-Id: abc\r\nAccept: */*\r\n\r\n",
        );
        assert_eq!(
            out,
            "GET /x?y HTTP/1.1\r\nHost: a.example\r\nX-Request-Id: abc\r\nAccept: */*\r\nx-forwarded-for: 10.0.0.1, 10.0.0.2, 192.0.2.7\r\nx-forwarded-proto: http\r\nx-forwarded-port: 8080\r\n\r\n"
        );
    }

    #[test]
    fn a_request_id_is_made_when_missing() {
        let out = rewritten("HEAD / HTTP/1.1\r\nHost: a\r\n\r\n");
        let id = out
            .lines()
            .find_map(|l| l.strip_prefix("x-request-id: "))
            .expect("an id");
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(out.starts_with("HEAD / HTTP/1.1\r\nHost: a\r\nx-forwarded-for: 192.0.2.7\r\n"));
    }
}
