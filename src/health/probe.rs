//! One health check of one target: TCP connect, an HTTP GET whose status
//! must be in the matcher, or a gRPC `Check` call (SPEC §7) whose
//! `grpc-status` must be in the matcher and whose answer, for
//! `grpc.health.v1`, must be SERVING. Everything within the check's timeout.

use super::machine::{Outcome, Reason};
use crate::tls::TargetTls;
use bytes::Bytes;
use http::{HeaderValue, Request, header};
use std::net::SocketAddr;
use std::time::Duration;

/// What to check and how.
#[derive(Debug, Clone)]
pub struct ProbeSpec {
    pub addr: SocketAddr,
    /// `None` = a TCP check.
    pub http: Option<HttpProbe>,
    /// TLS for an https check.
    pub tls: Option<TargetTls>,
    pub timeout: Duration,
}

/// The HTTP part of a check.
#[derive(Debug, Clone)]
pub struct HttpProbe {
    pub path: String,
    pub host: HeaderValue,
    /// Inclusive status ranges that count as healthy (gRPC status codes for
    /// a gRPC check).
    pub matcher: Vec<(u16, u16)>,
    /// A gRPC check: the `HealthCheckRequest`'s service name.
    pub grpc_service: Option<String>,
    /// Spoken over HTTP/2 (the targets of `http2` and `grpc` groups).
    pub h2: bool,
}

/// The standard gRPC health service's method.
const GRPC_HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";
/// `HealthCheckResponse.ServingStatus.SERVING`.
const SERVING: u64 = 1;

/// Runs one check.
pub async fn probe(spec: &ProbeSpec) -> Outcome {
    match tokio::time::timeout(spec.timeout, attempt(spec)).await {
        Err(_) => Outcome::Failure(Reason::Timeout),
        Ok(outcome) => outcome,
    }
}

async fn attempt(spec: &ProbeSpec) -> Outcome {
    if let Some(http) = &spec.http
        && (http.h2 || http.grpc_service.is_some())
    {
        return h2_check(spec, http).await;
    }
    let tls = spec.http.as_ref().and(spec.tls.as_ref());
    let Ok(stream) = crate::tls::stream::connect(spec.addr, tls).await else {
        return Outcome::Failure(Reason::FailedHealthChecks);
    };
    let Some(http) = &spec.http else {
        return Outcome::Success;
    };
    match http1_status(stream, http).await {
        Some(status) => matched(http, status),
        None => Outcome::Failure(Reason::FailedHealthChecks),
    }
}

/// The largest response head a check reads (hyper's client allows as much).
const MAX_CHECK_HEAD: usize = 16 * 1024;

/// An HTTP/1.1 GET of the check's path written as bytes and the status of the
/// final response head read back (1xx skipped); `None` when the exchange
/// fails or the answer is no HTTP/1 response. As HAProxy's checks do: no
/// client stack, no task, one small buffer (a check of 10,000 targets every
/// few seconds is the checker's whole work).
async fn http1_status<S>(mut stream: S, http: &HttpProbe) -> Option<u16>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let path = http.path.as_bytes();
    if !path.starts_with(b"/") || path.iter().any(|&b| b <= b' ' || b == 0x7f) {
        return None;
    }
    let mut request = Vec::with_capacity(128 + path.len() + http.host.len());
    request.extend_from_slice(b"GET ");
    request.extend_from_slice(path);
    request.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    request.extend_from_slice(http.host.as_bytes());
    request.extend_from_slice(
        concat!(
            "\r\nUser-Agent: edgelb-health-check/",
            env!("CARGO_PKG_VERSION"),
            "\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    stream.write_all(&request).await.ok()?;
    stream.flush().await.ok()?;
    let mut buf = Vec::with_capacity(1024);
    loop {
        if buf.len() >= MAX_CHECK_HEAD {
            return None;
        }
        if buf.len() == buf.capacity() {
            buf.reserve(buf.len());
        }
        if stream.read_buf(&mut buf).await.ok()? == 0 {
            return None;
        }
        // Heads already read, 1xx ones skipped.
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 100];
            let mut response = httparse::Response::new(&mut headers);
            match response.parse(&buf).ok()? {
                httparse::Status::Partial => break,
                httparse::Status::Complete(n) => {
                    let code = response.code?;
                    if (100..200).contains(&code) && code != 101 {
                        buf.drain(..n);
                        continue;
                    }
                    return Some(code);
                }
            }
        }
    }
}

