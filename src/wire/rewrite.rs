//! The request head a target gets, written from the client's: what happens
//! to each client header ([`fate`]: hop-by-hop and look-alikes out, the
//! client's `X-Forwarded-For` values kept in front of its address), and the
//! head itself ([`target_head`]) written straight from the client's header
//! lines, whichever stack parsed them (names keep their case, as nginx and
//! HAProxy keep them). hyper's client path applies the same [`fate`] to a
//! header map (`proxy::headers::prepare_request`).

use super::forwarded::{
    ForwardedFor, aliases_own_header, names_client_cert, names_oidc, new_request_id_bytes,
};
use super::response::is_hop_by_hop;

/// What a client header becomes in the request a target gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Passed on as the client sent it.
    Keep,
    /// Passed on; the client named its request (no id is made).
    RequestId,
    /// Its values go in front of the client's address in edgelb's one
    /// `X-Forwarded-For` line.
    ForwardedFor,
    /// Left out: hop-by-hop (RFC 9110 §7.6.1), replaced by edgelb's own
    /// (`X-Forwarded-Proto`, `-Port`, the client-certificate headers of
    /// [`names_client_cert`], whatever the listener), or an underscore
    /// spelling of one of edgelb's own headers ([`aliases_own_header`]).
    Drop,
}

/// The [`Fate`] of a client header named `name` (any case). Headers the
/// client's `Connection` names are the caller's concern: the written paths
/// take no such request, the header-map path drops them.
#[inline]
pub fn fate(name: &str) -> Fate {
    let is = |n: &str| name.eq_ignore_ascii_case(n);
    // Cheap first cut on the length: most names are none of these.
    match name.len() {
        12 if is("x-request-id") => Fate::RequestId,
        15 if is("x-forwarded-for") => Fate::ForwardedFor,
        16 if is("x-forwarded-port") => Fate::Drop,
        17 if is("x-forwarded-proto") => Fate::Drop,
        12 | 15..=17 if aliases_own_header(name) => Fate::Drop,
        22.. if names_client_cert(name) => Fate::Drop,
        13.. if names_oidc(name) => Fate::Drop,
        _ if is_hop_by_hop(name) => Fate::Drop,
        _ => Fate::Keep,
    }
}

/// The first line of a target's request head, and what is written besides
/// the client's headers.
pub struct RequestLine<'a> {
    pub method: &'a [u8],
    /// Origin form: `/path?query`.
    pub target: &'a [u8],
    /// A `Host` written first in place of the client's (an HTTP/2 request's
    /// authority); `None` keeps the client's.
    pub host: Option<&'a [u8]>,
    /// The client-certificate lines of the connection (SPEC §8), each
    /// ending in CRLF; empty without one.
    pub identity: &'a [u8],
    /// Lines written last, each ending in CRLF (`content-length: 0`).
    pub extra: &'a [u8],
}

