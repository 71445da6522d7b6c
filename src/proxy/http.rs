//! Forwarding one HTTP request to a target of a group, and its response back.

use crate::balance::sticky::Bound;
use crate::config::{GroupProtocol, ProtocolVersion};
use crate::oidc::gate::{CALLBACK_PATH, Counted, Identity, Outcome};
use crate::proxy::attempt::{self, ClientFailure, Failure, Next, Tried, Verdict, idempotent};
use crate::proxy::body::{BodyFraming, ClientBodyError, InFlight, ProxyBody, Release, RequestBody};
use crate::proxy::client::ClientConn;
use crate::proxy::desync;
use crate::proxy::grpc;
use crate::proxy::headers::{
    TargetHead, X_REQUEST_ID, header_bytes, prepare_request, strip_hop_by_hop, wants_upgrade,
};
use crate::proxy::pool::{self, MAX_STALE_RETRIES, TargetConn};
use crate::proxy::raw::{self, HeadError, RawBody, RawRelease};
use crate::proxy::record::RequestRecord;
use crate::proxy::respond::lb_error;
use crate::route::RequestView;
use crate::route::redirect::{BadRedirect, RedirectSource};
use crate::route::request::strip_port;
use crate::runtime::listener::ListenerRuntime;
use crate::runtime::listener::{GroupChoice, RouteAction};
use crate::runtime::target::OutstandingGuard;
use crate::upstream::sent::{TargetTimeout, within_request_timeout};
use bytes::{Bytes, BytesMut};
use http::header;
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

/// Serves one request that arrived on `conn`.
/// `in_flight` is taken by the caller as soon as the request head is parsed.
pub async fn handle(
    conn: Arc<ClientConn>,
    index: u64,
    req: Request<Incoming>,
    in_flight: InFlight,
) -> Response<ProxyBody> {
    let Some(listener) = conn.listener() else {
        // The listener was removed by a reload while this connection drains.
        let mut resp = Response::new(ProxyBody::full(
            Bytes::from_static(b"503 Service Unavailable\n"),
            Some(in_flight),
        ));
        *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        return resp;
    };
    if conn.is_ambiguous(index) {
        let refusal = desync::Refusal::BadRequest(
            "Content-Length with Transfer-Encoding, or Content-Length repeated",
        );
        return refuse(&conn, &listener, refusal, in_flight);
    }
    let (parts, body) = req.into_parts();
    if let Err(refusal) = desync::check(&parts) {
        return refuse(&conn, &listener, refusal, in_flight);
    }
    // hyper bounds the head by its read buffer, which a large read overshoots.
    let head = parts.method.as_str().len()
        + parts.uri.path_and_query().map_or(0, |p| p.as_str().len())
        + 12
        + header_bytes(&parts.headers);
    if head > listener.max_header_bytes {
        return refuse(&conn, &listener, desync::Refusal::HeadTooLarge, in_flight);
    }
    if body.size_hint().lower() > listener.max_body_bytes {
        return refuse(&conn, &listener, desync::Refusal::TooLarge, in_flight);
    }
    let mut record = listener
        .access_log
        .as_ref()
        .map(|log| RequestRecord::new(log, &conn, &listener.name, &parts));
    let mut resp = answer(
        (&conn, index),
        &listener,
        parts,
        body,
        in_flight,
        record.as_deref_mut(),
    )
    .await;
    if let Some(mut r) = record {
        r.response(resp.status().as_u16());
        resp.body_mut().set_record(Some(r));
    }
    resp
}

/// A request refused before routing (SPEC: 400 for what could smuggle a second
/// request, 414 for a target too long); the connection closes after it.
fn refuse(
    conn: &ClientConn,
    listener: &ListenerRuntime,
    refusal: desync::Refusal,
    in_flight: InFlight,
) -> Response<ProxyBody> {
    listener.unrouted.requests.inc();
    let status = match refusal {
        desync::Refusal::BadRequest(why) => {
            tracing::debug!(peer = %conn.peer, "request refused: {why}");
            StatusCode::BAD_REQUEST
        }
        desync::Refusal::UriTooLong => StatusCode::URI_TOO_LONG,
        desync::Refusal::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        desync::Refusal::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        desync::Refusal::HeadTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
    };
    let mut resp = lb_error(status, &listener.unrouted.from_lb, in_flight);
    resp.headers_mut()
        .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
    resp
}

