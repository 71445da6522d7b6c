//! HTTP/2 and gRPC to targets (SPEC §7), against real HTTP/2 servers on
//! loopback (hyper's, h2c): HTTP/1.1 and HTTP/2 clients translated, trailers
//! both ways, the target's SETTINGS_MAX_CONCURRENT_STREAMS respected, a
//! GOAWAY under load costing nothing, gRPC-only groups, the load balancer's
//! errors as gRPC, gRPC status counting and gRPC health checks.

mod common;

use bytes::Bytes;
use common::*;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// A body of one data frame and then trailers.
struct WithTrailers {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl http_body::Body for WithTrailers {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(d) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(d))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }
}

/// What the HTTP/2 target saw and how it behaves.
#[derive(Default)]
struct Seen {
    requests: AtomicUsize,
    connections: AtomicUsize,
    /// The gRPC health service answers NOT_SERVING.
    not_serving: AtomicBool,
    /// Every connection sends GOAWAY after this many requests (0: never).
    goaway_after: AtomicUsize,
    /// Its address, answered in `x-target`.
    name: std::sync::OnceLock<String>,
    /// `/drip` streams begun.
    drips: AtomicUsize,
}

/// A real HTTP/2 (h2c prior knowledge) server: echoes what it got in
/// headers (`x-version`, `x-authority`, `x-te`, `x-path`), the body back,
/// and the request's trailers as `x-got-trailer-*`; answers with trailers
/// `grpc-status` (from `x-answer-status`, default 0) and `x-trailer: yes`;
/// waits `x-delay-ms`; serves `grpc.health.v1.Health/Check`.
async fn h2_target(max_streams: u32) -> (SocketAddr, Arc<Seen>) {
    serve_h2(max_streams, None).await
}

/// Either side of a target connection.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// The same target over TLS with `cert`, offering ALPN `alpn` (a target
/// that offers only `http/1.1` does not agree to HTTP/2).
async fn h2_tls_target(cert: &common::tls::TestCert, alpn: &[u8]) -> (SocketAddr, Arc<Seen>) {
    use rustls::pki_types::pem::PemObject;
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&cert.key_path).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.der.clone()], key)
    .unwrap();
    config.alpn_protocols = vec![alpn.to_vec()];
    serve_h2(100, Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))).await
}

async fn serve_h2(
    max_streams: u32,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> (SocketAddr, Arc<Seen>) {
    let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    seen.name.set(addr.to_string()).unwrap();
    let shared = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = socket.accept().await {
            shared.connections.fetch_add(1, Ordering::SeqCst);
            let seen = shared.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let stream: Box<dyn Io> = match tls {
                    None => Box::new(stream),
                    Some(acceptor) => match acceptor.accept(stream).await {
                        Ok(s) => Box::new(s),
                        Err(_) => return,
                    },
                };
                let served = Arc::new(AtomicUsize::new(0));
                let (tx, mut goaway) = tokio::sync::mpsc::channel::<()>(1);
                let service = hyper::service::service_fn(move |req| {
                    let seen = seen.clone();
                    let served = served.clone();
                    let tx = tx.clone();
                    async move {
                        let n = served.fetch_add(1, Ordering::SeqCst) + 1;
                        let limit = seen.goaway_after.load(Ordering::SeqCst);
                        if limit > 0 && n == limit {
                            let _ = tx.try_send(());
                        }
                        Ok::<_, Infallible>(answer_or_drip(req, &seen).await)
                    }
                });
                let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .max_concurrent_streams(max_streams)
                    .serve_connection(TokioIo::new(stream), service);
                let mut conn = std::pin::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => {}
                    _ = goaway.recv() => {
                        conn.as_mut().graceful_shutdown();
                        let _ = conn.await;
                    }
                }
            });
        }
    });
    (addr, seen)
}

/// A response body of `chunks` small chunks `every` apart, then trailers.
struct Drip {
    left: u32,
    tick: tokio::time::Interval,
}

impl http_body::Body for Drip {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        match self.tick.poll_tick(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(_) => {
                self.left -= 1;
                Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"drop\n")))))
            }
        }
    }
}

