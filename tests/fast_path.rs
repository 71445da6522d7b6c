//! The HTTP/1 fast path on the wire: what targets get, how each kind of
//! response body reaches the client, stale pooled connections, and the hand
//! over to hyper in the middle of a connection. Also the fast path's target
//! side under hyper's server (`proxy::raw`): body-less HTTP/2 requests, and
//! HTTP/1 requests hyper serves (a sticky group), on the same raw sockets.

mod common;

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::Full;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How a scripted target answers request `n` (0-based, health checks aside)
/// of one of its connections: bytes to write and whether to close after;
/// `None` closes the connection without an answer.
type Script = fn(usize, &str) -> Option<(Vec<u8>, bool)>;

/// A target that speaks raw HTTP/1.1 by `script` and records every request
/// head it reads (with `[body N sum S]` after it for a Content-Length body).
async fn scripted_target(script: Script) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let heads: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = socket.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut n = 0;
                loop {
                    let end = loop {
                        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break end + 4;
                        }
                        let mut chunk = [0u8; 4096];
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(k) => buf.extend_from_slice(&chunk[..k]),
                        }
                    };
                    let mut head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    buf.drain(..end);
                    // A declared body is read and noted after the head.
                    let declared = head.lines().find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse::<usize>().ok())?
                    });
                    if let Some(len) = declared {
                        while buf.len() < len {
                            let mut chunk = [0u8; 65536];
                            match stream.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(k) => buf.extend_from_slice(&chunk[..k]),
                            }
                        }
                        let body: Vec<u8> = buf.drain(..len).collect();
                        let sum: u64 = body.iter().map(|&b| b as u64).sum();
                        head.push_str(&format!("[body {len} sum {sum}]"));
                    }
                    if head.starts_with("GET /health ") {
                        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if stream.write_all(ok).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    seen.lock().unwrap().push(head.clone());
                    let Some((answer, close)) = script(n, &head) else {
                        return;
                    };
                    n += 1;
                    if stream.write_all(&answer).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    (addr, heads)
}

async fn start_lb(target: SocketAddr) -> (Edgelb, SocketAddr) {
    let listen = listen_addr();
    let config = one_group_config(
        listen,
        &[(target, 1)],
        "[target_groups.health_check]\ninterval = \"60s\"\npath = \"/health\"\n",
    );
    (Edgelb::start(&config).await, listen)
}