/// Counts a login's outcome on `listener`.
fn count_login(listener: &ListenerRuntime, counted: Counted) {
    let index = match counted {
        Counted::Success => 0,
        Counted::Failure => 1,
        Counted::Denied => 2,
    };
    if let Some(c) = &listener.metrics.oidc {
        c[index].inc();
    }
}

/// The Host a request came to (its authority for HTTP/2).
fn request_host(parts: &http::request::Parts) -> String {
    parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| parts.uri.authority().map(|a| a.to_string()))
        .unwrap_or_default()
}

/// An answer of the load balancer's own with `headers` (a login's redirect,
/// its 401 or 503), counted as the load balancer's.
fn lb_answer(
    listener: &ListenerRuntime,
    status: StatusCode,
    headers: Vec<(http::HeaderName, http::HeaderValue)>,
    in_flight: InFlight,
) -> Response<ProxyBody> {
    listener.unrouted.requests.inc();
    listener.unrouted.from_lb.count(status.as_u16());
    let mut resp = Response::new(ProxyBody::full(Bytes::new(), Some(in_flight)));
    *resp.status_mut() = status;
    for (name, value) in headers {
        resp.headers_mut().append(name, value);
    }
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    resp
}

/// `/oauth2/idpresponse`: the listener's gates in turn, the first whose
/// login the request carries ends it; none → 401.
async fn login_callback(
    listener: &ListenerRuntime,
    parts: &http::request::Parts,
    in_flight: InFlight,
) -> Response<ProxyBody> {
    let host = request_host(parts);
    let query = parts.uri.query().unwrap_or("");
    for gate in &listener.gates {
        if let Some((Outcome::Answer(status, headers), counted)) = gate
            .callback(&listener.cookie_keys, &parts.headers, &host, query)
            .await
        {
            count_login(listener, counted);
            return lb_answer(listener, status, headers, in_flight);
        }
    }
    count_login(listener, Counted::Failure);
    lb_answer(listener, StatusCode::UNAUTHORIZED, Vec::new(), in_flight)
}