/// `answer`, or a dripping body for `/drip`.
async fn answer_or_drip(
    req: Request<Incoming>,
    seen: &Seen,
) -> Response<http_body_util::Either<WithTrailers, Drip>> {
    use http_body_util::Either;
    if req.uri().path() == "/drip" {
        seen.drips.fetch_add(1, Ordering::SeqCst);
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        return Response::new(Either::Right(Drip { left: 10, tick }));
    }
    answer(req, seen).await.map(Either::Left)
}

async fn answer(req: Request<Incoming>, seen: &Seen) -> Response<WithTrailers> {
    seen.requests.fetch_add(1, Ordering::SeqCst);
    let (parts, body) = req.into_parts();
    let delay = parts
        .headers
        .get("x-delay-ms")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(0);
    let collected = body.collect().await.unwrap();
    let request_trailers = collected.trailers().cloned().unwrap_or_default();
    let data = collected.to_bytes();
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let mut trailers = HeaderMap::new();
    if parts.uri.path() == "/grpc.health.v1.Health/Check" {
        let status = if seen.not_serving.load(Ordering::SeqCst) {
            2
        } else {
            1
        };
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        return Response::builder()
            .header("content-type", "application/grpc")
            .body(WithTrailers {
                data: Some(Bytes::from(vec![0, 0, 0, 0, 2, 0x08, status])),
                trailers: Some(trailers),
            })
            .unwrap();
    }
    let status = parts
        .headers
        .get("x-answer-status")
        .cloned()
        .unwrap_or(HeaderValue::from_static("0"));
    trailers.insert("grpc-status", status);
    trailers.insert("x-trailer", HeaderValue::from_static("yes"));
    let mut resp = Response::builder()
        .header("x-target", seen.name.get().map_or("", String::as_str))
        .header("x-version", format!("{:?}", parts.version))
        .header("x-path", parts.uri.path())
        .header(
            "x-authority",
            parts.uri.authority().map_or("", |a| a.as_str()),
        )
        .header(
            "x-te",
            parts
                .headers
                .get("te")
                .cloned()
                .unwrap_or(HeaderValue::from_static("")),
        );
    if let Some(ct) = parts.headers.get("content-type") {
        resp = resp.header("content-type", ct);
    }
    for (name, value) in &request_trailers {
        resp = resp.header(format!("x-got-trailer-{name}"), value);
    }
    resp.body(WithTrailers {
        data: Some(data),
        trailers: Some(trailers),
    })
    .unwrap()
}

/// A config with group `web` of `protocol_version` over `targets`.
fn config(listen: SocketAddr, targets: &[SocketAddr], version: &str, extra: &str) -> String {
    let targets: Vec<(SocketAddr, u32)> = targets.iter().map(|t| (*t, 1)).collect();
    one_group_config(
        listen,
        &targets,
        &format!(
            "protocol_version = \"{version}\"\nrequest_timeout = \"2s\"\n{extra}\n[target_groups.health_check]\ninterval = \"1s\"\ntimeout = \"500ms\"\nhealthy_threshold = 2\nunhealthy_threshold = 2\n"
        ),
    )
}

/// An HTTP/2 client of the listener that keeps response trailers.
struct Client {
    sender: hyper::client::conn::http2::SendRequest<WithTrailers>,
    addr: SocketAddr,
}

/// A response with its trailers.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    trailers: HeaderMap,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        Client { sender, addr }
    }

    /// POSTs `body` (then `trailers`, if any) to `path` with `headers`.
    async fn post(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
        body: &'static [u8],
        trailers: Option<HeaderMap>,
    ) -> Answer {
        let mut req = Request::post(format!("http://test.local:{}{path}", self.addr.port()));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(WithTrailers {
                // No empty DATA frame: the listener counts those as a flood.
                data: (!body.is_empty()).then(|| Bytes::from_static(body)),
                trailers,
            })
            .unwrap();
        let resp = self.sender.send_request(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        let collected = body.collect().await.unwrap();
        Answer {
            status: parts.status,
            headers: parts.headers,
            trailers: collected.trailers().cloned().unwrap_or_default(),
            body: collected.to_bytes(),
        }
    }
}

