//! The head a target gets for a body-less request hyper's server took.

use crate::proxy::headers::ForwardedFor;
use crate::wire::connection::{Token, tokens};
use crate::wire::rewrite::{RequestLine, target_head as write_head};
use http::{Method, Version};

/// The HTTP/1.1 head a target gets for `req`, written by the one head writer
/// ([`crate::wire::rewrite::target_head`]) from the request's header map:
/// origin-form target, `Host` from the authority of an HTTP/2 request, and
/// `Content-Length: 0` for a body-less request of a method that usually has
/// a body (as hyper's client writes). `None` when the client's `Connection`
/// header names other headers to drop: the rare case is left to the
/// header-map rewrite (`proxy::headers::prepare_request`).
pub fn target_head<B>(
    req: &http::Request<B>,
    fwd: &ForwardedFor,
    identity: &[u8],
) -> Option<TargetHead> {
    let headers = req.headers();
    for value in headers.get_all(http::header::CONNECTION) {
        let names_others =
            tokens(value.as_bytes()).any(|t| matches!(t, Token::Upgrade | Token::Other(_)));
        if names_others {
            return None;
        }
    }
    let http1 = matches!(req.version(), Version::HTTP_10 | Version::HTTP_11);
    let authority = req
        .uri()
        .authority()
        .filter(|_| !http1 || !headers.contains_key(http::header::HOST));
    let bodyless_method = matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::DELETE | Method::OPTIONS | Method::TRACE
    );
    let extra: &[u8] = if !bodyless_method && !headers.contains_key(http::header::CONTENT_LENGTH) {
        b"content-length: 0\r\n"
    } else {
        b""
    };
    let line = RequestLine {
        method: req.method().as_str().as_bytes(),
        target: req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .as_bytes(),
        host: authority.map(|a| a.as_str().as_bytes()),
        identity,
        extra,
    };
    let mut bytes = Vec::with_capacity(512);
    let lines = || headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes()));
    let made_id = write_head(&mut bytes, &line, lines, fwd);
    Some(TargetHead { bytes, made_id })
}

/// A request head for a target, and the request id made for it.
pub struct TargetHead {
    pub bytes: Vec<u8>,
    /// The `X-Request-Id` written, when the client sent none.
    pub made_id: Option<[u8; 32]>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn fwd() -> ForwardedFor {
        ForwardedFor {
            client_ip: HeaderValue::from_static("192.0.2.7"),
            proto: HeaderValue::from_static("https"),
            port: HeaderValue::from_static("443"),
        }
    }

    fn head_of(req: http::Request<()>) -> Option<String> {
        let head = target_head(&req, &fwd(), b"")?;
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
}