/// Writes the target's HTTP/1.1 request head into `out`: `line`, the
/// client's headers (from `headers`, called once more only when the client
/// sent an `X-Forwarded-For`) each as [`fate`] says, `X-Forwarded-*` and an
/// `X-Request-Id` when the client sent none. Returns the id made.
pub fn target_head<'v, I>(
    out: &mut Vec<u8>,
    line: &RequestLine<'_>,
    headers: impl Fn() -> I,
    fwd: &ForwardedFor,
) -> Option<[u8; 32]>
where
    I: Iterator<Item = (&'v str, &'v [u8])>,
{
    out.clear();
    out.extend_from_slice(line.method);
    out.push(b' ');
    out.extend_from_slice(line.target);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if let Some(host) = line.host {
        out.extend_from_slice(b"host: ");
        out.extend_from_slice(host);
        out.extend_from_slice(b"\r\n");
    }
    let mut forwarded_for = false;
    let mut has_request_id = false;
    for (name, value) in headers() {
        match fate(name) {
            Fate::Keep if line.host.is_some() && name.eq_ignore_ascii_case("host") => continue,
            Fate::Keep => {}
            Fate::RequestId => has_request_id = true,
            Fate::ForwardedFor => {
                forwarded_for = true;
                continue;
            }
            Fate::Drop => continue,
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"x-forwarded-for: ");
    if forwarded_for {
        for (_, value) in headers().filter(|(n, _)| fate(n) == Fate::ForwardedFor) {
            out.extend_from_slice(value);
            out.extend_from_slice(b", ");
        }
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
    out.extend_from_slice(line.identity);
    out.extend_from_slice(line.extra);
    out.extend_from_slice(b"\r\n");
    made
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::request::{MAX_HEADERS, Parsed, parse};
    use http::HeaderValue;

    fn fwd() -> ForwardedFor {
        ForwardedFor {
            client_ip: HeaderValue::from_static("192.0.2.7"),
            proto: HeaderValue::from_static("http"),
            port: HeaderValue::from_static("8080"),
        }
    }

    fn rewritten(client: &str) -> String {
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let Parsed::Complete(head) = parse(client.as_bytes(), &mut slots, 8192) else {
            panic!("not a fast-path head: {client:?}");
        };
        let line = RequestLine {
            method: head.method.as_bytes(),
            target: head.target,
            host: None,
            identity: b"",
            extra: b"",
        };
        let mut out = Vec::new();
        target_head(
            &mut out,
            &line,
            || head.headers.iter().map(|h| (h.name, h.value)),
            &fwd(),
        );
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

    #[test]
    fn a_host_given_replaces_the_clients_and_extra_lines_come_last() {
        let headers = [("Host", &b"ignored"[..]), ("x-a", b"1")];
        let line = RequestLine {
            method: b"POST",
            target: b"/p",
            host: Some(b"app.example:8443"),
            identity: b"x-amzn-mtls-clientcert-serial-number: 0A\r\n",
            extra: b"content-length: 0\r\n",
        };
        let mut out = Vec::new();
        target_head(&mut out, &line, || headers.iter().copied(), &fwd());
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.starts_with("POST /p HTTP/1.1\r\nhost: app.example:8443\r\nx-a: 1\r\n"),
            "{out}"
        );
        assert!(
            out.ends_with(
                "\r\nx-amzn-mtls-clientcert-serial-number: 0A\r\ncontent-length: 0\r\n\r\n"
            ),
            "{out}"
        );
        assert!(!out.contains("ignored"), "{out}");
    }

    #[test]
    fn fates_of_names_in_any_case() {
        for (name, want) in [
            ("X-Request-Id", Fate::RequestId),
            ("x-forwarded-FOR", Fate::ForwardedFor),
            ("X-Forwarded-Proto", Fate::Drop),
            ("x-forwarded-port", Fate::Drop),
            ("X_Forwarded_For", Fate::Drop),
            ("X-Amzn-Mtls-Clientcert-Subject", Fate::Drop),
            ("x_amzn_mtls_clientcert", Fate::Drop),
            ("x-amzn-oidc-identity", Fate::Drop),
            ("X_Amzn_Oidc_Data", Fate::Drop),
            ("x-amzn-oidc", Fate::Keep),
            ("X-Amzn-Mtls-Clientcertificate", Fate::Drop),
            ("x-amzn-mtls-client", Fate::Keep),
            ("x-request_id", Fate::Drop),
            ("Connection", Fate::Drop),
            ("TE", Fate::Drop),
            ("Transfer-Encoding", Fate::Drop),
            ("Proxy-Connection", Fate::Drop),
            ("x-forwarded-host", Fate::Keep),
            ("x_custom", Fate::Keep),
            ("Host", Fate::Keep),
            ("content-length", Fate::Keep),
        ] {
            assert_eq!(fate(name), want, "{name}");
        }
    }
}