const GRPC: (&str, &str) = ("content-type", "application/grpc");

/// Waits until group `web` has `n` healthy targets.
async fn wait_healthy(lb: &Edgelb, n: f64) {
    wait_for(Duration::from_secs(5), "healthy targets", || async {
        lb.metric("edgelb_healthy_targets{target_group=\"web\"}")
            .await
            == n
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_groups_speak_http2_to_targets_with_trailers_both_ways() {
    let (target, seen) = h2_target(100).await;
    let listen = listen_addr();
    let lb = Edgelb::start(&config(listen, &[target], "http2", "")).await;
    wait_healthy(&lb, 1.0).await;

    // An HTTP/2 client: trailers both ways, TE: trailers kept, the Host as
    // :authority.
    let mut h2 = Client::connect(listen).await;
    let mut trailers = HeaderMap::new();
    trailers.insert("x-checksum", HeaderValue::from_static("abc"));
    let got = h2
        .post("/echo?q=1", &[("te", "trailers")], b"hello", Some(trailers))
        .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.headers["x-version"], "HTTP/2.0");
    assert_eq!(got.headers["x-path"], "/echo");
    assert_eq!(
        got.headers["x-authority"],
        format!("test.local:{}", listen.port()).as_str()
    );
    assert_eq!(got.headers["x-te"], "trailers");
    assert_eq!(got.headers["x-got-trailer-x-checksum"], "abc");
    assert_eq!(&got.body[..], b"hello");
    assert_eq!(got.trailers["x-trailer"], "yes");

    // An HTTP/1.1 client is translated (and the answer back).
    let mut h1 = H1::connect(listen).await;
    let got = h1.get("/from-h1").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.headers["x-version"], "HTTP/2.0");
    assert_eq!(got.headers["x-path"], "/from-h1");
    assert_eq!(got.headers["x-authority"], "test.local");
    // Pooled: one connection carried all of it (health checks have their own).
    let requests = seen.requests.load(Ordering::SeqCst);
    assert!(requests >= 2, "{requests}");

    // No protocol switch to an HTTP/2 group (as ALB).
    let req = Request::get("/ws")
        .header("host", "test.local")
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let mut h1 = H1::connect(listen).await;
    assert_eq!(h1.send(req).await.unwrap().status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_targets_stream_limit_opens_more_connections() {
    let (target, seen) = h2_target(2).await;
    let listen = listen_addr();
    let lb = Edgelb::start(&config(listen, &[target], "http2", "")).await;
    wait_healthy(&lb, 1.0).await;
    let before = seen.connections.load(Ordering::SeqCst);
    let h2 = Client::connect(listen).await;
    let calls: Vec<_> = (0..6)
        .map(|i| {
            let mut c = Client {
                sender: h2.sender.clone(),
                addr: listen,
            };
            tokio::spawn(async move {
                c.post(&format!("/slow/{i}"), &[("x-delay-ms", "300")], b"", None)
                    .await
                    .status
            })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), 200);
    }
    let opened = seen.connections.load(Ordering::SeqCst) - before;
    // Six streams at two per connection: three connections (health checks
    // open their own, so at least three more).
    assert!(
        opened >= 3,
        "only {opened} connections for 6 streams at 2 each"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_goaway_under_load_costs_no_request() {
    let (a, seen_a) = h2_target(100).await;
    let (b, _) = h2_target(100).await;
    let listen = listen_addr();
    let lb = Edgelb::start(&config(listen, &[a, b], "http2", "")).await;
    wait_healthy(&lb, 2.0).await;
    // Every connection of target a says GOAWAY after 10 requests.
    seen_a.goaway_after.store(10, Ordering::SeqCst);
    let h2 = Client::connect(listen).await;
    let mut clients = Vec::new();
    // Eight callers with answers that take 20 ms: streams are open and new
    // ones are being sent when a GOAWAY comes.
    for c in 0..8 {
        let mut client = Client {
            sender: h2.sender.clone(),
            addr: listen,
        };
        clients.push(tokio::spawn(async move {
            let mut failed = 0;
            for i in 0..25 {
                let got = client
                    .post(
                        &format!("/load/{c}/{i}"),
                        &[("x-delay-ms", "20")],
                        b"",
                        None,
                    )
                    .await;
                if got.status != 200 {
                    failed += 1;
                }
            }
            failed
        }));
    }
    let mut failed = 0;
    for c in clients {
        failed += c.await.unwrap();
    }
    assert_eq!(failed, 0, "requests failed across GOAWAYs");
    assert!(
        seen_a.connections.load(Ordering::SeqCst) >= 3,
        "a's connections went away and came back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_groups_take_grpc_only_and_answer_their_errors_as_grpc() {
    let (target, seen) = h2_target(100).await;
    let listen = listen_addr();
    let log = tempfile::NamedTempFile::new().unwrap();
    let lb = Edgelb::start(&config(listen, &[target], "grpc", "").replace(
        "[global]\n",
        &format!("[global]\naccess_log = \"{}\"\n", log.path().display()),
    ))
    .await;
    wait_healthy(&lb, 1.0).await;
    let mut h2 = Client::connect(listen).await;

    // A call passes with its status, counted by code.
    let got = h2
        .post(
            "/pkg.Svc/Call",
            &[GRPC, ("te", "trailers"), ("x-answer-status", "5")],
            b"\0\0\0\0\0",
            None,
        )
        .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.trailers["grpc-status"], "5");
    wait_for(Duration::from_secs(2), "code 5 counted", || async {
        lb.metric("edgelb_grpc_responses_total{code=\"5\",listener=\"front\",target_group=\"web\"}")
            .await
            == 1.0
    })
    .await;

    // Not gRPC: 415, from the load balancer.
    let got = h2
        .post(
            "/pkg.Svc/Call",
            &[("content-type", "application/json")],
            b"{}",
            None,
        )
        .await;
    assert_eq!(got.status, 415);
    let mut h1 = H1::connect(listen).await;
    assert_eq!(h1.get("/").await.status, 415);

    // request_timeout: DEADLINE_EXCEEDED as a trailers-only response.
    let got = h2
        .post("/pkg.Svc/Slow", &[GRPC, ("x-delay-ms", "3000")], b"", None)
        .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.headers["content-type"], "application/grpc");
    assert_eq!(got.headers["grpc-status"], "4");
    assert!(got.body.is_empty());

    // No healthy target: UNAVAILABLE.
    seen.not_serving.store(true, Ordering::SeqCst);
    wait_for(
        Duration::from_secs(5),
        "NOT_SERVING takes the target out",
        || async {
            lb.status_json().await["target_groups"][0]["targets"][0]["state"] == "unhealthy"
        },
    )
    .await;
    assert_eq!(
        lb.status_json().await["target_groups"][0]["targets"][0]["reason"],
        "Target.ResponseCodeMismatch"
    );
    seen.not_serving.store(false, Ordering::SeqCst);
    wait_for(
        Duration::from_secs(5),
        "SERVING brings it back by itself",
        || async { lb.status_json().await["target_groups"][0]["targets"][0]["state"] == "healthy" },
    )
    .await;
    assert_eq!(
        lb.metric(
            "edgelb_grpc_responses_total{code=\"4\",listener=\"front\",target_group=\"web\"}"
        )
        .await,
        1.0
    );
    let lines = std::fs::read_to_string(log.path()).unwrap();
    let statuses: Vec<serde_json::Value> = lines
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["type"] == "http")
        .map(|l| l["grpc_status"].clone())
        .collect();
    assert!(statuses.contains(&serde_json::json!(5)), "{statuses:?}");
    assert!(statuses.contains(&serde_json::json!(4)), "{statuses:?}");
    assert!(statuses.contains(&serde_json::Value::Null), "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_call_to_a_dead_target_gets_unavailable() {
    let dead = {
        let s = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap()
    };
    let listen = listen_addr();
    let lb = Edgelb::start(&config(listen, &[dead], "grpc", "fail_open = true")).await;
    let mut h2 = Client::connect(listen).await;
    let got = h2.post("/pkg.Svc/Call", &[GRPC], b"", None).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.headers["grpc-status"], "14");
    assert!(got.headers.contains_key("grpc-message"));
    wait_for(
        Duration::from_secs(2),
        "code 14 counted from the lb",
        || async {
            lb.metric(
                "edgelb_grpc_responses_total{code=\"14\",listener=\"front\",target_group=\"web\"}",
            )
            .await
                >= 1.0
        },
    )
    .await;
}

/// An HTTP/2 server (the `h2` crate's) that refuses every stream for a path
/// under `/work` with REFUSED_STREAM (RFC 9113 §8.7: not processed, safe to
/// send again) and answers anything else 200; counts the refusals.
async fn refusing_target() -> (SocketAddr, Arc<AtomicUsize>) {
    let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let refused = Arc::new(AtomicUsize::new(0));
    let count = refused.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = socket.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(stream).await else {
                    return;
                };
                while let Some(Ok((req, mut respond))) = conn.accept().await {
                    if req.uri().path().starts_with("/work") {
                        count.fetch_add(1, Ordering::SeqCst);
                        respond.send_reset(h2::Reason::REFUSED_STREAM);
                    } else {
                        let _ = respond.send_response(Response::new(()), true);
                    }
                }
            });
        }
    });
    (addr, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_a_target_refused_unprocessed_go_to_another_even_a_post() {
    let (refuser, refused) = refusing_target().await;
    let (good, seen) = h2_target(100).await;
    let listen = listen_addr();
    let lb = Edgelb::start(&config(listen, &[refuser, good], "http2", "")).await;
    wait_healthy(&lb, 2.0).await;
    let mut h2 = Client::connect(listen).await;
    for i in 0..6 {
        // A body-less POST is not idempotent, but a refused stream was not
        // processed: it goes again all the same.
        let got = h2.post(&format!("/work/{i}"), &[], b"", None).await;
        assert_eq!(got.status, 200, "POST {i}");
    }
    assert!(
        refused.load(Ordering::SeqCst) > 0,
        "no stream met the refusing target"
    );
    assert!(seen.requests.load(Ordering::SeqCst) >= 6);
    assert_eq!(
        lb.metric("edgelb_http_responses_total{class=\"5xx\",listener=\"front\",source=\"lb\",target_group=\"web\"}").await,
        0.0
    );
}

/// A request body that ends, empty, only after a delay: a client whose
/// END_STREAM comes after the target already refused the stream.
struct EmptyEndingLate(Pin<Box<tokio::time::Sleep>>);

impl http_body::Body for EmptyEndingLate {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.as_mut().poll(cx).map(|()| None)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_post_whose_empty_body_ends_late_goes_again() {
    let (refuser, refused) = refusing_target().await;
    let (good, _) = h2_target(100).await;
    let listen = listen_addr();
    let lb = Edgelb::start(&config(listen, &[refuser, good], "http2", "")).await;
    wait_healthy(&lb, 2.0).await;
    let stream = TcpStream::connect(listen).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    // Round robin over two targets: one of two meets the refusing one, while
    // the client's (empty) body is still open; it must go again, not 502.
    for i in 0..4 {
        let late = EmptyEndingLate(Box::pin(tokio::time::sleep(Duration::from_millis(150))));
        let req = Request::post(format!("http://test.local:{}/work/late{i}", listen.port()))
            .body(late)
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200, "POST {i}");
        let _ = resp.into_body().collect().await;
    }
    assert!(
        refused.load(Ordering::SeqCst) > 0,
        "no stream met the refusing target"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_groups_agree_on_h2_by_alpn_or_fail_the_request() {
    let ca = common::tls::TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    ca.write_pem(&dir.path().join("ca.pem"));
    let cert = ca.issue(dir.path(), "target", &["127.0.0.1"]);
    let (h2, _) = h2_tls_target(&cert, b"h2").await;
    let (h1_only, _) = h2_tls_target(&cert, b"http/1.1").await;
    let https = |listen, target| {
        config(
            listen,
            &[target],
            "http2",
            &format!("ca_file = \"{}\"", dir.path().join("ca.pem").display()),
        )
        .replace(
            "name = \"web\"\nprotocol = \"http\"",
            "name = \"web\"\nprotocol = \"https\"",
        )
    };
    let l1 = listen_addr();
    let lb = Edgelb::start(&https(l1, h2)).await;
    wait_healthy(&lb, 1.0).await;
    let got = H1::connect(l1).await.get("/over-tls").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.headers["x-version"], "HTTP/2.0");

    // A target that does not agree to h2: 502, and a failed check.
    let l2 = listen_addr();
    let lb2 = Edgelb::start(&https(l2, h1_only)).await;
    assert_eq!(H1::connect(l2).await.get("/").await.status, 502);
    wait_for(
        Duration::from_secs(5),
        "the non-h2 target unhealthy",
        || async {
            lb2.status_json().await["target_groups"][0]["targets"][0]["state"] == "unhealthy"
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_outlives_request_timeout_while_data_flows() {
    let (target, _) = h2_target(100).await;
    let listen = listen_addr();
    // request_timeout 1s; the body drips for 2.5 s.
    let lb = Edgelb::start(
        &config(listen, &[target], "http2", "")
            .replace("request_timeout = \"2s\"", "request_timeout = \"1s\""),
    )
    .await;
    wait_healthy(&lb, 1.0).await;
    let started = std::time::Instant::now();
    let got = H2::connect(listen).await.get("/drip").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.text(), "drop\n".repeat(10));
    assert!(started.elapsed() > Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_http2_groups_keep_a_client_on_its_target() {
    let (a, _) = h2_target(100).await;
    let (b, _) = h2_target(100).await;
    let listen = listen_addr();
    let lb = Edgelb::start(&config(
        listen,
        &[a, b],
        "http2",
        "stickiness = { type = \"lb_cookie\", duration = \"1h\" }",
    ))
    .await;
    wait_healthy(&lb, 2.0).await;
    let mut h1 = H1::connect(listen).await;
    let first = h1.get("/").await;
    let target = first.headers["x-target"].clone();
    let cookie = first.headers["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    for _ in 0..6 {
        let req = Request::get("/")
            .header("host", "test.local")
            .header("cookie", &cookie)
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert_eq!(h1.send(req).await.unwrap().headers["x-target"], target);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_targets_streams_finish() {
    let (a, seen_a) = h2_target(100).await;
    let (b, _) = h2_target(100).await;
    let listen = listen_addr();
    let lb = Edgelb::start(&config(
        listen,
        &[a],
        "http2",
        "deregistration_delay = \"10s\"",
    ))
    .await;
    wait_healthy(&lb, 1.0).await;
    // A stream of 2.5 s on a; a is removed by a reload while it flows.
    let stream = tokio::spawn(async move { H2::connect(listen).await.get("/drip").await });
    wait_for(
        Duration::from_secs(5),
        "the stream under way on a",
        || async { seen_a.drips.load(Ordering::SeqCst) == 1 },
    )
    .await;
    let generation = lb.generation().await;
    lb.rewrite(&config(
        listen,
        &[b],
        "http2",
        "deregistration_delay = \"10s\"",
    ));
    lb.signal("HUP");
    wait_for(Duration::from_secs(5), "the reload", || async {
        lb.generation().await > generation
    })
    .await;
    let status = lb.status_json().await;
    let draining = status["target_groups"][0]["targets"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["address"] == a.to_string().as_str() && t["state"] == "draining");
    assert!(draining, "a drains: {status}");
    let got = stream.await.unwrap();
    assert_eq!(got.status, 200);
    assert_eq!(got.text(), "drop\n".repeat(10), "the stream finished whole");
    // New requests go to b.
    let got = H1::connect(listen).await.get("/after").await;
    assert_eq!(got.headers["x-target"], b.to_string().as_str());
}