/// A check over HTTP/2 (h2c, or TLS with ALPN h2): a GET of `http.path`, or
/// a unary gRPC call of it.
async fn h2_check(spec: &ProbeSpec, http: &HttpProbe) -> Outcome {
    let fail = Outcome::Failure(Reason::FailedHealthChecks);
    let Ok(stream) = crate::tls::stream::connect_h2(spec.addr, spec.tls.as_ref()).await else {
        return fail;
    };
    let Ok((send, connection)) = h2::client::handshake(stream).await else {
        return fail;
    };
    let driver = tokio::spawn(connection);
    let outcome = match &http.grpc_service {
        Some(service) => grpc_call(send, spec, http, service).await,
        None => h2_get(send, spec, http).await,
    };
    let outcome = outcome.unwrap_or(fail);
    driver.abort();
    outcome
}

/// The target's URI for the check's path.
fn check_uri(spec: &ProbeSpec, http: &HttpProbe) -> Option<http::Uri> {
    let scheme = if spec.tls.is_some() { "https" } else { "http" };
    http::Uri::builder()
        .scheme(scheme)
        .authority(http.host.to_str().ok()?)
        .path_and_query(http.path.as_str())
        .build()
        .ok()
}

async fn h2_get(
    send: h2::client::SendRequest<Bytes>,
    spec: &ProbeSpec,
    http: &HttpProbe,
) -> Option<Outcome> {
    let mut send = send.ready().await.ok()?;
    let request = Request::get(check_uri(spec, http)?)
        .header(
            header::USER_AGENT,
            concat!("edgelb-health-check/", env!("CARGO_PKG_VERSION")),
        )
        .body(())
        .ok()?;
    let (response, _) = send.send_request(request, true).ok()?;
    Some(matched(http, response.await.ok()?.status().as_u16()))
}

/// A check's outcome for an answer with `code` (an HTTP status, or a gRPC
/// status for a gRPC check).
fn matched(http: &HttpProbe, code: u16) -> Outcome {
    if http
        .matcher
        .iter()
        .any(|(lo, hi)| (*lo..=*hi).contains(&code))
    {
        Outcome::Success
    } else {
        Outcome::Failure(Reason::ResponseCodeMismatch)
    }
}

async fn grpc_call(
    send: h2::client::SendRequest<Bytes>,
    spec: &ProbeSpec,
    http: &HttpProbe,
    service: &str,
) -> Option<Outcome> {
    let mut send = send.ready().await.ok()?;
    let request = Request::post(check_uri(spec, http)?)
        .header(header::CONTENT_TYPE, "application/grpc")
        .header(header::TE, "trailers")
        .header(
            header::USER_AGENT,
            concat!("edgelb-health-check/", env!("CARGO_PKG_VERSION")),
        )
        .body(())
        .ok()?;
    let (response, mut body) = send.send_request(request, false).ok()?;
    body.send_data(grpc_health_request(service), true).ok()?;
    let (head, mut recv) = response.await.ok()?.into_parts();
    if head.status != http::StatusCode::OK {
        return Some(Outcome::Failure(Reason::ResponseCodeMismatch));
    }
    let mut message = Vec::new();
    let mut status = crate::wire::grpc::status_of(&head.headers);
    if status.is_none() {
        while let Some(data) = recv.data().await {
            let data = data.ok()?;
            let _ = recv.flow_control().release_capacity(data.len());
            message.extend_from_slice(&data);
        }
        status = recv
            .trailers()
            .await
            .ok()?
            .and_then(|t| crate::wire::grpc::status_of(&t));
    }
    let code = u16::try_from(status?).ok()?;
    if !http
        .matcher
        .iter()
        .any(|(lo, hi)| (*lo..=*hi).contains(&code))
    {
        return Some(Outcome::Failure(Reason::ResponseCodeMismatch));
    }
    // grpc.health.v1: the answer must say SERVING (NOT_SERVING is a mismatch).
    if http.path == GRPC_HEALTH_CHECK && code == 0 && serving_status(&message) != Some(SERVING) {
        return Some(Outcome::Failure(Reason::ResponseCodeMismatch));
    }
    Some(Outcome::Success)
}

