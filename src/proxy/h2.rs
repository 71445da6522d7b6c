//! Forwarding one request to a target of an `http2` or `grpc` group
//! (SPEC §7): the head rewritten for HTTP/2 (`:scheme`, `:authority` from
//! the Host, no connection-specific fields, `TE: trailers` kept), a stream on
//! the target's pooled connections ([`crate::upstream::h2`]), the body
//! pumped with flow control, and the response streamed back with its
//! trailers. Failures go through the one attempt policy
//! ([`crate::proxy::attempt`]); a stream the target refused unprocessed (a
//! GOAWAY past its last-stream-id, REFUSED_STREAM) goes again on another
//! connection, since nothing of it was processed, when its body can still be
//! sent whole. A gRPC request gets the load balancer's errors as gRPC.

use crate::proxy::attempt::{self, ClientFailure, Failure, Next, Tried};
use crate::proxy::body::{H2Release, InFlight, ProxyBody, RequestBody};
use crate::proxy::grpc;
use crate::proxy::record::RequestRecord;
use crate::proxy::respond::lb_error;
use crate::runtime::listener::GroupChoice;
use crate::runtime::target::GroupRuntime;
use crate::upstream::h2::{self as pool, BodySent, H2Body, H2Stream, PumpError};
use crate::upstream::sent::{TargetTimeout, within_request_timeout};
use http::{HeaderMap, Request, Response, StatusCode, Uri};
use http_body::Body;
use std::time::{Duration, Instant};

/// Streams a request may be refused unprocessed (GOAWAY, REFUSED_STREAM) or
/// meet a closed pooled connection before it is answered with an error.
const MAX_UNPROCESSED_RETRIES: u32 = 3;
/// How long a refused stream's body may take to end (telling whether it
/// was empty, so the request can go again) before the client gets its 502.
const PUMP_SETTLE: Duration = Duration::from_secs(1);

/// How the load balancer answers: HTTP error pages, or gRPC errors for a
/// gRPC request.
#[derive(Clone, Copy)]
pub struct Answer {
    pub grpc: bool,
}

impl Answer {
    /// The load balancer's own answer with HTTP `status` (for gRPC: its
    /// gRPC code, `message`).
    pub fn error(
        self,
        status: u16,
        message: &'static str,
        action: &GroupChoice,
        record: Option<&mut RequestRecord>,
        in_flight: InFlight,
    ) -> Response<ProxyBody> {
        if self.grpc {
            let code = grpc::code_for(status);
            if let Some(r) = record {
                r.grpc_status(code);
            }
            return grpc::error(code, message, &action.metrics, in_flight);
        }
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
        lb_error(status, &action.metrics.from_lb, in_flight)
    }
}

