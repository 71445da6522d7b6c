//! Responses edgelb writes itself (errors it answers as the load balancer).

use crate::admin::metrics::ClassCounters;
use crate::proxy::body::{InFlight, ProxyBody};
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

/// A plain-text response from the load balancer, counted with `source="lb"`.
pub fn lb_error(
    status: StatusCode,
    counters: &ClassCounters,
    in_flight: InFlight,
) -> Response<ProxyBody> {
    counters.count(status.as_u16());
    let text: &'static str = match status {
        StatusCode::BAD_REQUEST => "400 Bad Request\n",
        StatusCode::REQUEST_TIMEOUT => "408 Request Timeout\n",
        StatusCode::PAYLOAD_TOO_LARGE => "413 Content Too Large\n",
        StatusCode::URI_TOO_LONG => "414 URI Too Long\n",
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "431 Request Header Fields Too Large\n",
        StatusCode::BAD_GATEWAY => "502 Bad Gateway\n",
        StatusCode::SERVICE_UNAVAILABLE => "503 Service Unavailable\n",
        StatusCode::GATEWAY_TIMEOUT => "504 Gateway Timeout\n",
        _ => "error\n",
    };
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