fn get_req(path: &str) -> Request<Full<Bytes>> {
    Request::get(path)
        .header("host", "test.local")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_response_body_reaches_the_client_on_one_connection() {
    let (target, _) = scripted_target(|_, head| {
        let path = head.split(' ').nth(1).unwrap_or("");
        let answer: &[u8] = match path {
            "/chunked" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nx-trailer: t\r\n\r\n",
            "/hints" => b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nafter",
            "/head" => b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n",
            "/until-close" => return Some((b"HTTP/1.1 200 OK\r\nx-kind: eof\r\n\r\nuntil the end".to_vec(), true)),
            _ => b"HTTP/1.1 404 Not Found\r\ncontent-length: 4\r\n\r\nnope",
        };
        Some((answer.to_vec(), false))
    })
    .await;
    let (_lb, listen) = start_lb(target).await;
    let mut h1 = H1::connect(listen).await;
    for round in 0..2 {
        let got = h1.get("/chunked").await;
        assert_eq!(
            (got.status.as_u16(), got.text().as_str()),
            (200, "hello world"),
            "round {round}"
        );
        let got = h1.get("/until-close").await;
        assert_eq!(got.text(), "until the end");
        assert_eq!(got.headers["x-kind"], "eof");
        assert_eq!(got.headers["transfer-encoding"], "chunked");
        let got = h1.get("/hints").await;
        assert_eq!((got.status.as_u16(), got.text().as_str()), (200, "after"));
        let head = Request::head("/head")
            .header("host", "test.local")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let got = h1.send(head).await.unwrap();
        assert_eq!((got.status.as_u16(), got.body.len()), (200, 0));
        assert_eq!(got.headers["content-length"], "1000");
        let got = h1.get("/missing").await;
        assert_eq!((got.status.as_u16(), got.text().as_str()), (404, "nope"));
        assert!(got.headers.contains_key("date"), "a date is added");
    }
}

/// A target answering by path with each kind of body framing.
async fn target_of_every_body_kind() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    scripted_target(|_, head| {
        let path = head.split(' ').nth(1).unwrap_or("");
        let answer: Vec<u8> = match path {
            "/chunked" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nx-trailer: t\r\n\r\n".to_vec(),
            "/hints" => b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nafter".to_vec(),
            "/head" => b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n".to_vec(),
            "/empty" => b"HTTP/1.1 204 No Content\r\nx-kind: none\r\n\r\n".to_vec(),
            "/reason" => b"HTTP/1.1 299 Fine Thanks\r\ncontent-length: 2\r\n\r\nok".to_vec(),
            "/large" => {
                let mut a = b"HTTP/1.1 200 OK\r\ncontent-length: 300000\r\n\r\n".to_vec();
                a.extend((0..300_000u32).map(|i| (i % 251) as u8));
                a
            }
            "/until-close" => return Some((b"HTTP/1.1 200 OK\r\nx-kind: eof\r\n\r\nuntil the end".to_vec(), true)),
            _ => b"HTTP/1.1 404 Not Found\r\ncontent-length: 4\r\n\r\nnope".to_vec(),
        };
        Some((answer, false))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_get_every_kind_of_target_body_through_raw_sockets() {
    let (target, heads) = target_of_every_body_kind().await;
    let (lb, listen) = start_lb(target).await;
    let mut h2 = H2::connect(listen).await;
    for round in 0..2 {
        let got = h2.get("/chunked").await;
        assert_eq!(
            (got.status.as_u16(), got.text().as_str()),
            (200, "hello world"),
            "round {round}"
        );
        assert!(!got.headers.contains_key("transfer-encoding"));
        let got = h2.get("/until-close").await;
        assert_eq!(got.text(), "until the end");
        assert_eq!(got.headers["x-kind"], "eof");
        let got = h2.get("/hints").await;
        assert_eq!((got.status.as_u16(), got.text().as_str()), (200, "after"));
        let uri = format!("http://test.local:{}/head", listen.port());
        let head = Request::head(uri).body(Full::new(Bytes::new())).unwrap();
        let got = h2.send(head).await.unwrap();
        assert_eq!((got.status.as_u16(), got.body.len()), (200, 0));
        assert_eq!(got.headers["content-length"], "1000");
        let got = h2.get("/empty").await;
        assert_eq!((got.status.as_u16(), got.body.len()), (204, 0));
        assert_eq!(got.headers["x-kind"], "none");
        let got = h2.get("/large").await;
        assert_eq!(got.body.len(), 300_000);
        assert!(
            got.body
                .iter()
                .enumerate()
                .all(|(i, &b)| b == (i % 251) as u8),
            "the large body arrived intact"
        );
        let got = h2.get("/missing").await;
        assert_eq!((got.status.as_u16(), got.text().as_str()), (404, "nope"));
    }
    // Streams at once share the pooled sockets without mixing answers up.
    let mut streams = tokio::task::JoinSet::new();
    for i in 0..20 {
        let mut h2 = h2.clone();
        streams.spawn(async move {
            let path = if i % 2 == 0 { "/chunked" } else { "/large" };
            (i, h2.get(path).await.body.len())
        });
    }
    while let Some(done) = streams.join_next().await {
        let (i, len) = done.unwrap();
        assert_eq!(len, if i % 2 == 0 { 11 } else { 300_000 }, "stream {i}");
    }
    let head = heads.lock().unwrap()[0].clone();
    assert!(head.starts_with("GET /chunked HTTP/1.1\r\n"), "{head}");
    assert!(head.contains("\r\nhost: test.local:"), "{head}");
    assert!(
        head.contains("\r\nx-forwarded-for: 127.0.0.1\r\n"),
        "{head}"
    );
    assert_eq!(
        lb.metric("edgelb_target_response_errors_total{target_group=\"web\"}")
            .await,
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sticky_group_served_by_hyper_gets_the_same_bodies_and_its_reason_phrase() {
    let (target, _) = target_of_every_body_kind().await;
    let listen = listen_addr();
    let config = one_group_config(
        listen,
        &[(target, 1)],
        "stickiness = { type = \"lb_cookie\", duration = \"1h\" }\n[target_groups.health_check]\ninterval = \"60s\"\npath = \"/health\"\n",
    );
    let _lb = Edgelb::start(&config).await;
    let mut h1 = H1::connect(listen).await;
    let got = h1.get("/chunked").await;
    assert_eq!(got.text(), "hello world");
    assert!(got.headers.contains_key("set-cookie"), "sticky: {got:?}");
    let got = h1.get("/until-close").await;
    assert_eq!(got.text(), "until the end");
    let answer = raw_exchange(
        listen,
        b"GET /reason HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 299 Fine Thanks\r\n"),
        "{answer}"
    );
    assert!(answer.ends_with("\r\n\r\nok"), "{answer}");
}

/// A target whose connections answer one request each; the next request on one
/// is read and the connection closed without an answer (a keep-alive race).
async fn one_answer_per_connection() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    scripted_target(|n, _| {
        (n == 0).then(|| {
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec(),
                false,
            )
        })
    })
    .await
}

/// Checks GET `i` of a stale-socket test got the target's "ok".
fn answered_ok(got: &Got, i: u32) {
    assert_eq!(
        (got.status.as_u16(), got.text().as_str()),
        (200, "ok"),
        "GET {i}"
    );
}

/// The 5xx answers the load balancer itself gave on listener `front`.
async fn lb_5xx(lb: &Edgelb) -> f64 {
    lb.metric("edgelb_http_responses_total{class=\"5xx\",listener=\"front\",source=\"lb\",target_group=\"web\"}")
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_get_on_a_pooled_socket_the_target_dropped_goes_again() {
    let (target, heads) = one_answer_per_connection().await;
    let (lb, listen) = start_lb(target).await;
    let mut h2 = H2::connect(listen).await;
    for i in 0..5 {
        answered_ok(&h2.get(&format!("/get/{i}")).await, i);
    }
    let uri = format!("http://test.local:{}/post", listen.port());
    let post = Request::post(uri).body(Full::new(Bytes::new())).unwrap();
    let got = h2.send(post).await.unwrap();
    assert_eq!(got.status.as_u16(), 502, "a POST is not sent twice");
    let heads = heads.lock().unwrap().clone();
    let post = heads.iter().find(|h| h.starts_with("POST /post ")).unwrap();
    assert!(post.contains("\r\ncontent-length: 0\r\n"), "{post}");
    assert_eq!(lb_5xx(&lb).await, 1.0);
}

/// edgelb in front of a target whose chunked body breaks off after 5 bytes.
async fn behind_a_broken_chunked_body() -> (Edgelb, SocketAddr) {
    let (target, _) = scripted_target(|_, _| {
        Some((
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX".to_vec(),
            false,
        ))
    })
    .await;
    start_lb(target).await
}

/// Waits until `lb` counted a broken response against group `web`.
async fn wait_for_target_error(lb: &Edgelb) {
    wait_for(
        Duration::from_secs(5),
        "the error to be counted",
        || async {
            lb.metric("edgelb_target_response_errors_total{target_group=\"web\"}")
                .await
                >= 1.0
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_chunked_body_resets_the_http2_stream_and_counts_against_the_target() {
    let (lb, listen) = behind_a_broken_chunked_body().await;
    let mut h2 = H2::connect(listen).await;
    let uri = format!("http://test.local:{}/", listen.port());
    let got = h2
        .send(Request::get(uri).body(Full::new(Bytes::new())).unwrap())
        .await;
    assert!(got.is_err(), "the body must not look complete: {got:?}");
    wait_for_target_error(&lb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_target_gets_the_head_rewritten_and_the_rest_as_sent() {
    let (target, heads) = scripted_target(|_, _| {
        Some((b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Secret\r\nX-Secret: s\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\nok".to_vec(), false))
    })
    .await;
    let (_lb, listen) = start_lb(target).await;
    let mut client = TcpStream::connect(listen).await.unwrap();
    client
        .write_all(b"GET /p?q=1 HTTP/1.1\r\nHost: app.example\r\nX-Custom-Case: V\r\nConnection: keep-alive\r\nKeep-Alive: 300\r\nTE: trailers\r\nX-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Port: 1\r\n\r\n")
        .await
        .unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), client.read(&mut answer))
        .await
        .expect("an answer")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with("\r\n\r\nok"), "{answer}");
    let lower = answer.to_ascii_lowercase();
    for hop in ["x-secret", "keep-alive", "connection:"] {
        assert!(!lower.contains(hop), "{hop} reached the client: {answer}");
    }
    let head = heads.lock().unwrap()[0].clone();
    assert!(head.starts_with("GET /p?q=1 HTTP/1.1\r\n"), "{head}");
    assert!(
        head.contains(&common::seen_line("Host", "app.example")),
        "{head}"
    );
    assert!(
        head.contains(&common::seen_line("X-Custom-Case", "V")),
        "{head}"
    );
    assert!(
        head.contains("\r\nx-forwarded-for: 203.0.113.9, 127.0.0.1\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\nx-forwarded-proto: http\r\n"), "{head}");
    assert!(
        head.contains(&format!("\r\nx-forwarded-port: {}\r\n", listen.port())),
        "{head}"
    );
    assert!(head.contains("\r\nx-request-id: "), "{head}");
    let lower = head.to_ascii_lowercase();
    for hop in [
        "keep-alive",
        "\r\nte:",
        "connection:",
        ": https",
        "port: 1\r\n",
    ] {
        assert!(!lower.contains(hop), "{hop:?} reached the target: {head}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_connection_the_target_dropped_costs_a_get_nothing_and_a_post_its_answer() {
    let (target, heads) = one_answer_per_connection().await;
    let (lb, listen) = start_lb(target).await;
    let mut h1 = H1::connect(listen).await;
    for i in 0..5 {
        answered_ok(&h1.get(&format!("/get/{i}")).await, i);
    }
    let post = Request::post("/post")
        .header("host", "test.local")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let got = h1.send(post).await.unwrap();
    assert_eq!(got.status.as_u16(), 502, "a POST is not sent twice");
    let gets = heads
        .lock()
        .unwrap()
        .iter()
        .filter(|h| h.starts_with("GET /get/"))
        .count();
    assert!(gets >= 5, "the GETs went again: {gets}");
    assert_eq!(lb_5xx(&lb).await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_the_fast_path_does_not_serve_go_to_hyper_mid_connection() {
    let web = TestTarget::start("web").await;
    let (_lb, listen) = start_lb(web.addr).await;
    // Pipelined: a fast-path GET, a POST with a body (hyper's), then a GET.
    let answer = raw_exchange(
        listen,
        b"GET /one HTTP/1.1\r\nHost: x\r\n\r\nPOST /two HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /three HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(answer.matches("HTTP/1.1 200 OK").count(), 3, "{answer}");
    let seen = web.seen.lock().unwrap().clone();
    let got: Vec<(String, String, u64)> = seen
        .iter()
        .map(|s| (s.method.clone(), s.uri.clone(), s.body_len))
        .collect();
    assert_eq!(
        got,
        [
            ("GET".into(), "/one".into(), 0),
            ("POST".into(), "/two".into(), 5),
            ("GET".into(), "/three".into(), 0)
        ]
    );
    // A head hyper refuses still gets its 400 after fast-path requests.
    let answer = raw_exchange(
        listen,
        b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\nGET /bad HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.contains("HTTP/1.1 400 Bad Request"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_chunked_body_cuts_the_client_off_and_counts_against_the_target() {
    let (lb, listen) = behind_a_broken_chunked_body().await;
    let got = H1::connect(listen).await.send(get_req("/")).await;
    assert!(got.is_err(), "the body must not look complete: {got:?}");
    wait_for_target_error(&lb).await;
}

fn log_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_lines_from_the_fast_path() {
    let (target, heads) = scripted_target(|_, _| {
        Some((
            b"HTTP/1.1 201 Created\r\ncontent-length: 3\r\n\r\nnew".to_vec(),
            false,
        ))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let (listen, dead_listen) = (listen_addr(), listen_addr());
    let config = one_group_config(
        listen,
        &[(target, 1)],
        "[target_groups.health_check]\ninterval = \"60s\"\npath = \"/health\"\n",
    )
    .replace(
        "[global]\n",
        &format!("[global]\naccess_log = \"{}\"\n", log.display()),
    ) + &format!(
        "\n[[listeners]]\nname = \"dead\"\nprotocol = \"http\"\nbind = \"{dead_listen}\"\ndefault_action = {{ forward = \"gone\" }}\n\n[[target_groups]]\nname = \"gone\"\nprotocol = \"http\"\ntargets = [ {{ address = \"{}\" }} ]\n[target_groups.health_check]\ninterval = \"60s\"\n",
        dead_addr()
    );
    let _lb = Edgelb::start(&config).await;
    let answer = raw_exchange(
        listen,
        b"GET /made?by=fast HTTP/1.1\r\nHost: Shop.Example:8080\r\nUser-Agent: ua/1\r\nX-Case: kept\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 201 Created"), "{answer}");
    let answer = raw_exchange(
        dead_listen,
        b"GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 502 Bad Gateway"), "{answer}");
    wait_for(Duration::from_secs(5), "two access log lines", || async {
        log_lines(&log).len() >= 2
    })
    .await;
    let lines = log_lines(&log);
    let ok = lines.iter().find(|l| l["listener"] == "front").unwrap();
    // The stack of this run served it (the fast path keeps the client's case).
    let head = heads.lock().unwrap()[0].clone();
    assert!(
        head.contains(&common::seen_line("X-Case", "kept")),
        "{head}"
    );
    let id = ok["request_id"].as_str().expect("a request id");
    assert!(
        head.contains(&format!("\r\nx-request-id: {id}\r\n")),
        "{id} / {head}"
    );
    assert_eq!(
        (&ok["method"], &ok["host"], &ok["path"], &ok["query"]),
        (
            &"GET".into(),
            &"Shop.Example:8080".into(),
            &"/made".into(),
            &"by=fast".into()
        )
    );
    assert_eq!(
        (&ok["protocol"], &ok["user_agent"]),
        (&"HTTP/1.1".into(), &"ua/1".into())
    );
    assert_eq!(
        (&ok["elb_status_code"], &ok["target_status_code"]),
        (&201.into(), &201.into())
    );
    assert_eq!(
        (&ok["sent_bytes"], &ok["action"]),
        (&3.into(), &"forward".into())
    );
    let failed = lines.iter().find(|l| l["listener"] == "dead").unwrap();
    assert_eq!(failed["elb_status_code"], 502);
    assert_eq!(failed["error_reason"], "connect_failed");
    assert!(
        failed.get("target_status_code").is_none_or(|v| v.is_null()),
        "{failed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_clients_speaking_http1_take_the_fast_path_and_may_leave_it() {
    let (target, heads) = scripted_target(|_, head| {
        let path = head.split(' ').nth(1).unwrap_or("");
        let body = format!("answer {path}");
        Some((
            format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes(),
            false,
        ))
    })
    .await;
    let ca = common::tls::TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let cert = ca.issue(dir.path(), "site", &["site.example.com"]);
    let listen = listen_addr();
    let config = one_group_config(
        listen,
        &[(target, 1)],
        "[target_groups.health_check]\ninterval = \"60s\"\npath = \"/health\"\n",
    )
    .replace(
        "protocol = \"http\"\nbind",
        &format!(
            "protocol = \"https\"\ncertificates = [ {{ cert = \"{}\", key = \"{}\" }} ]\nbind",
            cert.cert_path.display(),
            cert.key_path.display()
        ),
    );
    let lb = Edgelb::start(&config).await;
    let client = ca.client_config(&[&rustls::version::TLS13], &[b"http/1.1"]);
    let mut tls = common::tls::tls_connect(client, listen, "site.example.com")
        .await
        .unwrap();
    let mut answers = String::new();
    for (i, request) in [
        "GET /one HTTP/1.1\r\nHost: site.example.com\r\nX-Case: Kept\r\n\r\n",
        "GET /two HTTP/1.1\r\nHost: site.example.com\r\n\r\n",
        // An absolute-form target is hyper's: the connection moves there.
        "GET https://site.example.com/three HTTP/1.1\r\nHost: site.example.com\r\nConnection: close\r\n\r\n",
    ]
    .iter()
    .enumerate()
    {
        tls.write_all(request.as_bytes()).await.unwrap();
        let want = format!("answer /{}", ["one", "two", "three"][i]);
        let read = async {
            let mut buf = [0u8; 4096];
            while !answers.ends_with(&want) {
                let n = tls.read(&mut buf).await.unwrap();
                assert!(n > 0, "closed early: {answers}\n{}", lb.log());
                answers.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        };
        tokio::time::timeout(Duration::from_secs(5), read)
            .await
            .unwrap_or_else(|_| panic!("no answer {i}: {answers}"));
    }
    assert_eq!(answers.matches("HTTP/1.1 200 OK").count(), 3, "{answers}");
    let heads = heads.lock().unwrap().clone();
    assert!(
        heads[0].contains(&common::seen_line("X-Case", "Kept")),
        "the fast path served it: {}",
        heads[0]
    );
    assert!(
        heads[0].contains("\r\nx-forwarded-proto: https\r\n"),
        "{}",
        heads[0]
    );
    assert!(
        heads[2].starts_with("GET /three HTTP/1.1\r\n"),
        "{}",
        heads[2]
    );
    assert!(
        heads[2]
            .to_ascii_lowercase()
            .contains("x-forwarded-proto: https"),
        "{}",
        heads[2]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_of_a_declared_length_stream_through_on_a_kept_connection() {
    let (target, heads) = scripted_target(|_, head| {
        let note = head
            .rsplit_once('[')
            .map_or("none", |(_, n)| n.trim_end_matches(']'))
            .to_owned();
        Some((
            format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{note}",
                note.len()
            )
            .into_bytes(),
            false,
        ))
    })
    .await;
    let (_lb, listen) = start_lb(target).await;
    let mut client = TcpStream::connect(listen).await.unwrap();
    // Larger than every buffer on the way: the body is pumped in pieces.
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let sum: u64 = body.iter().map(|&b| b as u64).sum();
    let mut request = format!(
        "PUT /upload HTTP/1.1\r\nHost: x\r\nX-Case: Kept\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    // A second request pipelined right behind the body.
    request.extend_from_slice(
        b"POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    );
    let (mut read_half, mut write_half) = client.split();
    let (_, answer) = tokio::join!(
        async { write_half.write_all(&request).await.unwrap() },
        async {
            let mut out = Vec::new();
            tokio::time::timeout(Duration::from_secs(10), read_half.read_to_end(&mut out))
                .await
                .expect("both answers")
                .unwrap();
            String::from_utf8_lossy(&out).into_owned()
        }
    );
    assert!(
        answer.contains(&format!("body 300000 sum {sum}")),
        "{answer}"
    );
    assert!(answer.contains("body 5 sum 532"), "{answer}");
    let heads = heads.lock().unwrap().clone();
    assert!(
        heads[0].contains(&common::seen_line("X-Case", "Kept")),
        "the fast path served it: {}",
        heads[0]
    );
}

/// A target that reads each request and closes its connection without an
/// answer: it died with the request in it, on a connection just opened.
async fn dies_with_every_request() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    scripted_target(|_, _| None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_dying_with_a_get_on_a_new_connection_costs_it_nothing_and_a_post_its_answer() {
    let (dying, heads) = dies_with_every_request().await;
    let good = TestTarget::start("good").await;
    let listen = listen_addr();
    // Passive failures must not take the dying target out during the test:
    // every request has to meet it in turn.
    let config = one_group_config(
        listen,
        &[(dying, 1), (good.addr, 1)],
        "[target_groups.health_check]\ninterval = \"60s\"\npath = \"/health\"\nunhealthy_threshold = 10\n",
    );
    let lb = Edgelb::start(&config).await;
    let mut h1 = H1::connect(listen).await;
    let mut h2 = H2::connect(listen).await;
    for i in 0..4 {
        let got = h1.get(&format!("/get/h1/{i}")).await;
        assert_eq!(got.status.as_u16(), 200, "HTTP/1.1 GET {i}");
    }
    for i in 0..4 {
        let got = h2.get(&format!("/get/h2/{i}")).await;
        assert_eq!(got.status.as_u16(), 200, "HTTP/2 GET {i}");
    }
    let met = |prefix: &str| {
        heads
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.starts_with(prefix))
            .count()
    };
    assert!(
        met("GET /get/h1/") > 0,
        "no HTTP/1.1 GET met the dying target"
    );
    assert!(
        met("GET /get/h2/") > 0,
        "no HTTP/2 GET met the dying target"
    );
    assert_eq!(lb_5xx(&lb).await, 0.0);
    // A POST may have been done: it is not sent twice. Every POST the dying
    // target read is one 502, every other one reached the good target.
    let mut refused = 0;
    for i in 0..4 {
        let post = Request::post(format!("/post/{i}"))
            .header("host", "test.local")
            .body(Full::new(Bytes::new()))
            .unwrap();
        match h1.send(post).await {
            // The POST was read to its end: the connection stays open.
            Ok(got) if got.status.as_u16() == 502 => refused += 1,
            Ok(got) => assert_eq!(got.status.as_u16(), 200, "POST {i}"),
            Err(e) => panic!("POST {i}: {e}"),
        }
    }
    assert!(refused > 0, "no POST met the dying target");
    assert_eq!(met("POST /post/"), refused);
    assert_eq!(lb_5xx(&lb).await, refused as f64);
}
