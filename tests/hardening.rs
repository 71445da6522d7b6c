//! Hostile and malformed requests: refused before anything reaches a target,
//! and the process goes on serving.

mod common;

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::Full;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_shapes_never_reach_the_target() {
    let t = TestTarget::start("t").await;
    let listen = listen_addr();
    let _lb = Edgelb::start(&one_group_config(listen, &[(t.addr, 1)], "")).await;
    let cases: &[(&str, &[u8], &str)] = &[
        (
            "two Host headers",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "400",
        ),
        (
            "absolute form disagreeing with Host",
            b"GET http://evil.example/ HTTP/1.1\r\nHost: good.example\r\n\r\n",
            "400",
        ),
        (
            "two different Content-Lengths",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
            "400",
        ),
        (
            "two equal Content-Lengths",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
            "400",
        ),
        (
            "malformed Content-Length",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello",
            "400",
        ),
        (
            "Transfer-Encoding not chunked",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nhello",
            "400",
        ),
        (
            "obs-fold",
            b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n",
            "400",
        ),
        (
            "NUL in a header value",
            b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
            "400",
        ),
        (
            "a request line that is no request line",
            b"HELLO\r\n\r\n",
            "400",
        ),
    ];
    for (what, bytes, status) in cases {
        let line = raw_status_line(listen, bytes).await;
        assert!(
            line.starts_with(&format!("HTTP/1.1 {status} ")),
            "{what}: got {line:?}"
        );
    }
    let long = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(9000));
    assert!(
        raw_status_line(listen, long.as_bytes())
            .await
            .starts_with("HTTP/1.1 414 ")
    );
    assert_eq!(t.requests(), 0, "the target saw a refused request");
    // Still serving.
    assert_eq!(get(listen, "/").await.text(), "t");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_with_transfer_encoding_is_refused_whatever_the_order() {
    let t = TestTarget::start("t").await;
    let listen = listen_addr();
    let _lb = Edgelb::start(&one_group_config(listen, &[(t.addr, 1)], "")).await;
    let heads: [&[u8]; 3] = [
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
        // Behind an ordinary request with a body, on the same connection.
        b"POST /ok HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhiPOST / HTTP/1.1\r\nHost: x\r\ncontent-length: 0\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
    ];
    for (i, bytes) in heads.iter().enumerate() {
        let answer = raw_exchange(listen, bytes).await;
        let last = answer
            .rmatch_indices("HTTP/1.1 ")
            .next()
            .map(|(at, _)| &answer[at..])
            .unwrap_or("");
        assert!(last.starts_with("HTTP/1.1 400 "), "case {i}: {answer}");
    }
    let seen = t.seen.lock().unwrap().clone();
    assert!(
        seen.iter().all(|s| s.uri == "/ok"),
        "only the ordinary request may reach the target: {seen:?}"
    );
    assert_eq!(get(listen, "/").await.text(), "t");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_max_body_bytes_get_413_declared_or_streamed() {
    let t = TestTarget::start("t").await;
    let listen = listen_addr();
    let config = one_group_config(listen, &[(t.addr, 1)], "").replace(
        "default_action = { forward = \"web\" }",
        "default_action = { forward = \"web\" }\nmax_body_bytes = 1000",
    );
    let _lb = Edgelb::start(&config).await;
    // Declared too long: refused before anything reaches the target.
    let declared = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n{}",
        "a".repeat(1001)
    );
    assert!(
        raw_status_line(listen, declared.as_bytes())
            .await
            .starts_with("HTTP/1.1 413 ")
    );
    assert_eq!(t.requests(), 0);
    // Chunked, found too long while streaming: the target's exchange is cut off.
    let chunk = "b".repeat(600);
    let streamed = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n"
    );
    assert!(
        raw_status_line(listen, streamed.as_bytes())
            .await
            .starts_with("HTTP/1.1 413 ")
    );
    assert!(
        t.seen.lock().unwrap().iter().all(|s| s.body_len <= 1000),
        "the target got more than the limit"
    );
    // At the limit: forwarded whole.
    let exact = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n{}",
        "c".repeat(1000)
    );
    assert!(
        raw_status_line(listen, exact.as_bytes())
            .await
            .starts_with("HTTP/1.1 200 ")
    );
    assert_eq!(t.last().body_len, 1000);
    // Over HTTP/2 too.
    let mut h2 = H2::connect(listen).await;
    let req = Request::post(format!("http://{listen}/"))
        .body(Full::new(Bytes::from(vec![b'd'; 1500])))
        .unwrap();
    assert_eq!(h2.send(req).await.unwrap().status, 413);
    assert_eq!(get(listen, "/").await.text(), "t");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_headers_get_431() {
    let t = TestTarget::start("t").await;
    let listen = listen_addr();
    let _lb = Edgelb::start(&one_group_config(listen, &[(t.addr, 1)], "")).await;
    let mut head = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
    for i in 0..100 {
        head.push_str(&format!("X-H{i}: v\r\n"));
    }
    head.push_str("\r\n");
    assert!(
        raw_status_line(listen, head.as_bytes())
            .await
            .starts_with("HTTP/1.1 431 ")
    );
    assert_eq!(t.requests(), 0);
    assert_eq!(get(listen, "/").await.text(), "t");
}