/// A length-prefixed gRPC message holding `HealthCheckRequest { service }`.
fn grpc_health_request(service: &str) -> Bytes {
    let mut proto = Vec::with_capacity(service.len() + 3);
    if !service.is_empty() {
        proto.push(0x0a); // field 1, length-delimited
        put_varint(&mut proto, service.len() as u64);
        proto.extend_from_slice(service.as_bytes());
    }
    let mut framed = Vec::with_capacity(5 + proto.len());
    framed.push(0); // not compressed
    framed.extend_from_slice(&(proto.len() as u32).to_be_bytes());
    framed.extend_from_slice(&proto);
    Bytes::from(framed)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// `HealthCheckResponse.status` (field 1, varint) from one length-prefixed
/// gRPC message; `None` when it is not there (UNKNOWN = 0 is the default).
fn serving_status(message: &[u8]) -> Option<u64> {
    let (&compressed, rest) = message.split_first()?;
    if compressed != 0 || rest.len() < 4 {
        return None;
    }
    let len = u32::from_be_bytes(rest[..4].try_into().ok()?) as usize;
    let mut proto = rest.get(4..4 + len)?;
    let varint = |p: &mut &[u8]| -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = p.split_first()?;
            *p = rest;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    };
    let mut status = Some(0);
    while !proto.is_empty() {
        let key = varint(&mut proto)?;
        match (key >> 3, key & 7) {
            (1, 0) => status = Some(varint(&mut proto)?),
            (_, 0) => {
                varint(&mut proto)?;
            }
            (_, 2) => {
                let n = varint(&mut proto)? as usize;
                proto = proto.get(n..)?;
            }
            _ => return None,
        }
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_messages_are_framed_and_read() {
        assert_eq!(&grpc_health_request("")[..], &[0, 0, 0, 0, 0]);
        assert_eq!(
            &grpc_health_request("orders")[..],
            &[0, 0, 0, 0, 8, 0x0a, 6, b'o', b'r', b'd', b'e', b'r', b's']
        );
        assert_eq!(serving_status(&[0, 0, 0, 0, 2, 0x08, 1]), Some(SERVING));
        assert_eq!(serving_status(&[0, 0, 0, 0, 2, 0x08, 2]), Some(2));
        // An empty message is UNKNOWN (0), a truncated one nothing.
        assert_eq!(serving_status(&[0, 0, 0, 0, 0]), Some(0));
        assert_eq!(serving_status(&[0, 0, 0, 0, 3, 0x08]), None);
    }

    fn probe_spec() -> HttpProbe {
        HttpProbe {
            path: "/health?deep=1".into(),
            host: HeaderValue::from_static("10.0.0.5:8080"),
            matcher: vec![(200, 299)],
            grpc_service: None,
            h2: false,
        }
    }

    /// What a check makes of a target answering `pieces`: the status read,
    /// and the request the target received.
    async fn exchange(pieces: &[&[u8]]) -> (Option<u16>, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (near, mut far) = tokio::io::duplex(64 * 1024);
        let pieces: Vec<Vec<u8>> = pieces.iter().map(|p| p.to_vec()).collect();
        let target = tokio::spawn(async move {
            let mut request = vec![0u8; 4096];
            let n = far.read(&mut request).await.unwrap();
            for piece in pieces {
                far.write_all(&piece).await.unwrap();
                tokio::task::yield_now().await;
            }
            drop(far);
            String::from_utf8_lossy(&request[..n]).into_owned()
        });
        let status = http1_status(near, &probe_spec()).await;
        (status, target.await.unwrap())
    }

    #[tokio::test]
    async fn a_check_is_one_get_and_reads_the_final_status() {
        let (status, request) = exchange(&[b"HTTP/1.1 204 No Content\r\n\r\n"]).await;
        assert_eq!(status, Some(204));
        assert!(
            request.starts_with("GET /health?deep=1 HTTP/1.1\r\nHost: 10.0.0.5:8080\r\n"),
            "{request}"
        );
        assert!(
            request.ends_with("\r\nConnection: close\r\n\r\n"),
            "{request}"
        );
        // Interim answers are skipped, a head in pieces is read whole.
        let (status, _) = exchange(&[
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 5",
            b"03 Busy\r\nContent-Length: 0\r\n\r\n",
        ])
        .await;
        assert_eq!(status, Some(503));
    }

    #[tokio::test]
    async fn no_http_answer_is_a_failed_check() {
        assert_eq!(exchange(&[b"SSH-2.0-OpenSSH\r\n"]).await.0, None);
        assert_eq!(exchange(&[b"HTTP/1.1 200 OK\r\nX: y"]).await.0, None);
        assert_eq!(exchange(&[]).await.0, None);
        let endless = [b"HTTP/1.1 200 OK\r\n".as_slice(), &[b'X'; 20_000]];
        assert_eq!(exchange(&endless).await.0, None);
    }
}
