//! gRPC as seen on the wire (SPEC §7): which requests are gRPC calls, and
//! the `grpc-status` a response head or its trailers carry. Shared by the
//! forwarding code and the gRPC health check.

use http::{HeaderMap, HeaderValue, header};

/// Whether a request with these headers is a gRPC call
/// (`content-type: application/grpc`, `application/grpc+proto`, …).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .map(HeaderValue::as_bytes)
        .and_then(|ct| {
            ct.get(..16)
                .filter(|p| p.eq_ignore_ascii_case(b"application/grpc"))
                .map(|_| &ct[16..])
        })
        .is_some_and(|rest| rest.is_empty() || rest[0] == b'+' || rest[0] == b';')
}

/// The `grpc-status` in a response head (trailers-only) or its trailers.
pub fn status_of(headers: &HeaderMap) -> Option<u32> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok()?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_content_types() {
        let with = |ct: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
            is_grpc(&h)
        };
        assert!(with("application/grpc"));
        assert!(with("application/grpc+proto"));
        assert!(with("Application/GRPC;charset=utf-8"));
        assert!(!with("application/grpc-web"));
        assert!(!with("application/json"));
        assert!(!with("application/grp"));
        assert!(!is_grpc(&HeaderMap::new()));
    }

    #[test]
    fn statuses_are_read() {
        let mut h = HeaderMap::new();
        assert_eq!(status_of(&h), None);
        h.insert("grpc-status", HeaderValue::from_static("5"));
        assert_eq!(status_of(&h), Some(5));
    }
}