/// CPU time (user + system) edgelb has used, in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which ends with ')'.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_accept_waits_and_recovers_and_admin_answers() {
    let t = TestTarget::start("t").await;
    let listen = listen_addr();
    // 200 descriptors: client connections are capped at 136, the rest is kept
    // for targets and the admin API.
    let lb = Edgelb::start_limited(&one_group_config(listen, &[(t.addr, 1)], ""), Some(200)).await;
    let mut held = Vec::new();
    for _ in 0..220 {
        held.push(tokio::net::TcpStream::connect(listen).await.unwrap());
    }
    wait_for(Duration::from_secs(10), "the cap to be reached", || async {
        lb.log().contains("accepting paused")
    })
    .await;
    // Past the cap: a request waits in the kernel's queue, the process does not spin,
    // and the admin API answers.
    let mut waiting = tokio::spawn(async move { get(listen, "/").await.text() });
    let before = cpu_ticks(lb.pid());
    for _ in 0..10 {
        let (status, _) = lb.admin_get("/healthz").await;
        assert!(status.is_success());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        cpu_ticks(lb.pid()) - before < 25,
        "edgelb spun while out of descriptors"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(100), &mut waiting)
            .await
            .is_err(),
        "a connection past the cap was served"
    );
    // Connections close: the queued ones are taken and served.
    held.truncate(50);
    let text = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the queued request was never served")
        .unwrap();
    assert_eq!(text, "t");
    assert_eq!(get(listen, "/").await.text(), "t");
}

/// What a misbehaving target does after the bytes it sends.
#[derive(Clone, Copy)]
enum Then {
    Reset,
    Stall,
}