/// Forwards `req` (its head already prepared for a target) to target
/// `choice` of `action`'s group, or answers why not. `first` is `None` when
/// no target can take it.
#[allow(clippy::too_many_arguments)]
pub async fn forward(
    action: &GroupChoice,
    req: Request<RequestBody>,
    first: Option<usize>,
    stick: impl FnOnce(usize, &mut HeaderMap),
    stall_timeout: Duration,
    in_flight: InFlight,
    mut record: Option<&mut RequestRecord>,
) -> Response<ProxyBody> {
    let group = &action.group;
    let answer = Answer {
        grpc: grpc::is_grpc(req.headers()),
    };
    let Some(mut choice) = first else {
        if let Some(r) = record.as_mut() {
            r.error("no_target");
        }
        return answer.error(503, "no healthy target", action, record, in_flight);
    };
    let (parts, body) = req.into_parts();
    let head = match target_head(parts) {
        Ok(head) => head,
        Err(why) => {
            return answer.error(400, why, action, record, in_flight);
        }
    };
    let progress = body.progress();
    let mut body = Some(body);
    let mut tried = Tried::default();
    let mut unprocessed = 0;
    loop {
        let target = &group.targets[choice];
        if let Some(r) = record.as_mut() {
            r.target(&group.name, target.addr);
        }
        let stream = match target.shared.h2.checkout() {
            Some(s) => s,
            None => {
                match Box::pin(pool::connect(
                    target.addr,
                    group.connect_timeout,
                    target.tls.as_ref(),
                ))
                .await
                {
                    Ok((send, closed)) => target.shared.h2.add(send, closed),
                    Err(e) => {
                        let verdict = e.charge(group, choice, tried.failovers, 1);
                        if verdict.next == Next::Failover
                            && let Some(next) = group.pick(Some(choice))
                        {
                            tried.failovers += 1;
                            choice = next;
                            continue;
                        }
                        if let Some(r) = record.as_mut() {
                            r.error("connect_failed");
                        }
                        return answer.error(502, "target refused", action, record, in_flight);
                    }
                }
            }
        };
        let outstanding = target.start_request();
        let taken = body.take().expect("a body for every attempt");
        let end_of_stream = taken.is_end_stream();
        let sent_at = Instant::now();
        let sent = send(stream, head.clone(), taken, end_of_stream).await;
        let (response, slot, pump) = match sent {
            Ok(s) => s,
            Err((unsent, error)) => {
                // The stream never opened: nothing reached the target.
                body = Some(unsent);
                unprocessed += 1;
                if unprocessed <= MAX_UNPROCESSED_RETRIES {
                    tracing::debug!(target = %target.addr, "HTTP/2 stream not opened: {error}");
                    continue;
                }
                let verdict = decide(group, choice, Failure::Reset, false, tried, &error);
                return fail(&verdict, answer, action, record, in_flight);
            }
        };
        let waited = within_request_timeout(response, group.request_timeout, progress.as_deref());
        let failure = match waited.await {
            Err(TargetTimeout) => {
                let verdict = decide(
                    group,
                    choice,
                    Failure::Timeout,
                    false,
                    tried,
                    &"no response within request_timeout",
                );
                return fail(&verdict, answer, action, record, in_flight);
            }
            Ok(Ok(resp)) => {
                let (mut parts, recv) = resp.into_parts();
                let status = parts.status.as_u16();
                group
                    .metrics
                    .response_time
                    .observe(sent_at.elapsed().as_secs_f64());
                action.metrics.from_target.count(status);
                if let Some(r) = record.as_mut() {
                    r.target_status(status);
                }
                // A trailers-only gRPC answer carries its status in the head.
                if recv.is_end_stream()
                    && let Some(code) = grpc::status_of(&parts.headers)
                {
                    action.metrics.count_grpc(code);
                    if let Some(r) = record.as_mut() {
                        r.grpc_status(code);
                    }
                }
                parts.version = http::Version::HTTP_11;
                stick(choice, &mut parts.headers);
                let release = H2Release {
                    slot,
                    outstanding,
                    group: group.clone(),
                    index: choice,
                    grpc: action.metrics.grpc.clone(),
                };
                let body =
                    ProxyBody::h2(H2Body::new(recv), release, stall_timeout, Some(in_flight));
                return Response::from_parts(parts, body);
            }
            Ok(Err(e)) => e,
        };
        // The stream failed before a response head.
        if refused_unprocessed(&failure) {
            slot.retire();
        }
        drop(slot);
        // What became of the body: a pump still waiting on the client is
        // stopped (the stream is gone).
        let pumped = match pump {
            BodySent::Whole(done) => Some(done),
            // Refused unprocessed: how the body ends decides whether the
            // request may go again, and it may still be on its way from the
            // client (an empty one ends at once, however busy the runtime).
            BodySent::Pumping(mut p) if refused_unprocessed(&failure) => {
                match tokio::time::timeout(PUMP_SETTLE, &mut p).await {
                    Ok(done) => done.ok(),
                    Err(_) => {
                        p.abort();
                        None
                    }
                }
            }
            BodySent::Pumping(p) if p.is_finished() => p.await.ok(),
            BodySent::Pumping(p) => {
                p.abort();
                None
            }
        };
        if let Some(Err(PumpError::Client(e))) = &pumped {
            let failure = Failure::Client(ClientFailure::of(e));
            let verdict = decide(group, choice, failure, false, tried, e);
            return fail(&verdict, answer, action, record, in_flight);
        }
        // The whole body is known to be empty (none, or an empty one already
        // read to its end): nothing of it can be lost by sending it again.
        let empty = matches!(pumped, Some(Ok(false)));
        // Refused unprocessed, without a body to lose: goes again, elsewhere.
        if refused_unprocessed(&failure) && empty && unprocessed < MAX_UNPROCESSED_RETRIES {
            unprocessed += 1;
            body = Some(RequestBody::Empty);
            choice = group.pick(Some(choice)).unwrap_or(choice);
            continue;
        }
        let replayable = empty && attempt::idempotent(&head.method);
        let verdict = decide(group, choice, Failure::Reset, replayable, tried, &failure);
        if verdict.next == Next::Replay {
            tried.replayed = true;
            body = Some(RequestBody::Empty);
            choice = group.pick(Some(choice)).unwrap_or(choice);
            continue;
        }
        return fail(&verdict, answer, action, record, in_flight);
    }
}