/// Routes a request and answers it: forwarded, redirected or fixed.
async fn answer(
    (conn, index): (&Arc<ClientConn>, u64),
    listener: &ListenerRuntime,
    parts: http::request::Parts,
    body: Incoming,
    in_flight: InFlight,
    mut record: Option<&mut RequestRecord>,
) -> Response<ProxyBody> {
    // The end of a login (SPEC §9), ahead of the rules.
    if !listener.gates.is_empty() && parts.uri.path() == CALLBACK_PATH {
        // Boxed, as every rare path below: the request's future is moved
        // whole at each await up the chain and into hyper's task, so a large
        // state of one path costs every request a copy.
        return Box::pin(login_callback(listener, &parts, in_flight)).await;
    }
    let selected = listener
        .routes
        .select(&RequestView::new(&parts, conn.peer.ip()));
    let mut action = selected.action;
    let mut parts = parts;
    if let RouteAction::Authenticated(a) = action {
        let host = request_host(&parts);
        let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let (outcome, counted) =
            Box::pin(
                a.gate
                    .check(&listener.cookie_keys, &parts.headers, &host, target),
            )
            .await;
        if let Some(c) = counted {
            count_login(listener, c);
        }
        match outcome {
            Outcome::Pass(identity) => {
                parts.extensions.insert(Identity(identity));
                action = &a.action;
            }
            Outcome::Answer(status, headers) => {
                if let Some(r) = record.as_mut() {
                    r.routed(selected.priority, "authenticate");
                }
                return lb_answer(listener, status, headers, in_flight);
            }
        }
    }
    if let Some(r) = record.as_mut() {
        let kind = match action {
            RouteAction::Forward(_) => "forward",
            RouteAction::Redirect(_) => "redirect",
            RouteAction::Fixed(_) => "fixed_response",
            RouteAction::Authenticated(_) => "authenticate",
        };
        r.routed(selected.priority, kind);
    }
    match action {
        RouteAction::Forward(f) => {
            let pick = f.pick(&parts.headers, &listener.cookie_keys);
            let mut resp = forward(
                (conn, index),
                pick.choice,
                Request::from_parts(parts, body),
                listener.max_body_bytes,
                listener.idle_timeout,
                in_flight,
                record,
            )
            .await;
            if let Some(cookie) = pick.set_cookie {
                resp.headers_mut().append(header::SET_COOKIE, cookie);
            }
            resp
        }
        RouteAction::Redirect(r) => {
            listener.unrouted.requests.inc();
            let source = RedirectSource {
                protocol: listener.protocol_name(),
                host: strip_port(
                    parts
                        .headers
                        .get(header::HOST)
                        .map(|h| h.as_bytes())
                        .or_else(|| parts.uri.authority().map(|a| a.as_str().as_bytes()))
                        .unwrap_or(b""),
                ),
                port: conn.local_port,
                path: parts.uri.path().as_bytes(),
                query: parts.uri.query().unwrap_or("").as_bytes(),
            };
            match r.location(&source) {
                Ok(location) => {
                    listener.unrouted.from_lb.count(r.status.as_u16());
                    let mut resp = Response::new(ProxyBody::full(Bytes::new(), Some(in_flight)));
                    *resp.status_mut() = r.status;
                    resp.headers_mut().insert(header::LOCATION, location);
                    resp
                }
                Err(BadRedirect(why)) => {
                    tracing::debug!(peer = %conn.peer, "redirect refused: {why}");
                    lb_error(
                        StatusCode::BAD_REQUEST,
                        &listener.unrouted.from_lb,
                        in_flight,
                    )
                }
            }
        }
        // Never nested: a rule has one `authenticate`.
        RouteAction::Authenticated(_) => lb_answer(
            listener,
            StatusCode::INTERNAL_SERVER_ERROR,
            Vec::new(),
            in_flight,
        ),
        RouteAction::Fixed(f) => {
            listener.unrouted.requests.inc();
            listener.unrouted.from_lb.count(f.status.as_u16());
            let mut resp = Response::new(ProxyBody::full(f.body.clone(), Some(in_flight)));
            *resp.status_mut() = f.status;
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, f.content_type.clone());
            resp
        }
    }
}

