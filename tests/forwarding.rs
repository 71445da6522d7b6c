//! HTTP forwarding through the real binary: balancing, headers, errors, retries,
//! HTTP/2, streaming, timeouts.

mod common;

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smooth_weighted_round_robin_exact_sequence_and_counts() {
    let a = TestTarget::start("a").await;
    let b = TestTarget::start("b").await;
    let c = TestTarget::start("c").await;
    let listen = listen_addr();
    let _lb = Edgelb::start(&one_group_config(
        listen,
        &[(a.addr, 5), (b.addr, 1), (c.addr, 1)],
        "",
    ))
    .await;
    let mut client = H1::connect(listen).await;
    let mut seq = String::new();
    for _ in 0..70 {
        seq.push_str(&client.get("/").await.text());
    }
    assert_eq!(seq, "aabacaa".repeat(10));
    assert_eq!((a.requests(), b.requests(), c.requests()), (50, 10, 10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weight_zero_target_gets_no_traffic() {
    let a = TestTarget::start("a").await;
    let z = TestTarget::start("z").await;
    let listen = listen_addr();
    let _lb = Edgelb::start(&one_group_config(listen, &[(a.addr, 1), (z.addr, 0)], "")).await;
    let mut client = H1::connect(listen).await;
    for _ in 0..10 {
        assert_eq!(client.get("/").await.text(), "a");
    }
    assert_eq!(z.requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_and_hop_by_hop() {
    let t = TestTarget::start("t").await;
    let listen = listen_addr();
    let _lb = Edgelb::start(&one_group_config(listen, &[(t.addr, 1)], "")).await;
    let mut client = H1::connect(listen).await;
    let req = Request::get("/path/x?q=1")
        .header("host", "app.example")
        .header("x-forwarded-for", "203.0.113.9")
        .header("connection", "keep-alive, x-private")
        .header("x-private", "secret")
        .header("keep-alive", "timeout=5")
        .header("te", "trailers")
        .header("x-custom", "kept")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let got = client.send(req).await.unwrap();
    assert_eq!(got.status, StatusCode::OK);
    let seen = t.last();
    assert_eq!(seen.uri, "/path/x?q=1");
    assert_eq!(seen.version, http::Version::HTTP_11);
    let h = &seen.headers;
    assert_eq!(h["host"], "app.example");
    assert_eq!(h["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-port"], listen.port().to_string().as_str());
    assert_eq!(h["x-custom"], "kept");
    let id = h["x-request-id"].to_str().unwrap();
    assert_eq!(id.len(), 32);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    for gone in ["x-private", "keep-alive", "te"] {
        assert!(!h.contains_key(gone), "{gone} must not reach the target");
    }
    // A client's own request id is kept; ids differ between requests otherwise.
    let req = Request::get("/")
        .header("host", "a")
        .header("x-request-id", "client-id-1")
        .body(Full::new(Bytes::new()))
        .unwrap();
    client.send(req).await.unwrap();
    assert_eq!(t.last().headers["x-request-id"], "client-id-1");
    client.get("/").await;
    assert_ne!(t.last().headers["x-request-id"].to_str().unwrap(), id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_connections_are_pooled() {
    let t = TestTarget::start("t").await;
    let listen = listen_addr();
    let _lb = Edgelb::start(&one_group_config(listen, &[(t.addr, 1)], "")).await;
    for _ in 0..20 {
        // A new client connection each time: only the target side is pooled.
        assert_eq!(get(listen, "/").await.text(), "t");
    }
    assert_eq!(t.requests(), 20);
    assert!(
        t.connections.load(std::sync::atomic::Ordering::SeqCst) <= 2,
        "target connections were not reused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_target_from_the_start_costs_no_request() {
    let t = TestTarget::start("alive").await;
    let listen = listen_addr();
    let lb = Edgelb::start(&one_group_config(
        listen,
        &[(dead_addr(), 1), (t.addr, 1)],
        "",
    ))
    .await;
    let mut client = H1::connect(listen).await;
    for _ in 0..10 {
        let got = client.get("/").await;
        assert_eq!((got.status, got.text().as_str()), (StatusCode::OK, "alive"));
    }
    assert_eq!(t.requests(), 10);
    drop(lb);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connection_is_retried_on_another_target() {
    let alive = TestTarget::start("alive").await;
    let doomed = TestTarget::start("doomed").await;
    let listen = listen_addr();
    let lb = Edgelb::start(&one_group_config(
        listen,
        &[(doomed.addr, 1), (alive.addr, 1)],
        "",
    ))
    .await;
    wait_for(Duration::from_secs(5), "both targets healthy", || async {
        lb.metric("edgelb_healthy_targets{target_group=\"web\"}")
            .await
            == 2.0
    })
    .await;
    let mut client = H1::connect(listen).await;
    for _ in 0..4 {
        client.get("/").await;
    }
    assert!(
        doomed.requests() > 0,
        "the doomed target served before it died"
    );
    // Killed: its pooled connections are cut, its port refuses.
    doomed.stop().await;
    for _ in 0..20 {
        let got = client.get("/").await;
        assert_eq!((got.status, got.text().as_str()), (StatusCode::OK, "alive"));
    }
    let status = lb.status_json().await;
    assert_eq!(
        status["target_groups"][0]["targets"][0]["state"],
        "unhealthy"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_targets_refusing_gives_502() {
    let listen = listen_addr();
    let lb = Edgelb::start(&one_group_config(
        listen,
        &[(dead_addr(), 1), (dead_addr(), 1)],
        "",
    ))
    .await;
    let got = get(listen, "/").await;
    assert_eq!(got.status, StatusCode::BAD_GATEWAY);
    let series = "edgelb_http_responses_total{class=\"5xx\",listener=\"front\",source=\"lb\",target_group=\"web\"}";
    assert_eq!(lb.metric(series).await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_without_targets_gives_503() {
    let listen = listen_addr();
    let _lb = Edgelb::start(&one_group_config(listen, &[], "")).await;
    assert_eq!(
        get(listen, "/").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_target_gives_504_after_request_timeout() {
    let slow = TestTarget::start_with(
        "slow",
        Behaviour {
            delay: Some(Duration::from_secs(5)),
            ..Default::default()
        },
    )
    .await;
    let listen = listen_addr();
    let _lb = Edgelb::start(&one_group_config(
        listen,
        &[(slow.addr, 1)],
        "request_timeout = \"300ms\"",
    ))
    .await;
    let started = std::time::Instant::now();
    let got = get(listen, "/").await;
    assert_eq!(got.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "504 came only after {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_timeout_gives_502() {
    // A listening socket whose backlog is full never completes new handshakes.
    let blackhole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = blackhole.local_addr().unwrap();
    let socket = socket2::Socket::from(blackhole);
    socket.listen(0).unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        if let Ok(s) =
            tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await
        {
            fillers.push(s);
        }
    }
    let listen = listen_addr();
    let _lb = Edgelb::start(&one_group_config(
        listen,
        &[(addr, 1)],
        "connect_timeout = \"200ms\"",
    ))
    .await;
    let started = std::time::Instant::now();
    let got = get(listen, "/").await;
    assert_eq!(got.status, StatusCode::BAD_GATEWAY);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "502 came only after {:?}",
        started.elapsed()
    );
    drop(socket);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_prior_knowledge_is_forwarded_as_http11() {
    let t = TestTarget::start("t").await;
    let listen = listen_addr();
    let _lb = Edgelb::start(&one_group_config(listen, &[(t.addr, 1)], "")).await;
    let mut client = H2::connect(listen).await;
    for _ in 0..3 {
        let got = client.get("/h2?x=1").await;
        assert_eq!(got.version, http::Version::HTTP_2);
        assert_eq!((got.status, got.text().as_str()), (StatusCode::OK, "t"));
    }
    let seen = t.last();
    assert_eq!(seen.version, http::Version::HTTP_11);
    assert_eq!(seen.uri, "/h2?x=1");
    assert_eq!(
        seen.headers["host"],
        format!("test.local:{}", listen.port()).as_str()
    );
}

/// Many streams in flight on one HTTP/2 connection, small and large answers
/// mixed with uploads: every byte reaches its own stream, however edgelb
/// batches its writes to the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_http2_streams_each_get_their_own_answer() {
    const BIG: usize = 300_000;
    let small = TestTarget::start("small").await;
    let big = TestTarget::start_with(
        "big",
        Behaviour {
            body_bytes: Some(BIG as u64),
            ..Default::default()
        },
    )
    .await;
    let listen = listen_addr();
    let _lb = Edgelb::start(&one_group_config(
        listen,
        &[(small.addr, 1), (big.addr, 1)],
        "",
    ))
    .await;
    let client = H2::connect(listen).await;
    let mut streams = tokio::task::JoinSet::new();
    for i in 0..60usize {
        let mut client = client.clone();
        streams.spawn(async move {
            let upload = if i % 3 == 0 { 100_000 + i } else { 0 };
            let req = Request::builder()
                .method(if upload > 0 { "POST" } else { "GET" })
                .uri(format!("http://test.local:{}/s/{i}", listen.port()))
                .body(Full::new(Bytes::from(vec![b'u'; upload])))
                .unwrap();
            (upload, client.send(req).await.unwrap())
        });
    }
    let (mut smalls, mut bigs) = (0, 0);
    let all = async {
        while let Some(done) = streams.join_next().await {
            let (upload, got) = done.unwrap();
            assert_eq!(got.status, StatusCode::OK);
            if got.body.len() == BIG {
                assert!(got.body.iter().all(|&b| b == b'x'));
                bigs += 1;
            } else if upload > 0 {
                assert_eq!(got.text(), format!("small {upload}"));
                smalls += 1;
            } else {
                assert_eq!(got.text(), "small");
                smalls += 1;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), all)
        .await
        .expect("60 streams answered within 30 s");
    assert_eq!((smalls, bigs), (30, 30));
    assert_eq!(small.requests() + big.requests(), 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_both_ways_without_buffering() {
    const UP: u64 = 256 << 20;
    const DOWN: u64 = 64 << 20;
    let sink = TestTarget::start("sink").await;
    let source = TestTarget::start_with(
        "source",
        Behaviour {
            body_bytes: Some(DOWN),
            ..Default::default()
        },
    )
    .await;
    let (l1, l2) = (listen_addr(), listen_addr());
    let config = one_group_config(l1, &[(sink.addr, 1)], "")
        + &format!(
            "\n[[listeners]]\nname = \"down\"\nprotocol = \"http\"\nbind = \"{l2}\"\ndefault_action = {{ forward = \"src\" }}\n\n[[target_groups]]\nname = \"src\"\nprotocol = \"http\"\ntargets = [ {{ address = \"{}\" }} ]\n",
            source.addr
        );
    let lb = Edgelb::start(&config).await;
    let before = peak_rss_kib(lb.pid());

    // Upload: 256 MiB in 64 KiB chunks, produced as they are sent.
    let chunks = futures_stream(UP / 65536);
    let req = Request::post("/upload")
        .header("host", "x")
        .body(StreamBody::new(chunks))
        .unwrap();
    let stream = TcpStream::connect(l1).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let resp = sender.send_request(req).await.unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, format!("sink {UP}").as_bytes());
    assert_eq!(sink.last().body_len, UP);

    // Download: 64 MiB.
    let got = get(l2, "/download").await;
    assert_eq!(got.body.len() as u64, DOWN);

    let growth_mib = (peak_rss_kib(lb.pid()).saturating_sub(before)) / 1024;
    assert!(
        growth_mib < 48,
        "edgelb's peak memory grew by {growth_mib} MiB while streaming"
    );
}

/// A stream of `n` 64 KiB frames.
fn futures_stream(
    n: u64,
) -> impl futures_core::Stream<Item = Result<Frame<Bytes>, std::io::Error>> + Send {
    let chunk = Bytes::from(vec![b'u'; 65536]);
    tokio_stream_iter((0..n).map(move |_| Ok(Frame::data(chunk.clone()))))
}

fn tokio_stream_iter<I: Iterator + Send + Unpin>(
    iter: I,
) -> impl futures_core::Stream<Item = I::Item> + Send {
    struct Iter<I>(I);
    impl<I: Iterator + Unpin> futures_core::Stream for Iter<I> {
        type Item = I::Item;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<I::Item>> {
            std::task::Poll::Ready(self.0.next())
        }
    }
    Iter(iter)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_request_head_gets_408() {
    let t = TestTarget::start("t").await;
    let listen = listen_addr();
    let mut config = one_group_config(listen, &[(t.addr, 1)], "");
    config = config.replace(
        "default_action",
        "header_read_timeout = \"300ms\"\ndefault_action",
    );
    let _lb = Edgelb::start(&config).await;
    // Part of a head, then nothing.
    let line = raw_status_line(listen, b"GET / HTTP/1.1\r\nHost: x\r\n").await;
    assert!(line.starts_with("HTTP/1.1 408 "), "got {line:?}");
    assert_eq!(t.requests(), 0);
    // The process goes on serving.
    assert_eq!(get(listen, "/").await.text(), "t");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_head_gets_431() {
    let t = TestTarget::start("t").await;
    let listen = listen_addr();
    let mut config = one_group_config(listen, &[(t.addr, 1)], "");
    config = config.replace("default_action", "max_header_bytes = 8192\ndefault_action");
    let _lb = Edgelb::start(&config).await;
    let big = "a".repeat(10_000);
    let line = raw_status_line(
        listen,
        format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(line.starts_with("HTTP/1.1 431 "), "got {line:?}");
    assert_eq!(t.requests(), 0);
    assert_eq!(get(listen, "/").await.text(), "t");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connection_is_closed_after_idle_timeout() {
    let t = TestTarget::start("t").await;
    let listen = listen_addr();
    let config = one_group_config(listen, &[(t.addr, 1)], "")
        .replace("default_action", "idle_timeout = \"1s\"\ndefault_action");
    let _lb = Edgelb::start(&config).await;
    let mut s = TcpStream::connect(listen).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("idle connection was closed")
        .unwrap();
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200 "));
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_style_upgrade_works_end_to_end() {
    // A target that accepts an Upgrade and then echoes raw bytes (and answers
    // edgelb's health checks on other connections).
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = socket.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = socket.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = s.read(&mut buf).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    head.extend_from_slice(&buf[..n]);
                }
                let head = String::from_utf8_lossy(&head).to_lowercase();
                if head.contains("edgelb-health-check") {
                    let _ = s
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        )
                        .await;
                    return;
                }
                assert!(
                    head.contains("upgrade: echo") && head.contains("connection: upgrade"),
                    "{head}"
                );
                s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n").await.unwrap();
                loop {
                    let n = s.read(&mut buf).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    s.write_all(&buf[..n]).await.unwrap();
                }
            });
        }
    });
    let listen = listen_addr();
    let _lb = Edgelb::start(&one_group_config(listen, &[(target, 1)], "")).await;
    let mut s = TcpStream::connect(listen).await.unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 101 "));
    s.write_all(b"ping over the tunnel").await.unwrap();
    let mut echo = vec![0u8; 20];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut echo))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echo, b"ping over the tunnel");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_parked_and_still_served_then_times_out() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = TestTarget::start("t").await;
    let listen = listen_addr();
    let config = one_group_config(listen, &[(t.addr, 1)], "").replace(
        "default_action = { forward = \"web\" }",
        "default_action = { forward = \"web\" }\nidle_timeout = \"3s\"",
    );
    let lb = Edgelb::start(&config).await;
    let mut s = tokio::net::TcpStream::connect(listen).await.unwrap();
    let mut buf = vec![0u8; 4096];
    for round in 0..3 {
        s.write_all(b"GET /p HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let n = s.read(&mut buf).await.unwrap();
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(text.starts_with("HTTP/1.1 200 "), "round {round}: {text}");
        assert!(text.ends_with("\r\n\r\nt"), "round {round}: {text}");
        // Idle past the park delay (1 s), within the idle timeout (3 s).
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    assert_eq!(
        lb.metric("edgelb_active_connections{listener=\"front\"}")
            .await,
        1.0,
        "the parked connection is still open and counted"
    );
    assert_eq!(t.requests(), 3);
    // Parked and silent: closed when its idle timeout ends.
    let closed = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
}