/// A request head as it goes to an HTTP/2 target.
#[derive(Clone)]
struct Head {
    method: http::Method,
    uri: Uri,
    headers: HeaderMap,
}

/// Takes a head prepared for HTTP/2 ([`crate::proxy::headers::TargetHead`]):
/// an absolute URI, connection-specific fields gone (RFC 9113 §8.2.2),
/// `TE` only as `trailers`. Refused without a valid authority.
fn target_head(parts: http::request::Parts) -> Result<Head, &'static str> {
    if parts.uri.authority().is_none() {
        return Err("no valid Host");
    }
    let mut headers = parts.headers;
    // A value new with every request would churn HPACK's dynamic table (and
    // push out the X-Forwarded-* entries that repeat): sent never-indexed.
    if let Some(id) = headers.get_mut(&crate::proxy::headers::X_REQUEST_ID) {
        id.set_sensitive(true);
    }
    Ok(Head {
        method: parts.method,
        uri: parts.uri,
        headers,
    })
}

type Sent = (
    h2::client::ResponseFuture,
    crate::upstream::h2::StreamSlot,
    BodySent,
);

/// Opens a stream for `head` and starts pumping `body` into it; the body
/// comes back when the stream could not be opened.
async fn send(
    stream: H2Stream,
    head: Head,
    body: RequestBody,
    end_of_stream: bool,
) -> Result<Sent, (RequestBody, h2::Error)> {
    let H2Stream { send, slot } = stream;
    let mut send = match send.ready().await {
        Ok(s) => s,
        Err(e) => {
            slot.retire();
            return Err((body, e));
        }
    };
    let mut request = Request::new(());
    *request.method_mut() = head.method;
    *request.uri_mut() = head.uri;
    *request.headers_mut() = head.headers;
    match send.send_request(request, end_of_stream) {
        Ok((response, stream)) => {
            let body = if end_of_stream {
                BodySent::Whole(Ok(false))
            } else {
                pool::send_body(body, stream).await
            };
            Ok((response, slot, body))
        }
        Err(e) => {
            slot.retire();
            Err((body, e))
        }
    }
}

/// A stream the target did not process: refused by a GOAWAY past its
/// last-stream-id, or with REFUSED_STREAM (RFC 9113 §8.7).
fn refused_unprocessed(e: &h2::Error) -> bool {
    (e.is_go_away() && e.is_remote()) || e.reason() == Some(h2::Reason::REFUSED_STREAM)
}

/// The attempt policy's verdict, charged to the target.
fn decide(
    group: &GroupRuntime,
    choice: usize,
    failure: Failure,
    replayable: bool,
    tried: Tried,
    what: &dyn std::fmt::Display,
) -> attempt::Verdict {
    let request = attempt::Request {
        replayable,
        reused: false,
    };
    let verdict = attempt::decide(failure, request, tried, 1);
    verdict.charge(group, choice, &format_args!("target failed: {what}"));
    verdict
}

/// The load balancer's answer for a verdict that ends the request.
fn fail(
    verdict: &attempt::Verdict,
    answer: Answer,
    action: &GroupChoice,
    mut record: Option<&mut RequestRecord>,
    in_flight: InFlight,
) -> Response<ProxyBody> {
    if let (Some(r), Some(error)) = (record.as_mut(), verdict.error) {
        r.error(error);
    }
    let (status, message) = match verdict.next {
        Next::Answer(504) => (504, "no response within request_timeout"),
        Next::Answer(s) | Next::AnswerAndClose(s) => (s, "the target failed"),
        Next::Close | Next::Failover | Next::Again | Next::Replay => (502, "the target failed"),
    };
    answer.error(status, message, action, record, in_flight)
}