pin_project_lite::pin_project! {
    /// Sending a request on either kind of [`Conn`].
    #[project = ExchangeProj]
    enum Exchange<D, U> {
        Driven { #[pin] send: D },
        Upgradable { #[pin] send: U },
    }
}

impl<T, D: Future<Output = T>, U: Future<Output = T>> Future for Exchange<D, U> {
    type Output = T;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<T> {
        match self.project() {
            ExchangeProj::Driven { send } => send.poll(cx),
            ExchangeProj::Upgradable { send } => send.poll(cx),
        }
    }
}

/// A connection to a target for one request.
enum Conn {
    /// A pooled (or new) connection driven by this request.
    Driven(TargetConn),
    /// A connection for a protocol switch, driven by its own task.
    Upgradable(SendRequest<RequestBody>),
}

/// A copy of a request head that can be sent again: only for idempotent
/// requests without a body (nothing of theirs can be lost in a replay).
fn replayable_copy(req: &Request<RequestBody>) -> Option<Request<RequestBody>> {
    if !idempotent(req.method()) || !req.body().is_end_stream() {
        return None;
    }
    let mut copy = Request::new(RequestBody::Empty);
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    Some(copy)
}

/// Adds the stickiness cookie a response of target `choice` carries, if the
/// group is sticky and the binding is new or moved.
fn stick(
    conn: &ClientConn,
    group: &crate::runtime::target::GroupRuntime,
    choice: usize,
    bound: Bound,
    rebound: bool,
    headers: &mut http::HeaderMap,
) {
    let Some(sticky) = &group.stickiness else {
        return;
    };
    let https = conn.forwarded.proto.as_bytes() == b"https";
    // A retry moved the request: the binding changes too.
    let rebound = rebound || matches!(bound, Bound::Target(i) if i != choice);
    if let Some(cookie) = sticky.set_cookie(
        &group.name,
        &group.targets[choice].address,
        headers,
        rebound,
        https,
        &group.cookie_keys,
    ) {
        headers.append(header::SET_COOKIE, cookie);
    }
}

async fn forward(
    (conn, index): (&Arc<ClientConn>, u64),
    action: &GroupChoice,
    req: Request<Incoming>,
    body_limit: u64,
    stall_timeout: Duration,
    in_flight: InFlight,
    mut record: Option<&mut RequestRecord>,
) -> Response<ProxyBody> {
    action.metrics.requests.inc();
    let group = &action.group;
    if group.protocol_version.is_h2() {
        // SPEC §7: no protocol switch to HTTP/2 targets (as ALB); a grpc
        // group takes gRPC requests only.
        if wants_upgrade(req.headers(), req.version()) {
            return lb_error(StatusCode::BAD_REQUEST, &action.metrics.from_lb, in_flight);
        }
        if group.protocol_version == ProtocolVersion::Grpc
            && !(req.version() == http::Version::HTTP_2 && grpc::is_grpc(req.headers()))
        {
            if let Some(r) = record.as_mut() {
                r.error("not_grpc");
            }
            return lb_error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                &action.metrics.from_lb,
                in_flight,
            );
        }
    }
    let (parts, body) = req.into_parts();
    let mut req = Request::from_parts(
        parts,
        RequestBody::client(
            body,
            body_limit,
            stall_timeout,
            BodyFraming::new(conn.clone(), index),
        ),
    );
    let upgrade = wants_upgrade(req.headers(), req.version());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    // What a 101 must answer: `None` when no switch was asked for (a 101 is
    // then refused); the WebSocket key when one was sent.
    let ws_key = upgrade.then(|| req.headers().get(header::SEC_WEBSOCKET_KEY).cloned());
    // A body-less request to a plain group goes on the fast path's sockets,
    // its head written straight from the client's (see `proxy::raw`).
    let raw_head = (conn.fast_path
        && group.protocol == GroupProtocol::Http
        && !group.protocol_version.is_h2()
        && raw::eligible(req.method(), req.body().is_end_stream(), upgrade)
        && req.extensions().get::<Identity>().is_none())
    .then(|| raw::target_head(&req, &conn.forwarded, identity_lines(conn)))
    .flatten();
    match &raw_head {
        Some(head) => {
            if let Some(r) = record.as_mut() {
                match &head.made_id {
                    Some(id) => r.request_id_raw(Some(id)),
                    None => r.request_id(req.headers().get(&X_REQUEST_ID)),
                }
            }
        }
        None => {
            let head = if group.protocol_version.is_h2() {
                TargetHead::Http2 {
                    tls: group.protocol == GroupProtocol::Https,
                }
            } else {
                TargetHead::Http1 { upgrade }
            };
            prepare_request(&mut req, &conn.forwarded, head, conn.identity.get());
            // hyper's client sends no body for a GET or HEAD of unknown length
            // unless told to chunk it: the body goes on, never dropped.
            if matches!(head, TargetHead::Http1 { .. })
                && matches!(*req.method(), Method::GET | Method::HEAD)
                && !req.body().is_end_stream()
                && req.body().size_hint().exact().is_none()
                && !req.headers().contains_key(header::CONTENT_LENGTH)
            {
                req.headers_mut().insert(
                    header::TRANSFER_ENCODING,
                    http::HeaderValue::from_static("chunked"),
                );
            }
            if let Some(r) = record.as_mut() {
                r.request_id(req.headers().get(&X_REQUEST_ID));
            }
        }
    }

    // Target stickiness first: a valid cookie naming a target that can take
    // the request keeps the client there; anything else is a fresh pick.
    let bound = match &group.stickiness {
        None => Bound::None,
        Some(s) => s.bound(&group.name, req.headers(), &group.cookie_keys, |address| {
            let i = group
                .targets
                .iter()
                .position(|t| t.address.as_bytes() == address)?;
            group.can_take(i).then_some(i)
        }),
    };
    let mut rebound = false;
    let first = match bound {
        Bound::Target(i) => Some(i),
        Bound::None => group.pick(None),
        Bound::Rejected => {
            group.metrics.sticky_rejected.inc();
            rebound = true;
            group.pick(None)
        }
        Bound::Unavailable => {
            rebound = true;
            group.pick(None)
        }
    };
    if group.protocol_version.is_h2() {
        let stick_to = |choice, headers: &mut http::HeaderMap| {
            stick(conn, group, choice, bound, rebound, headers);
        };
        // Boxed: HTTP/2 targets' exchange (3 KB of state) would otherwise
        // size the future of every request, whatever its group.
        return Box::pin(crate::proxy::h2::forward(
            action,
            req,
            first,
            stick_to,
            stall_timeout,
            in_flight,
            record,
        ))
        .await;
    }
    let Some(mut choice) = first else {
        if let Some(r) = record.as_mut() {
            r.error("no_target");
        }
        return lb_error(
            StatusCode::SERVICE_UNAVAILABLE,
            &action.metrics.from_lb,
            in_flight,
        );
    };
    if let Some(head) = raw_head {
        let request = RawRequest {
            head: head.bytes,
            head_request: req.method() == Method::HEAD,
            replayable: idempotent(req.method()),
        };
        drop(req);
        let sticky = (bound, rebound);
        return forward_raw(
            conn,
            action,
            request,
            choice,
            sticky,
            stall_timeout,
            in_flight,
            record,
        )
        .await;
    }
    // Each of these is allowed once: a failed connect (nothing was sent), and a
    // failed exchange for a replayable request (the target went away under it).
    let mut connect_failed = false;
    let mut replayed = false;
    let mut stale_retries = 0;
    loop {
        let target = &group.targets[choice];
        let mut sent_at = Instant::now();
        let pooled = if upgrade || stale_retries >= MAX_STALE_RETRIES {
            None
        } else {
            target.shared.pool.checkout(sent_at)
        };
        let reused = pooled.is_some();
        let connected = match pooled {
            Some(c) => Ok(Conn::Driven(c)),
            // Boxed: connecting is the rare path, and its future would otherwise
            // make every request's future (moved by hyper) much larger.
            None if upgrade => Box::pin(pool::connect_upgradable(
                target.addr,
                group.connect_timeout,
                target.tls.as_ref(),
            ))
            .await
            .map(Conn::Upgradable),
            None => Box::pin(pool::connect(
                target.addr,
                group.connect_timeout,
                target.tls.as_ref(),
            ))
            .await
            .map(Conn::Driven),
        };
        let mut target_conn = match connected {
            Ok(c) => c,
            Err(e) => {
                let verdict = e.charge(group, choice, u32::from(connect_failed), 1);
                if verdict.next == Next::Failover
                    && let Some(next) = group.pick(Some(choice))
                {
                    connect_failed = true;
                    choice = next;
                    continue;
                }
                if let Some(r) = record.as_mut() {
                    r.target(&group.name, target.addr);
                }
                return answer_failure(&verdict, action, record.as_deref_mut(), in_flight);
            }
        };
        if !reused {
            sent_at = Instant::now();
        }
        let replay = if !replayed {
            replayable_copy(&req)
        } else {
            None
        };
        let outstanding = target.start_request();
        if let Some(r) = record.as_mut() {
            r.target(&group.name, target.addr);
        }
        let progress = req.body().progress();
        // Not an async block over both: that would hold a second copy of the
        // request in a future moved with every request.
        let exchange = match &mut target_conn {
            Conn::Driven(c) => Exchange::Driven { send: c.send(req) },
            Conn::Upgradable(s) => Exchange::Upgradable {
                send: s.try_send_request(req),
            },
        };
        // Boxed: hyper's client exchange (1.7 KB of state) is the path of
        // upgrades and of requests the raw exchange does not take.
        let waited = Box::pin(within_request_timeout(
            exchange,
            group.request_timeout,
            progress.as_deref(),
        ));
        let attempt = attempt::Request {
            replayable: replay.is_some(),
            reused,
        };
        let tried = Tried {
            failovers: u32::from(connect_failed),
            replayed,
        };
        // Ends the request with the policy's answer for `failure`.
        let fail = |failure: Failure, what: &dyn std::fmt::Display| {
            let verdict = attempt::decide(failure, attempt, tried, 1);
            verdict.charge(group, choice, &format_args!("target failed: {what}"));
            verdict
        };
        match waited.await {
            Err(TargetTimeout) => {
                let verdict = fail(Failure::Timeout, &"no response within request_timeout");
                return answer_failure(&verdict, action, record.as_deref_mut(), in_flight);
            }
            Ok(Ok(resp)) if header_bytes(resp.headers()) > pool::TARGET_MAX_HEAD_BYTES => {
                let verdict = fail(
                    Failure::InvalidHead { too_large: true },
                    &crate::wire::response::HEAD_TOO_LARGE,
                );
                return answer_failure(&verdict, action, record.as_deref_mut(), in_flight);
            }
            Ok(Ok(resp)) if let Some(why) = refused_response(&resp, ws_key.as_ref()) => {
                let verdict = fail(Failure::InvalidHead { too_large: false }, &why);
                return answer_failure(&verdict, action, record.as_deref_mut(), in_flight);
            }
            Ok(Ok(resp)) => {
                group.metrics.response_time.observe(
                    progress
                        .as_ref()
                        .map_or_else(|| sent_at.elapsed(), |p| p.since_last_change())
                        .as_secs_f64(),
                );
                action.metrics.from_target.count(resp.status().as_u16());
                if let Some(r) = record.as_mut() {
                    r.target_status(resp.status().as_u16());
                }
                return match (target_conn, client_upgrade) {
                    (Conn::Upgradable(sender), Some(client_upgrade)) => {
                        switch_protocols(conn, resp, sender, outstanding, client_upgrade, in_flight)
                    }
                    (Conn::Driven(c), _) => {
                        // hyper's client downgrades every later request on a
                        // connection that answered HTTP/1.0 (and a chunked body
                        // would go out empty): such a connection is not reused.
                        let reusable = resp.version() == http::Version::HTTP_11;
                        let (mut parts, body) = resp.into_parts();
                        // The client is answered in HTTP/1.1 whatever the
                        // target spoke (as on the fast path).
                        parts.version = http::Version::HTTP_11;
                        strip_hop_by_hop(&mut parts.headers, false);
                        stick(conn, group, choice, bound, rebound, &mut parts.headers);
                        Response::from_parts(
                            parts,
                            ProxyBody::target(
                                body,
                                Some(Release {
                                    conn: c,
                                    reusable,
                                    outstanding,
                                    sent_at,
                                    group: group.clone(),
                                    index: choice,
                                }),
                                stall_timeout,
                                Some(in_flight),
                            ),
                        )
                    }
                    (Conn::Upgradable(_), None) => {
                        unreachable!("upgradable connections serve upgrade requests only")
                    }
                };
            }
            Ok(Err(mut e)) => {
                let unsent = e.take_message();
                let e = e.into_error();
                let failure = match (&unsent, ClientBodyError::find(&e)) {
                    (Some(_), _) => Failure::Stale { unsent: true },
                    // The client's body failing is not the target's fault.
                    (None, Some(client)) => Failure::Client(ClientFailure::of(client)),
                    (None, None) => Failure::Reset,
                };
                let verdict = fail(failure, &e);
                match (verdict.next, unsent, replay) {
                    // A reused connection the target had closed: the request is back, unsent.
                    (Next::Again, Some(unsent), _) => {
                        req = unsent;
                        stale_retries += 1;
                    }
                    // The target went away under the request: a body-less
                    // idempotent one is sent again, elsewhere if possible.
                    (Next::Replay, _, Some(copy)) => {
                        req = copy;
                        replayed = true;
                        stale_retries = MAX_STALE_RETRIES;
                        choice = group.pick(Some(choice)).unwrap_or(choice);
                    }
                    _ => {
                        if verdict.blame.is_none() {
                            tracing::debug!(peer = %conn.peer, "request abandoned: {e}");
                        }
                        return answer_failure(&verdict, action, record.as_deref_mut(), in_flight);
                    }
                }
            }
        }
    }
}

/// Ends a request the attempt policy gave up on: the access log's error and
/// the load balancer's answer (its connection closed after it when the
/// request's body was not read to its end).
fn answer_failure(
    verdict: &Verdict,
    action: &GroupChoice,
    record: Option<&mut RequestRecord>,
    in_flight: InFlight,
) -> Response<ProxyBody> {
    if let (Some(r), Some(error)) = (record, verdict.error) {
        r.error(error);
    }
    let (status, close) = match verdict.next {
        Next::Answer(status) => (status, false),
        Next::AnswerAndClose(status) => (status, true),
        // A connection hyper serves is not closed without an answer; a
        // failover with no other target left is 502.
        Next::Close | Next::Failover | Next::Again | Next::Replay => (502, true),
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut resp = lb_error(status, &action.metrics.from_lb, in_flight);
    if close {
        resp.headers_mut()
            .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
    }
    resp
}

/// Why a target's response head cannot be passed on (502, and a failed
/// check of the target), the same rules as the fast path's
/// (`wire::response`): a 101 to a request that asked for no upgrade, a
/// WebSocket 101 whose `Sec-WebSocket-Accept` does not answer the client's
/// key (RFC 6455 §4.1: the client would fail it; HAProxy answers 502), a
/// Transfer-Encoding other than one `chunked`. `ws_key` is `None` when no
/// upgrade was asked for, `Some(None)` for an upgrade without a key.
fn refused_response(
    resp: &Response<Incoming>,
    ws_key: Option<&Option<http::HeaderValue>>,
) -> Option<&'static str> {
    let h = resp.headers();
    let mut codings = h.get_all(header::TRANSFER_ENCODING).iter();
    if let Some(te) = codings.next()
        && (codings.next().is_some() || !crate::wire::response::is_plain_chunked(te.as_bytes()))
    {
        return Some(crate::wire::response::NOT_CHUNKED);
    }
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return None;
    }
    match ws_key {
        None => Some("101 to a request that asked for no upgrade"),
        Some(Some(key)) if !websocket_accept_matches(key, h.get(header::SEC_WEBSOCKET_ACCEPT)) => {
            Some("101 without the Sec-WebSocket-Accept the client's key asks for")
        }
        Some(_) => None,
    }
}

