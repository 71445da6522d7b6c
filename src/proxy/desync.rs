//! Request smuggling defence, in the spirit of ALB's "defensive" desync mode:
//! a request whose framing or target two parsers could read differently is
//! refused with 400 before anything reaches a target.
//!
//! hyper (httparse) already refuses NUL, CR or LF inside header values,
//! obs-fold continuation lines, a malformed Content-Length, two different
//! Content-Lengths, and a Transfer-Encoding whose last coding is not chunked.
//! This adds what a proxy must refuse on top.

use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::request::Parts;
use http::{Method, Version};

pub use crate::wire::request::MAX_URI_BYTES;

/// Why a request head was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 400, with a reason for the log.
    BadRequest(&'static str),
    /// 414.
    UriTooLong,
    /// 431: the head is larger than the listener's `max_header_bytes`.
    HeadTooLarge,
    /// 413: the declared body is longer than the listener's `max_body_bytes`.
    TooLarge,
    /// 405: CONNECT (a load balancer does not open tunnels, as ALB).
    MethodNotAllowed,
}

/// Checks a request head; `Ok` means it is safe to forward.
pub fn check(parts: &Parts) -> Result<(), Refusal> {
    if parts.method == Method::CONNECT {
        return Err(Refusal::MethodNotAllowed);
    }
    // Origin form (`/path`) or absolute form (`http://host/path`, and every
    // HTTP/2 request); never authority form (`host:443`) or `*`.
    let origin_form = parts.uri.path().starts_with('/') && parts.uri.authority().is_none();
    let absolute_form = parts.uri.scheme().is_some() && parts.uri.authority().is_some();
    if !(origin_form || absolute_form) {
        return Err(Refusal::BadRequest(
            "a request target that is neither origin- nor absolute-form",
        ));
    }
    let uri_len = parts.uri.path_and_query().map_or(0, |p| p.as_str().len())
        + parts.uri.authority().map_or(0, |a| a.as_str().len());
    if uri_len > MAX_URI_BYTES {
        return Err(Refusal::UriTooLong);
    }
    let h = &parts.headers;
    let mut hosts = h.get_all(HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(Refusal::BadRequest("more than one Host header"));
    }
    if host.is_none() && parts.version == Version::HTTP_11 && parts.uri.authority().is_none() {
        return Err(Refusal::BadRequest("HTTP/1.1 request without Host"));
    }
    // RFC 9113 §8.2.1: a field value with leading or trailing whitespace is
    // malformed. HTTP/1 parsers trim it; an HTTP/2 field arrives raw, and a
    // rule comparing `"\tinternal.example"` would not see `internal.example`.
    if h.values().any(|v| padded(v.as_bytes())) {
        return Err(Refusal::BadRequest(
            "a header value with leading or trailing whitespace",
        ));
    }
    if h.get_all(CONTENT_LENGTH).iter().count() > 1 {
        return Err(Refusal::BadRequest("more than one Content-Length header"));
    }
    let mut codings = h.get_all(TRANSFER_ENCODING).iter();
    if let Some(te) = codings.next() {
        if h.contains_key(CONTENT_LENGTH) {
            return Err(Refusal::BadRequest(
                "both Content-Length and Transfer-Encoding",
            ));
        }
        if codings.next().is_some() || !te.as_bytes().trim_ascii().eq_ignore_ascii_case(b"chunked")
        {
            return Err(Refusal::BadRequest(
                "a Transfer-Encoding other than chunked",
            ));
        }
    }
    if let (Some(authority), Some(host)) = (parts.uri.authority(), host)
        && !authority
            .as_str()
            .as_bytes()
            .eq_ignore_ascii_case(host.as_bytes())
    {
        return Err(Refusal::BadRequest(
            "the absolute-form target's host differs from Host",
        ));
    }
    Ok(())
}

/// Whether a field value starts or ends with a space or tab.
fn padded(value: &[u8]) -> bool {
    matches!(value.first(), Some(b' ' | b'\t')) || matches!(value.last(), Some(b' ' | b'\t'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = http::Request::post(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn ordinary_requests_pass() {
        assert_eq!(
            check(&head("/a?b", &[("host", "x"), ("content-length", "5")])),
            Ok(())
        );
        assert_eq!(
            check(&head(
                "/a",
                &[("host", "x"), ("transfer-encoding", "Chunked")]
            )),
            Ok(())
        );
        assert_eq!(
            check(&head(
                "http://x.example:8080/a",
                &[("host", "X.example:8080")]
            )),
            Ok(())
        );
        assert_eq!(check(&head("http://x.example/a", &[])), Ok(()));
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        let bad = |h: &[(&str, &str)]| matches!(check(&head("/", h)), Err(Refusal::BadRequest(_)));
        assert!(bad(&[
            ("content-length", "5"),
            ("transfer-encoding", "chunked")
        ]));
        assert!(bad(&[("content-length", "5"), ("content-length", "5")]));
        assert!(bad(&[("transfer-encoding", "gzip, chunked")]));
        assert!(bad(&[
            ("transfer-encoding", "chunked"),
            ("transfer-encoding", "chunked")
        ]));
        assert!(bad(&[("transfer-encoding", "identity")]));
        assert!(bad(&[("host", "a"), ("host", "b")]));
    }

    #[test]
    fn absolute_form_must_agree_with_host() {
        assert!(matches!(
            check(&head("http://evil.example/", &[("host", "good.example")])),
            Err(Refusal::BadRequest(_))
        ));
        assert!(matches!(
            check(&head(
                "http://good.example:81/",
                &[("host", "good.example")]
            )),
            Err(Refusal::BadRequest(_))
        ));
    }

    #[test]
    fn connect_and_unusual_targets_are_refused() {
        let connect = http::Request::connect("x.example:443")
            .header("host", "x.example:443")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        assert_eq!(check(&connect), Err(Refusal::MethodNotAllowed));
        for target in ["x.example:443", "*"] {
            let mut parts = head("/", &[("host", "x.example")]);
            parts.uri = target.parse().unwrap();
            assert!(
                matches!(check(&parts), Err(Refusal::BadRequest(_))),
                "{target}"
            );
        }
    }

    #[test]
    fn host_is_required_and_values_must_not_be_padded() {
        assert!(matches!(
            check(&head("/", &[])),
            Err(Refusal::BadRequest(_))
        ));
        let mut old = head("/", &[]);
        old.version = Version::HTTP_10;
        assert_eq!(check(&old), Ok(()));
        for bad in ["\tinternal.example", "internal.example ", " x"] {
            assert!(
                matches!(
                    check(&head("/", &[("host", bad)])),
                    Err(Refusal::BadRequest(_))
                ),
                "{bad:?}"
            );
            assert!(matches!(
                check(&head("/", &[("host", "x"), ("x-canary", bad)])),
                Err(Refusal::BadRequest(_))
            ));
        }
        assert_eq!(check(&head("/", &[("host", "x"), ("x-a", "a b")])), Ok(()));
    }

    #[test]
    fn long_targets_get_414() {
        let long = format!("/{}", "a".repeat(MAX_URI_BYTES));
        assert_eq!(
            check(&head(&long, &[("host", "x")])),
            Err(Refusal::UriTooLong)
        );
    }
}