/// A raw target: health checks (`GET /health`) get 200; any other request
/// gets `reply`, and then the connection is reset or left hanging.
async fn misbehaving_target(reply: &'static [u8], then: Then) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = socket.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let Ok(n) = s.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    head.extend_from_slice(&buf[..n]);
                    let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let is_check = head.starts_with(b"GET /health ");
                    head.drain(..end + 4);
                    if is_check {
                        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                        if s.write_all(ok).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    let _ = s.write_all(reply).await;
                    match then {
                        Then::Reset => {
                            let _ = s.set_zero_linger();
                            return;
                        }
                        Then::Stall => {
                            tokio::time::sleep(Duration::from_secs(60)).await;
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_targets_give_502_504_or_a_closed_connection_and_feed_passive_health() {
    let huge_head: &'static [u8] = Box::leak(
        format!(
            "HTTP/1.1 200 OK\r\nx-big: {}\r\ncontent-length: 0\r\n\r\n",
            "a".repeat(100 * 1024)
        )
        .into_bytes()
        .into_boxed_slice(),
    );
    // (what, reply, then, expected status or None for a closed connection)
    let cases: [(&str, &'static [u8], Then, Option<u16>); 6] = [
        (
            "no head within request_timeout",
            b"",
            Then::Stall,
            Some(504),
        ),
        ("reset before the head", b"", Then::Reset, Some(502)),
        (
            "invalid status line",
            b"HTTP/1.1 2x0 OK\r\n\r\n",
            Then::Reset,
            Some(502),
        ),
        ("oversized head", huge_head, Then::Stall, Some(502)),
        (
            "reset mid-body",
            b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\npartial",
            Then::Reset,
            None,
        ),
        (
            "stall mid-body",
            b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\npartial",
            Then::Stall,
            None,
        ),
    ];
    for (what, reply, then, expected) in cases {
        let target = misbehaving_target(reply, then).await;
        let listen = listen_addr();
        let config = one_group_config(
            listen,
            &[(target, 1)],
            "request_timeout = \"2s\"\n[target_groups.health_check]\ninterval = \"60s\"\ntimeout = \"1s\"\nhealthy_threshold = 2\nunhealthy_threshold = 2\npath = \"/health\"\n",
        )
        .replace(
            "default_action = { forward = \"web\" }",
            "default_action = { forward = \"web\" }\nidle_timeout = \"1s\"",
        );
        let lb = Edgelb::start(&config).await;
        wait_for(
            Duration::from_secs(10),
            "the target to be healthy",
            || async {
                lb.status_json().await["target_groups"][0]["targets"][0]["state"] == "healthy"
            },
        )
        .await;
        for _ in 0..2 {
            let request = async {
                let mut h1 = H1::connect(listen).await;
                let req = Request::get("/x")
                    .header("host", "x")
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                h1.send(req).await
            };
            let got = tokio::time::timeout(Duration::from_secs(10), request)
                .await
                .unwrap_or_else(|_| panic!("{what}: the client hung"));
            match (expected, got) {
                (Some(status), Ok(got)) => assert_eq!(got.status, status, "{what}"),
                // The head went out already: the connection closes under the body.
                (None, Err(_)) => {}
                (expected, got) => panic!("{what}: expected {expected:?}, got {got:?}"),
            }
        }
        let errors = lb
            .metric("edgelb_target_response_errors_total{target_group=\"web\"}")
            .await;
        assert!(errors >= 1.0, "{what}: not counted");
        wait_for(
            Duration::from_secs(5),
            "passive health to see the failures",
            || async {
                lb.status_json().await["target_groups"][0]["targets"][0]["state"] == "unhealthy"
            },
        )
        .await;
        // The process is still up and answering.
        assert!(lb.admin_get("/metrics").await.0.is_success(), "{what}");
    }
}

/// One HTTP/2 frame on stream `stream`.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An h2c connection after the client preface, an empty SETTINGS and `frames`.
async fn h2_open(listen: std::net::SocketAddr, frames: &[u8]) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(listen).await.unwrap();
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend(h2_frame(4, 0, 0, &[]));
    hello.extend_from_slice(frames);
    s.write_all(&hello).await.unwrap();
    s
}

/// A GET / header block: :method GET, :scheme http, :path /, :authority x.
const GET_BLOCK: &[u8] = &[0x82, 0x86, 0x84, 0x41, 0x01, b'x'];

/// Opens an h2c connection, sends the preface and `flood`, and returns the
/// server's SETTINGS payload and whether the server closed the connection
/// within 10 s.
async fn h2_flood(listen: std::net::SocketAddr, flood: &[u8]) -> (Vec<u8>, bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut r, mut w) = h2_open(listen, &[]).await.into_split();
    let flood = flood.to_vec();
    // Written from a task: the server may stop reading (and close) midway.
    tokio::spawn(async move {
        let _ = w.write_all(&flood).await;
    });
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if got.len() < 4096 {
                        got.extend_from_slice(&buf[..n]);
                    }
                }
            }
        }
    })
    .await
    .is_ok();
    // The first frame the server sends is its SETTINGS.
    assert!(got.len() >= 9 && got[3] == 4, "no SETTINGS from the server");
    let len = usize::from(got[0]) << 16 | usize::from(got[1]) << 8 | usize::from(got[2]);
    (got[9..9 + len].to_vec(), closed)
}

