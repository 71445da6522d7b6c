//! gRPC at the edge (SPEC §7): which requests are gRPC, the `grpc-status` a
//! response carries, and the load balancer's own errors as gRPC
//! trailers-only responses (HTTP 200, the status in the head, no body), which
//! gRPC clients read as a failed call instead of a protocol error.

use crate::proxy::body::{InFlight, ProxyBody};
use crate::telemetry::metrics::RouteMetrics;
pub use crate::wire::grpc::{is_grpc, status_of};
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

/// gRPC's UNAVAILABLE: no target, refused, reset (the client may retry).
pub const UNAVAILABLE: u32 = 14;
/// gRPC's DEADLINE_EXCEEDED: `request_timeout` passed.
pub const DEADLINE_EXCEEDED: u32 = 4;

/// The gRPC status for an error the load balancer answers with HTTP
/// `status`: gRPC's own mapping of HTTP statuses (doc/http-grpc-status-mapping),
/// except that a 504 (`request_timeout`) and a 408 are DEADLINE_EXCEEDED.
pub fn code_for(status: u16) -> u32 {
    match status {
        504 | 408 => DEADLINE_EXCEEDED,
        502 | 503 | 429 => UNAVAILABLE,
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        413 => 8,
        _ => 2,
    }
}

/// The load balancer's answer to a gRPC request as a trailers-only
/// response with `code` and `message`, counted as a `source="lb"` response
/// and in `edgelb_grpc_responses_total`.
pub fn error(
    code: u32,
    message: &'static str,
    route: &RouteMetrics,
    in_flight: InFlight,
) -> Response<ProxyBody> {
    route.from_lb.count(200);
    route.count_grpc(code);
    let mut resp = Response::new(ProxyBody::full(Bytes::new(), Some(in_flight)));
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert("grpc-status", HeaderValue::from(code));
    headers.insert("grpc-message", HeaderValue::from_static(message));
    *resp.status_mut() = StatusCode::OK;
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_grpc_codes() {
        assert_eq!(code_for(503), UNAVAILABLE);
        assert_eq!(code_for(502), UNAVAILABLE);
        assert_eq!(code_for(504), DEADLINE_EXCEEDED);
        assert_eq!(code_for(413), 8);
    }
}