/// Whether `accept` is base64(SHA-1(key ++ the RFC 6455 GUID)).
fn websocket_accept_matches(key: &http::HeaderValue, accept: Option<&http::HeaderValue>) -> bool {
    use base64::Engine;
    const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let Some(accept) = accept else {
        return false;
    };
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key.as_bytes());
    ctx.update(GUID);
    let expected = base64::engine::general_purpose::STANDARD.encode(ctx.finish());
    accept.as_bytes().trim_ascii() == expected.as_bytes()
}

/// A body-less request as [`forward_raw`] sends it.
struct RawRequest {
    /// The head the target gets (kept to send again).
    head: Vec<u8>,
    head_request: bool,
    /// Idempotent: may go again after a pooled socket failed under it.
    replayable: bool,
}

/// [`forward`] for a body-less request to a plain target group: sent by
/// [`raw`] on the fast path's sockets, the response body read off the socket.
/// Retries as the fast path does (the attempt policy through
/// [`pool::RawAttempts`]): a request that found its pooled socket closed
/// before any answer goes again if it is idempotent, once elsewhere when a
/// new socket closes under it too; a failed connect tries another target once.
#[allow(clippy::too_many_arguments)]
async fn forward_raw(
    conn: &ClientConn,
    action: &GroupChoice,
    request: RawRequest,
    mut choice: usize,
    (bound, rebound): (Bound, bool),
    stall_timeout: Duration,
    in_flight: InFlight,
    mut record: Option<&mut RequestRecord>,
) -> Response<ProxyBody> {
    let group = &action.group;
    let RawRequest {
        head,
        head_request,
        replayable,
    } = request;
    let mut attempts = pool::RawAttempts::default();
    loop {
        let got = pool::raw_socket(group, &mut choice, &mut attempts).await;
        let target = &group.targets[choice];
        let Some((mut stream, reused, sent_at)) = got else {
            if let Some(r) = record.as_mut() {
                r.target(&group.name, target.addr);
                r.error("connect_failed");
            }
            return lb_error(StatusCode::BAD_GATEWAY, &action.metrics.from_lb, in_flight);
        };
        let outstanding = target.start_request();
        if let Some(r) = record.as_mut() {
            r.target(&group.name, target.addr);
        }
        let mut buf = BytesMut::with_capacity(raw::FIRST_READ);
        let exchange = raw::exchange(&mut stream, &head, &mut buf, head_request);
        let (failure, what): (Failure, &'static str) =
            match tokio::time::timeout(group.request_timeout, exchange).await {
                Err(_elapsed) => (Failure::Timeout, "no response within request_timeout"),
                Ok(Ok(resp)) => {
                    group
                        .metrics
                        .response_time
                        .observe(sent_at.elapsed().as_secs_f64());
                    let status = resp.parts.status.as_u16();
                    action.metrics.from_target.count(status);
                    if let Some(r) = record.as_mut() {
                        r.target_status(status);
                    }
                    let mut parts = resp.parts;
                    stick(conn, group, choice, bound, rebound, &mut parts.headers);
                    let release = RawRelease {
                        stream,
                        outstanding,
                        sent_at,
                        group: group.clone(),
                        index: choice,
                    };
                    let body =
                        RawBody::new(resp.framing, resp.reusable, buf, release, stall_timeout);
                    return Response::from_parts(parts, ProxyBody::raw(body, Some(in_flight)));
                }
                Ok(Err(HeadError::Stale)) => (
                    Failure::Stale { unsent: false },
                    "closed without a response",
                ),
                Ok(Err(HeadError::Broken(why))) => (
                    Failure::InvalidHead {
                        too_large: why == crate::wire::response::HEAD_TOO_LARGE,
                    },
                    why,
                ),
            };
        let request = attempt::Request { replayable, reused };
        let verdict = attempt::decide(failure, request, attempts.tried(), 1);
        verdict.charge(group, choice, &format_args!("target failed: {what}"));
        if attempts.go_again(verdict.next, group, &mut choice) {
            continue;
        }
        return answer_failure(&verdict, action, record.as_deref_mut(), in_flight);
    }
}

/// The answer to a request that asked to switch protocols: on `101` both
/// sockets are joined by a copying task; any other answer is passed on.
fn switch_protocols(
    conn: &ClientConn,
    mut resp: Response<Incoming>,
    sender: SendRequest<RequestBody>,
    outstanding: OutstandingGuard,
    client_upgrade: OnUpgrade,
    in_flight: InFlight,
) -> Response<ProxyBody> {
    let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
    if switching {
        conn.upgraded.store(true, Ordering::Relaxed);
        let target_upgrade = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            let _outstanding = outstanding;
            let _connection = sender;
            if let (Ok(client), Ok(target)) = tokio::join!(client_upgrade, target_upgrade) {
                let (mut client, mut target) = (TokioIo::new(client), TokioIo::new(target));
                let _ = tokio::io::copy_bidirectional(&mut client, &mut target).await;
            }
        });
    }
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers, switching);
    // The answer was not 101: its body is short; no stall limit of its own.
    Response::from_parts(
        parts,
        ProxyBody::target(body, None, Duration::MAX, Some(in_flight)),
    )
}

/// The connection's client-certificate header lines (SPEC §8); empty without.
fn identity_lines(conn: &ClientConn) -> &[u8] {
    conn.identity.get().map_or(&[][..], |i| &i.lines[..])
}
