//! Responses edgelb writes itself (errors it answers as the load balancer).

use crate::proxy::body::{InFlight, ProxyBody};
use crate::telemetry::metrics::ClassCounters;
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

/// The status line's text and the plain-text body of an error edgelb answers
/// itself: one table for every path (the fast path writes the same bytes).
pub fn error_page(status: u16) -> (&'static str, &'static str) {
    match status {
        400 => ("400 Bad Request", "400 Bad Request\n"),
        405 => ("405 Method Not Allowed", "405 Method Not Allowed\n"),
        408 => ("408 Request Timeout", "408 Request Timeout\n"),
        413 => ("413 Content Too Large", "413 Content Too Large\n"),
        414 => ("414 URI Too Long", "414 URI Too Long\n"),
        431 => (
            "431 Request Header Fields Too Large",
            "431 Request Header Fields Too Large\n",
        ),
        502 => ("502 Bad Gateway", "502 Bad Gateway\n"),
        503 => ("503 Service Unavailable", "503 Service Unavailable\n"),
        504 => ("504 Gateway Timeout", "504 Gateway Timeout\n"),
        _ => ("500 Internal Server Error", "error\n"),
    }
}

/// A plain-text response from the load balancer, counted with `source="lb"`.
pub fn lb_error(
    status: StatusCode,
    counters: &ClassCounters,
    in_flight: InFlight,
) -> Response<ProxyBody> {
    counters.count(status.as_u16());
    let text = error_page(status.as_u16()).1;
    let mut resp = Response::new(ProxyBody::full(
        Bytes::from_static(text.as_bytes()),
        Some(in_flight),
    ));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
