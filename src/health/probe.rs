//! One health check of one target: TCP connect, or an HTTP GET whose status
//! must be in the matcher. Everything within the check's timeout.

use super::machine::{Outcome, Reason};
use crate::tls::TargetTls;
use bytes::Bytes;
use http::{HeaderValue, Request, header};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
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
    /// Inclusive status ranges that count as healthy.
    pub matcher: Vec<(u16, u16)>,
}

/// Runs one check.
pub async fn probe(spec: &ProbeSpec) -> Outcome {
    match tokio::time::timeout(spec.timeout, attempt(spec)).await {
        Err(_) => Outcome::Failure(Reason::Timeout),
        Ok(outcome) => outcome,
    }
}

async fn attempt(spec: &ProbeSpec) -> Outcome {
    let tls = spec.http.as_ref().and(spec.tls.as_ref());
    let Ok(stream) = crate::tls::stream::connect(spec.addr, tls).await else {
        return Outcome::Failure(Reason::FailedHealthChecks);
    };
    let Some(http) = &spec.http else {
        return Outcome::Success;
    };
    let Ok((mut sender, conn)) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream)).await
    else {
        return Outcome::Failure(Reason::FailedHealthChecks);
    };
    let driver = tokio::spawn(conn);
    let request = Request::get(http.path.as_str())
        .header(header::HOST, http.host.clone())
        .header(
            header::USER_AGENT,
            concat!("edgelb-health-check/", env!("CARGO_PKG_VERSION")),
        )
        .header(header::CONNECTION, "close")
        .body(Empty::new());
    let outcome = match request {
        Err(_) => Outcome::Failure(Reason::FailedHealthChecks),
        Ok(request) => match sender.send_request(request).await {
            Err(_) => Outcome::Failure(Reason::FailedHealthChecks),
            Ok(resp) => {
                let status = resp.status().as_u16();
                if http
                    .matcher
                    .iter()
                    .any(|(lo, hi)| (*lo..=*hi).contains(&status))
                {
                    Outcome::Success
                } else {
                    Outcome::Failure(Reason::ResponseCodeMismatch)
                }
            }
        },
    };
    driver.abort();
    outcome
}