/// Sends the preface and `frames`; whether a response HEADERS frame comes
/// back on stream 1 before the connection closes.
async fn h2_answered(listen: std::net::SocketAddr, frames: &[u8]) -> bool {
    use tokio::io::AsyncReadExt;
    let mut s = h2_open(listen, frames).await;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            // Walk the complete frames read so far.
            let mut at = 0;
            while got.len() >= at + 9 {
                let len = usize::from(got[at]) << 16
                    | usize::from(got[at + 1]) << 8
                    | usize::from(got[at + 2]);
                let stream =
                    u32::from_be_bytes([got[at + 5], got[at + 6], got[at + 7], got[at + 8]]);
                if got[at + 3] == 1 && stream == 1 {
                    return true;
                }
                at += 9 + len;
            }
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_floods_are_cut_off_and_limits_are_announced() {
    let t = TestTarget::start("t").await;
    let listen = listen_addr();
    let lb = Edgelb::start(&one_group_config(listen, &[(t.addr, 1)], "")).await;
    let ping = h2_frame(6, 0, 0, &[0; 8]);
    let settings = h2_frame(4, 0, 0, &[]);
    let mut rapid_reset = Vec::new();
    for i in 0..5000u32 {
        let stream = 2 * i + 1;
        rapid_reset.extend(h2_frame(1, 0x5, stream, GET_BLOCK));
        rapid_reset.extend(h2_frame(3, 0, stream, &8u32.to_be_bytes()));
    }
    let mut continuation = h2_frame(1, 0x1, 1, &GET_BLOCK[..2]);
    for _ in 0..10_000 {
        continuation.extend(h2_frame(9, 0, 1, &[]));
    }
    let floods: [(&str, Vec<u8>); 4] = [
        ("PING flood", ping.repeat(20_000)),
        ("SETTINGS flood", settings.repeat(20_000)),
        ("rapid reset", rapid_reset),
        ("CONTINUATION flood", continuation),
    ];
    for (what, flood) in &floods {
        let (server_settings, closed) = h2_flood(listen, flood).await;
        assert!(closed, "{what}: the connection stayed open");
        // SETTINGS_MAX_CONCURRENT_STREAMS (3) = 128, SETTINGS_MAX_HEADER_LIST_SIZE (6) = 65536.
        let setting = |id: u16| {
            server_settings
                .chunks(6)
                .find(|c| u16::from_be_bytes([c[0], c[1]]) == id)
                .map(|c| u32::from_be_bytes([c[2], c[3], c[4], c[5]]))
        };
        assert_eq!(setting(3), Some(128), "{what}");
        assert_eq!(setting(6), Some(65536), "{what}");
    }
    assert!(
        lb.metric("edgelb_client_floods_total{listener=\"front\"}")
            .await
            >= 3.0,
        "floods not counted"
    );
    // A well-behaved HTTP/2 client with a few PINGs of its own is not cut off.
    let mut few = Vec::new();
    for i in 0..10u32 {
        few.extend(h2_frame(6, 0, 0, &[i as u8; 8]));
    }
    few.extend(h2_frame(1, 0x5, 1, GET_BLOCK));
    assert!(
        h2_answered(listen, &few).await,
        "a client with a few PINGs was cut off"
    );
    let mut h2 = H2::connect(listen).await;
    assert_eq!(h2.get("/").await.text(), "t");
    assert_eq!(get(listen, "/").await.text(), "t");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_placeholders_cannot_inject_headers() {
    let t = TestTarget::start("t").await;
    let listen = listen_addr();
    let config = one_group_config(listen, &[(t.addr, 1)], "").replace(
        "default_action = { forward = \"web\" }",
        "default_action = { redirect = { host = \"#{host}\", path = \"/to/#{path}\", query = \"#{query}&r=1\", status = 302 } }",
    );
    let _lb = Edgelb::start(&config).await;
    let tries: [&[u8]; 4] = [
        b"GET /a%0d%0aSet-Cookie:%20x=1?q=%0d%0aX-Injected:%201 HTTP/1.1\r\nHost: ok.example\r\nConnection: close\r\n\r\n",
        b"GET /a HTTP/1.1\r\nHost: ok.example%0d%0aX-Injected: 1\r\nConnection: close\r\n\r\n",
        b"GET /a HTTP/1.1\r\nHost: evil.example/x\r\nConnection: close\r\n\r\n",
        b"GET /a HTTP/1.1\r\nHost: user@evil.example\r\nConnection: close\r\n\r\n",
    ];
    for (i, bytes) in tries.iter().enumerate() {
        let answer = raw_exchange(listen, bytes).await;
        let head = answer
            .split("\r\n\r\n")
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        assert!(
            !head.contains("\r\nset-cookie") && !head.contains("\r\nx-injected"),
            "case {i}: {answer}"
        );
        assert!(
            head.matches("\r\nlocation:").count() <= 1,
            "case {i}: {answer}"
        );
        if i == 0 {
            assert!(head.starts_with("http/1.1 302 "), "{answer}");
            assert!(
                head.contains("\r\nlocation: http://ok.example:"),
                "{answer}"
            );
        } else {
            assert!(head.starts_with("http/1.1 400 "), "case {i}: {answer}");
        }
    }
    assert_eq!(t.requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_slowloris_connections_cost_little_and_starve_nobody() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const SLOW: usize = 1000;
    let t = TestTarget::start("t").await;
    let listen = listen_addr();
    let config = one_group_config(listen, &[(t.addr, 1)], "").replace(
        "default_action = { forward = \"web\" }",
        "default_action = { forward = \"web\" }\nheader_read_timeout = \"3s\"",
    );
    let lb = Edgelb::start(&config).await;
    assert_eq!(get(listen, "/").await.text(), "t");
    let rss_before = proc_status_kib(lb.pid(), "VmRSS");
    let mut slow = Vec::new();
    for _ in 0..SLOW {
        let mut s = tokio::net::TcpStream::connect(listen).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        slow.push(tokio::spawn(async move {
            // One more header line every 300 ms, until edgelb answers.
            let mut answer = Vec::new();
            let mut buf = [0u8; 256];
            for _ in 0..40 {
                tokio::select! {
                    r = s.read(&mut buf) => match r {
                        Ok(0) | Err(_) => break,
                        Ok(n) => answer.extend_from_slice(&buf[..n]),
                    },
                    _ = tokio::time::sleep(Duration::from_millis(300)) => {
                        if s.write_all(b"X-Slow: 1\r\n").await.is_err() {
                            break;
                        }
                    }
                }
            }
            String::from_utf8_lossy(&answer).into_owned()
        }));
    }
    // A normal client meanwhile.
    let mut h1 = H1::connect(listen).await;
    for _ in 0..100 {
        assert_eq!(h1.get("/").await.text(), "t");
    }
    let grown = proc_status_kib(lb.pid(), "VmRSS").saturating_sub(rss_before);
    assert!(
        grown < 64 * 1024,
        "{SLOW} slow connections grew edgelb by {grown} KiB"
    );
    let mut timed_out = 0;
    for s in slow {
        if s.await.unwrap().starts_with("HTTP/1.1 408 ") {
            timed_out += 1;
        }
    }
    assert_eq!(timed_out, SLOW, "every slow head ends with 408");
    assert_eq!(t.requests(), 101);
    assert_eq!(get(listen, "/").await.text(), "t");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_and_slow_readers_are_cut_after_idle_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = TestTarget::start("t").await;
    let big = TestTarget::start_with(
        "big",
        Behaviour {
            body_bytes: Some(256 << 20),
            ..Behaviour::default()
        },
    )
    .await;
    let (listen, listen_big) = (listen_addr(), listen_addr());
    let idle = "default_action = { forward = \"web\" }\nidle_timeout = \"1s\"";
    let lb = Edgelb::start(
        &one_group_config(listen, &[(t.addr, 1)], "")
            .replace("default_action = { forward = \"web\" }", idle),
    )
    .await;
    let lb_big = Edgelb::start(
        &one_group_config(listen_big, &[(big.addr, 1)], "")
            .replace("default_action = { forward = \"web\" }", idle),
    )
    .await;
    // Slow POST: ten bytes of a thousand, then nothing.
    let line = raw_status_line(
        listen,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789",
    )
    .await;
    assert!(line.starts_with("HTTP/1.1 408 "), "{line}");
    // Slow reader: asks for 256 MiB and reads 64 KiB of it.
    let rss_before = peak_rss_kib(lb_big.pid());
    let mut s = tokio::net::TcpStream::connect(listen_big).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    s.read_exact(&mut buf).await.unwrap();
    wait_for(
        Duration::from_secs(10),
        "the slow reader to be cut off",
        || async {
            lb_big
                .metric("edgelb_active_connections{listener=\"front\"}")
                .await
                == 0.0
        },
    )
    .await;
    let mut rest = 0u64;
    let drain = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => rest += n as u64,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), drain)
        .await
        .expect("the connection was not closed");
    assert!(rest < 128 << 20, "the whole body went out: {rest}");
    let grown = peak_rss_kib(lb_big.pid()).saturating_sub(rss_before);
    assert!(
        grown < 32 * 1024,
        "a slow reader grew edgelb by {grown} KiB"
    );
    assert_eq!(get(listen, "/").await.text(), "t");
    wait_for(
        Duration::from_secs(10),
        "every connection closed",
        || async {
            lb.metric("edgelb_active_connections{listener=\"front\"}")
                .await
                == 0.0
        },
    )
    .await;
}
