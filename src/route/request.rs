//! What routing sees of a request: borrowed views, no allocation.

use http::request::Parts;
use http::{HeaderMap, HeaderName, Method, header};
use std::borrow::Cow;
use std::net::IpAddr;

/// The parts of a request head that conditions look at.
pub struct RequestView<'a> {
    pub method: &'a Method,
    /// Host header (or `:authority`) without its port; empty when absent.
    pub host: &'a [u8],
    /// The path as received with dot-segments removed (no percent-decoding).
    pub path: Cow<'a, [u8]>,
    /// The raw query string without `?` (empty when none).
    pub query: &'a [u8],
    pub headers: HeaderLines<'a>,
    /// The TCP peer (IPv4-mapped IPv6 shown as IPv4).
    pub source_ip: IpAddr,
}

impl<'a> RequestView<'a> {
    /// A view of `parts` from a client at `source_ip`.
    pub fn new(parts: &'a Parts, source_ip: IpAddr) -> Self {
        let authority = parts
            .headers
            .get(header::HOST)
            .map(|h| h.as_bytes())
            .or_else(|| parts.uri.authority().map(|a| a.as_str().as_bytes()))
            .unwrap_or(b"");
        RequestView {
            method: &parts.method,
            host: strip_port(authority),
            path: remove_dot_segments(parts.uri.path().as_bytes()),
            query: parts.uri.query().unwrap_or("").as_bytes(),
            headers: HeaderLines::Map(&parts.headers),
            source_ip: source_ip.to_canonical(),
        }
    }

    /// A view of a request head parsed in place (the HTTP/1 fast path):
    /// `target` in origin form, `host` the Host header's value.
    pub fn raw(
        method: &'a Method,
        target: &'a [u8],
        host: &'a [u8],
        headers: &'a [httparse::Header<'a>],
        source_ip: IpAddr,
    ) -> Self {
        let (path, query) = match memchr::memchr(b'?', target) {
            Some(q) => (&target[..q], &target[q + 1..]),
            None => (target, &b""[..]),
        };
        RequestView {
            method,
            host: strip_port(host),
            path: remove_dot_segments(path),
            query,
            headers: HeaderLines::Raw(headers),
            source_ip: source_ip.to_canonical(),
        }
    }
}

/// A request's header lines as routing reads them: hyper's map, or the lines
/// of a head parsed in place.
#[derive(Clone, Copy)]
pub enum HeaderLines<'a> {
    Map(&'a HeaderMap),
    Raw(&'a [httparse::Header<'a>]),
}

impl HeaderLines<'_> {
    /// Whether any value of header `name` satisfies `pred`.
    pub fn any_value(&self, name: &HeaderName, pred: impl Fn(&[u8]) -> bool) -> bool {
        match self {
            HeaderLines::Map(map) => map.get_all(name).iter().any(|v| pred(v.as_bytes())),
            HeaderLines::Raw(lines) => lines
                .iter()
                .any(|h| h.name.eq_ignore_ascii_case(name.as_str()) && pred(h.value)),
        }
    }
}

/// `example.com:8080` → `example.com`; `[::1]:80` → `[::1]`.
pub fn strip_port(authority: &[u8]) -> &[u8] {
    if authority.first() == Some(&b'[') {
        return match authority.iter().position(|b| *b == b']') {
            Some(end) => &authority[..=end],
            None => authority,
        };
    }
    match authority.iter().rposition(|b| *b == b':') {
        Some(colon) => &authority[..colon],
        None => authority,
    }
}

/// RFC 3986 §5.2.4 on a path; borrowed unless there is a dot-segment.
pub fn remove_dot_segments(path: &[u8]) -> Cow<'_, [u8]> {
    let has_dots = path
        .split(|b| *b == b'/')
        .any(|seg| seg == b"." || seg == b"..");
    if !has_dots {
        return Cow::Borrowed(path);
    }
    let mut out: Vec<&[u8]> = Vec::new();
    let segments: Vec<&[u8]> = path.split(|b| *b == b'/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            b"." => trailing_slash = i == last,
            b".." => {
                out.pop();
                trailing_slash = i == last;
            }
            s => {
                out.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut result = Vec::with_capacity(path.len());
    for seg in &out {
        result.push(b'/');
        result.extend_from_slice(seg);
    }
    if trailing_slash || result.is_empty() {
        result.push(b'/');
    }
    Cow::Owned(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dots(p: &str) -> String {
        String::from_utf8(remove_dot_segments(p.as_bytes()).into_owned()).unwrap()
    }

    #[test]
    fn dot_segments() {
        assert_eq!(dots("/a/b/c"), "/a/b/c");
        assert_eq!(dots("/a/../b"), "/b");
        assert_eq!(dots("/a/./b"), "/a/b");
        assert_eq!(dots("/a/b/.."), "/a/");
        assert_eq!(dots("/../../x"), "/x");
        assert_eq!(dots("/.."), "/");
        assert_eq!(dots("/a/%2e%2e/b"), "/a/%2e%2e/b");
        assert!(matches!(
            remove_dot_segments(b"/plain/path"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn ports_are_stripped() {
        assert_eq!(strip_port(b"example.com:8080"), b"example.com");
        assert_eq!(strip_port(b"example.com"), b"example.com");
        assert_eq!(strip_port(b"[::1]:443"), b"[::1]");
        assert_eq!(strip_port(b"[::1]"), b"[::1]");
    }
}
