//! Header rewriting between client and target: hop-by-hop headers out,
//! X-Forwarded-* and X-Request-Id in.

use crate::tls::identity::ClientIdentity;
use crate::wire::connection::{Token, tokens};
pub use crate::wire::forwarded::{
    ForwardedFor, aliases_own_header, new_request_id, new_request_id_bytes,
};
use crate::wire::response::is_hop_by_hop;
use crate::wire::rewrite::{Fate, fate};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use http::{Request, Version};

/// `X-Forwarded-For`.
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`.
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Port`.
pub static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
/// `X-Request-Id`.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The size of a set of header lines as they are on the wire (`name: value`
/// CRLF each). hyper bounds a head only by its read buffer, which one large
/// read can overshoot; this makes the limits exact.
pub fn header_bytes(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum()
}

/// Whether the request asks to switch protocols (WebSocket and friends): an
/// HTTP/1.1 `Upgrade` named by `Connection`.
pub fn wants_upgrade(headers: &HeaderMap, version: Version) -> bool {
    version == Version::HTTP_11
        && headers.contains_key(header::UPGRADE)
        // h2c is never tunnelled (as ALB): the request is served as HTTP/1.1
        // and its Upgrade header dropped as hop-by-hop.
        && !headers
            .get_all(header::UPGRADE)
            .iter()
            .any(|v| has_token(v.as_bytes(), b"h2c"))
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .any(|v| names_upgrade(v.as_bytes()))
}

fn has_token(list: &[u8], token: &[u8]) -> bool {
    list.split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

fn names_upgrade(value: &[u8]) -> bool {
    tokens(value).any(|t| t == Token::Upgrade)
}

/// Removes hop-by-hop headers (`wire::response::is_hop_by_hop`), including
/// those the `Connection` header names. With `keep_upgrade`, `Upgrade` and
/// `Connection: upgrade` stay.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    drop_connection_named(headers);
    remove_where(headers, |n| {
        is_hop_by_hop(n) && !(keep_upgrade && n == header::UPGRADE.as_str())
    });
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Removes every header whose name `drops` picks: one scan over the names
/// when none does (the usual case), one more per name removed.
fn remove_where(headers: &mut HeaderMap, drops: impl Fn(&str) -> bool) {
    while let Some(name) = headers.keys().find(|n| drops(n.as_str())).cloned() {
        headers.remove(&name);
    }
}

/// Removes the headers the `Connection` header names (RFC 9110 §7.6.1),
/// except those edgelb writes itself.
fn drop_connection_named(headers: &mut HeaderMap) {
    if !headers.contains_key(header::CONNECTION) {
        return;
    }
    // Rare: only allocate when a header is named.
    let mut named: Vec<HeaderName> = Vec::new();
    for v in headers.get_all(header::CONNECTION) {
        for token in tokens(v.as_bytes()) {
            if let Token::Other(token) = token
                && let Ok(name) = HeaderName::from_bytes(token)
            {
                named.push(name);
            }
        }
    }
    for name in named {
        if !is_protected(&name) {
            headers.remove(name);
        }
    }
}

/// Headers a client may not get removed by naming them in `Connection`.
fn is_protected(name: &HeaderName) -> bool {
    name == header::HOST
        || name == X_FORWARDED_FOR
        || name == X_FORWARDED_PROTO
        || name == X_FORWARDED_PORT
        || name == X_REQUEST_ID
}

/// What a prepared request head is for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TargetHead {
    /// An HTTP/1.1 target: origin form, the authority as `Host`; `upgrade`
    /// keeps a protocol switch the client asked for.
    Http1 { upgrade: bool },
    /// An HTTP/2 target (SPEC §7): an absolute URI with the group's scheme
    /// (`https` when `tls`) and the authority, no `Host`, `TE: trailers`
    /// kept. Without a valid authority the URI has none: the caller refuses
    /// the request.
    Http2 { tls: bool },
}

/// Rewrites a client request for a target (see [`TargetHead`]): no
/// hop-by-hop headers, and the X-Forwarded-* and X-Request-Id set.
pub fn prepare_request<B>(
    req: &mut Request<B>,
    fwd: &ForwardedFor,
    head: TargetHead,
    identity: Option<&ClientIdentity>,
) {
    let login = req
        .extensions()
        .get::<crate::oidc::gate::Identity>()
        .map(|i| i.0.clone());
    let version = req.version();
    *req.version_mut() = Version::HTTP_11;
    let upgrade = head == TargetHead::Http1 { upgrade: true };
    // `TE: trailers` is hop-by-hop yet meant for HTTP/2 targets (gRPC
    // needs it): kept for them.
    let te_trailers = matches!(head, TargetHead::Http2 { .. })
        && req
            .headers()
            .get_all(header::TE)
            .iter()
            .any(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    // The authority the client named: an HTTP/2 request's, or an HTTP/1
    // request's absolute form when it sent no Host.
    let authority = req.uri().authority().cloned().filter(|_| {
        version != Version::HTTP_11 && version != Version::HTTP_10
            || !req.headers().contains_key(header::HOST)
    });
    // Room for what is added below in one growth of the map.
    req.headers_mut().reserve(6);
    match head {
        TargetHead::Http1 { .. } => {
            if req.uri().scheme().is_some() || req.uri().authority().is_some() {
                let pq = req
                    .uri()
                    .path_and_query()
                    .cloned()
                    .unwrap_or_else(|| PathAndQuery::from_static("/"));
                *req.uri_mut() = Uri::from(pq);
            }
            if let Some(a) = authority
                && let Ok(v) = HeaderValue::from_str(a.as_str())
            {
                req.headers_mut().insert(header::HOST, v);
            }
        }
        TargetHead::Http2 { tls } => {
            let host = req.headers_mut().remove(header::HOST);
            let authority = authority
                .or_else(|| http::uri::Authority::try_from(host.as_ref()?.as_bytes()).ok());
            let mut parts = http::uri::Parts::default();
            parts.path_and_query = Some(
                req.uri()
                    .path_and_query()
                    .cloned()
                    .unwrap_or_else(|| PathAndQuery::from_static("/")),
            );
            if let Some(a) = authority {
                parts.scheme = Some(if tls {
                    http::uri::Scheme::HTTPS
                } else {
                    http::uri::Scheme::HTTP
                });
                parts.authority = Some(a);
            }
            if let Ok(uri) = Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
        }
    }
    let headers = req.headers_mut();
    // As the written paths do (`wire::rewrite::fate`), plus the headers the
    // client's `Connection` names.
    drop_connection_named(headers);
    remove_where(headers, |n| {
        fate(n) == Fate::Drop && !(upgrade && n == header::UPGRADE.as_str())
    });
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    append_forwarded_for(headers, &fwd.client_ip);
    headers.insert(X_FORWARDED_PROTO.clone(), fwd.proto.clone());
    headers.insert(X_FORWARDED_PORT.clone(), fwd.port.clone());
    if !headers.contains_key(&X_REQUEST_ID) {
        headers.insert(X_REQUEST_ID.clone(), new_request_id());
    }
    for (name, value) in identity.iter().flat_map(|i| &i.headers) {
        headers.append(name.clone(), value.clone());
    }
    // A login's identity (SPEC §9), after the client's copies were dropped.
    for (name, value) in login.into_iter().flatten() {
        headers.insert(name, value);
    }
}

/// Appends the client address to `X-Forwarded-For` (one header, comma list).
fn append_forwarded_for(headers: &mut HeaderMap, ip: &HeaderValue) {
    let mut existing = headers.get_all(&X_FORWARDED_FOR).iter();
    let Some(first) = existing.next() else {
        headers.insert(X_FORWARDED_FOR.clone(), ip.clone());
        return;
    };
    let mut joined = Vec::with_capacity(first.len() + ip.len() + 16);
    joined.extend_from_slice(first.as_bytes());
    for v in existing {
        joined.extend_from_slice(b", ");
        joined.extend_from_slice(v.as_bytes());
    }
    joined.extend_from_slice(b", ");
    joined.extend_from_slice(ip.as_bytes());
    if let Ok(v) = HeaderValue::from_bytes(&joined) {
        headers.insert(X_FORWARDED_FOR.clone(), v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fwd() -> ForwardedFor {
        ForwardedFor {
            client_ip: HeaderValue::from_static("192.0.2.7"),
            proto: HeaderValue::from_static("http"),
            port: HeaderValue::from_static("8080"),
        }
    }

    #[test]
    fn strips_hop_by_hop_and_connection_named_headers() {
        let mut req = Request::builder()
            .uri("/a?b=1")
            .header("host", "example.com")
            .header("connection", "keep-alive, x-secret")
            .header("keep-alive", "timeout=5")
            .header("x-secret", "1")
            .header("te", "trailers")
            .header("x-kept", "yes")
            .body(())
            .unwrap();
        prepare_request(&mut req, &fwd(), TargetHead::Http1 { upgrade: false }, None);
        let h = req.headers();
        for gone in ["connection", "keep-alive", "x-secret", "te"] {
            assert!(!h.contains_key(gone), "{gone} should be stripped");
        }
        assert_eq!(h["x-kept"], "yes");
        assert_eq!(h["x-forwarded-for"], "192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-port"], "8080");
        assert_eq!(h["x-request-id"].len(), 32);
        assert_eq!(req.uri(), "/a?b=1");
    }

    #[test]
    fn appends_to_existing_forwarded_for_and_keeps_request_id() {
        let mut req = Request::builder()
            .uri("/")
            .header("x-forwarded-for", "10.0.0.1")
            .header("x-forwarded-for", "10.0.0.2")
            .header("x-request-id", "abc")
            .body(())
            .unwrap();
        prepare_request(&mut req, &fwd(), TargetHead::Http1 { upgrade: false }, None);
        assert_eq!(
            req.headers()["x-forwarded-for"],
            "10.0.0.1, 10.0.0.2, 192.0.2.7"
        );
        assert_eq!(req.headers()["x-request-id"], "abc");
    }

    #[test]
    fn http2_request_becomes_origin_form_with_host() {
        let mut req = Request::builder()
            .version(Version::HTTP_2)
            .uri("http://example.com:8080/p?q")
            .body(())
            .unwrap();
        prepare_request(&mut req, &fwd(), TargetHead::Http1 { upgrade: false }, None);
        assert_eq!(req.version(), Version::HTTP_11);
        assert_eq!(req.uri(), "/p?q");
        assert_eq!(req.headers()["host"], "example.com:8080");
    }

    #[test]
    fn an_http2_head_keeps_the_authority_in_an_absolute_uri_and_te_trailers() {
        let h2 = TargetHead::Http2 { tls: false };
        let mut req = Request::builder()
            .version(Version::HTTP_2)
            .method("POST")
            .uri("http://api.example:8080/pkg.Svc/Call?x")
            .header("host", "other.example")
            .header("te", "trailers")
            .header("connection", "keep-alive")
            .header("keep-alive", "timeout=5")
            .header("transfer-encoding", "chunked")
            .header("content-type", "application/grpc")
            .body(())
            .unwrap();
        prepare_request(&mut req, &fwd(), h2, None);
        assert_eq!(req.uri(), "http://api.example:8080/pkg.Svc/Call?x");
        let h = req.headers();
        for gone in ["host", "connection", "keep-alive", "transfer-encoding"] {
            assert!(!h.contains_key(gone), "{gone} should be gone");
        }
        assert_eq!(h["te"], "trailers");
        assert_eq!(h["content-type"], "application/grpc");
        assert_eq!(h["x-forwarded-for"], "192.0.2.7");
        assert_eq!(h["x-request-id"].len(), 32);

        // An HTTP/1.1 client's Host becomes the authority, with the group's
        // scheme; a TE other than trailers goes.
        let mut req = Request::get("/p")
            .header("host", "site.example")
            .header("te", "gzip")
            .body(())
            .unwrap();
        prepare_request(&mut req, &fwd(), TargetHead::Http2 { tls: true }, None);
        assert_eq!(req.uri(), "https://site.example/p");
        assert!(!req.headers().contains_key("te"));

        // Neither a Host nor an authority (or an invalid Host): no authority.
        for host in [None, Some("bad host")] {
            let mut b = Request::get("/p").version(Version::HTTP_10);
            if let Some(h) = host {
                b = b.header("host", h);
            }
            let mut req = b.body(()).unwrap();
            prepare_request(&mut req, &fwd(), h2, None);
            assert!(req.uri().authority().is_none(), "{host:?}");
            assert_eq!(req.uri(), "/p");
        }
    }

    #[test]
    fn upgrade_is_kept_when_asked() {
        let mut req = Request::builder()
            .uri("/ws")
            .header("connection", "Upgrade")
            .header("upgrade", "websocket")
            .body(())
            .unwrap();
        assert!(wants_upgrade(req.headers(), req.version()));
        prepare_request(&mut req, &fwd(), TargetHead::Http1 { upgrade: true }, None);
        assert_eq!(req.headers()["upgrade"], "websocket");
        assert_eq!(req.headers()["connection"], "upgrade");
    }

    #[test]
    fn underscore_spellings_of_own_headers_are_aliases() {
        for name in [
            "x_forwarded_for",
            "X_Forwarded-For",
            "x-request_id",
            "x_forwarded_proto",
            "x_forwarded_port",
        ] {
            assert!(aliases_own_header(name), "{name}");
        }
        for name in [
            "x-forwarded-for",
            "x_custom",
            "x_forwarded_fox",
            "x_request_ids",
            "x__request_id",
        ] {
            assert!(!aliases_own_header(name), "{name}");
        }
        let mut req = Request::get("/")
            .header("host", "x")
            .header("x_forwarded_for", "10.9.9.9")
            .header("x_other", "1")
            .body(())
            .unwrap();
        prepare_request(&mut req, &fwd(), TargetHead::Http1 { upgrade: false }, None);
        assert!(!req.headers().contains_key("x_forwarded_for"));
        assert_eq!(req.headers()["x_other"], "1");
        assert_eq!(req.headers()["x-forwarded-for"], "192.0.2.7");
    }

    #[test]
    fn request_ids_are_unique_and_share_nothing_predictable() {
        let ids: Vec<[u8; 32]> = (0..1000).map(|_| new_request_id_bytes()).collect();
        let mut halves: Vec<&[u8]> = ids.iter().flat_map(|i| [&i[..16], &i[16..]]).collect();
        halves.sort();
        halves.dedup();
        assert_eq!(
            halves.len(),
            2000,
            "a half repeats: a prefix or a counter shows"
        );
        assert!(ids.iter().all(|i| i.iter().all(u8::is_ascii_hexdigit)));
    }
}
