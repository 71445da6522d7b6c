//! Regressions for the black-box desync hunt (issue 20), each sending the
//! exact bytes, asserting what the client gets, what the target received and
//! the target's health afterwards, in both dispatch positions: the HTTP/1
//! fast path on (`h1/`) and off (hyper's server and client for everything).

mod common;

use bytes::Bytes;
use common::raw_target::{RawTarget, Reply, fixed_reply};
use common::{Edgelb, listen_addr, wait_for};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Both dispatch positions.
const POSITIONS: [bool; 2] = [true, false];

/// One http listener `front` to group `web` with one target; health checks
/// every 5 s, and one failure (active or passive) makes the target unhealthy:
/// any blame a request puts on the target shows in its state.
fn config(
    listen: SocketAddr,
    target: SocketAddr,
    listener_extra: &str,
    group_extra: &str,
) -> String {
    format!(
        r#"[global]
drain_timeout = "5s"

[admin]
bind = "ADMIN"

[[listeners]]
name = "front"
protocol = "http"
bind = "{listen}"
default_action = {{ forward = "web" }}
{listener_extra}

[[target_groups]]
name = "web"
protocol = "http"
fail_open = false
targets = [ {{ address = "{target}" }} ]
{group_extra}

[target_groups.health_check]
interval = "5s"
timeout = "1s"
healthy_threshold = 2
unhealthy_threshold = 1
"#
    )
}

/// edgelb in front of `target`, started in dispatch position `fast`, with the
/// target healthy.
async fn start(
    fast: bool,
    target: &RawTarget,
    listener_extra: &str,
    group_extra: &str,
) -> (Edgelb, SocketAddr) {
    let listen = listen_addr();
    let lb = Edgelb::start_dispatch(
        &config(listen, target.addr, listener_extra, group_extra),
        fast,
    )
    .await;
    wait_healthy(&lb).await;
    (lb, listen)
}

async fn target_state(lb: &Edgelb) -> (String, String) {
    let status = lb.status_json().await;
    let t = &status["target_groups"][0]["targets"][0];
    (
        t["state"].as_str().unwrap_or("").to_owned(),
        t["reason"].as_str().unwrap_or("").to_owned(),
    )
}

async fn wait_healthy(lb: &Edgelb) {
    wait_for(Duration::from_secs(5), "the target healthy", || async {
        target_state(lb).await.0 == "healthy"
    })
    .await;
}

/// The target was not blamed: still healthy, no passive failure counted.
async fn assert_not_blamed(lb: &Edgelb, what: &str) {
    let (state, reason) = target_state(lb).await;
    assert_eq!(
        state,
        "healthy",
        "{what}: target {state} ({reason})\n{}",
        lb.log()
    );
    let errors = lb
        .metric("edgelb_target_response_errors_total{target_group=\"web\"}")
        .await;
    assert_eq!(errors, 0.0, "{what}: a target response error was counted");
}

/// The target was blamed: unhealthy with `Target.FailedHealthChecks`.
async fn assert_blamed(lb: &Edgelb, what: &str) {
    let (state, reason) = target_state(lb).await;
    assert_eq!(
        (state.as_str(), reason.as_str()),
        ("unhealthy", "Target.FailedHealthChecks"),
        "{what}"
    );
}

/// Writes `bytes`, then reads until the peer closes or `wait` passes.
async fn exchange(addr: SocketAddr, bytes: &[u8], wait: Duration) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    read_for(&mut s, wait).await
}

async fn read_for(s: &mut TcpStream, wait: Duration) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn statuses(answer: &str) -> Vec<u16> {
    answer
        .split("HTTP/1.1 ")
        .skip(1)
        .filter_map(|s| s.get(..3)?.parse().ok())
        .collect()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

// 1. A slow upload must not make the target look slow.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upload_is_the_clients_time_not_the_targets() {
    for fast in POSITIONS {
        let target = RawTarget::start().await;
        // request_timeout 1 s; each upload takes ~2.4 s.
        let (lb, listen) = start(fast, &target, "", "request_timeout = \"1s\"").await;
        let upload = |path: &'static str| async move {
            let mut s = TcpStream::connect(listen).await.unwrap();
            let head = format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\n");
            s.write_all(head.as_bytes()).await.unwrap();
            for b in b"abcdef" {
                tokio::time::sleep(Duration::from_millis(400)).await;
                s.write_all(&[*b]).await.unwrap();
            }
            let mut out = vec![0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut out))
                .await
                .unwrap()
                .unwrap();
            text(&out[..n])
        };
        // Two at once, as the attack does (one failure is enough here).
        let (a, b) = tokio::join!(upload("/a"), upload("/b"));
        for answer in [a, b] {
            assert!(answer.starts_with("HTTP/1.1 200"), "fast={fast}: {answer}");
        }
        let got = target.requests();
        assert_eq!(got.len(), 2);
        for r in &got {
            assert!(text(r).ends_with("\r\n\r\nabcdef"), "{}", text(r));
        }
        assert_not_blamed(&lb, "slow upload").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_chunked_body_is_408_and_never_the_targets_failure() {
    for fast in POSITIONS {
        let target = RawTarget::start().await;
        let (lb, listen) = start(
            fast,
            &target,
            "idle_timeout = \"2s\"",
            "request_timeout = \"1s\"",
        )
        .await;
        let started = Instant::now();
        let answer = exchange(
            listen,
            b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
            Duration::from_secs(8),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 408"), "fast={fast}: {answer}");
        assert!(started.elapsed() >= Duration::from_millis(1900));
        assert_not_blamed(&lb, "stalled chunked body").await;
        // A Content-Length body that stalls: the same.
        let answer = exchange(
            listen,
            b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc",
            Duration::from_secs(8),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 408"), "fast={fast}: {answer}");
        assert_not_blamed(&lb, "stalled sized body").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_http2_upload_is_not_the_targets_failure() {
    let target = RawTarget::start().await;
    let (lb, listen) = start(true, &target, "", "request_timeout = \"1s\"").await;
    let mut sender = h2c(listen).await;
    let (tx, body) = Trickle::new();
    let req = http::Request::post(format!("http://x:{}/up", listen.port()))
        .body(body)
        .unwrap();
    let sending = tokio::spawn(async move {
        for b in b"abcdef" {
            tokio::time::sleep(Duration::from_millis(400)).await;
            tx.send(Bytes::copy_from_slice(&[*b])).await.unwrap();
        }
    });
    let resp = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
        .await
        .unwrap()
        .unwrap();
    sending.await.unwrap();
    assert_eq!(resp.status(), 200);
    let got = target.requests();
    assert!(text(&got[0]).contains("abcdef") || text(&got[0]).contains("1\r\nf\r\n0\r\n\r\n"));
    assert_not_blamed(&lb, "slow HTTP/2 upload").await;
}

/// An HTTP/2 client connection by prior knowledge to `listen`.
async fn h2c<B>(listen: SocketAddr) -> hyper::client::conn::http2::SendRequest<B>
where
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = TcpStream::connect(listen).await.unwrap();
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    sender
}

/// A request body fed by a channel, of no declared length.
struct Trickle(tokio::sync::mpsc::Receiver<Bytes>);

impl Trickle {
    fn new() -> (tokio::sync::mpsc::Sender<Bytes>, Self) {
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        (tx, Trickle(rx))
    }
}

impl http_body::Body for Trickle {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|d| d.map(|d| Ok(http_body::Frame::data(d))))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_target_is_still_a_timeout() {
    for fast in POSITIONS {
        // The answer never comes: 504, the target's failure.
        let target = RawTarget::start_with(Arc::new(|_| {
            std::thread::sleep(Duration::from_millis(1500));
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec()
        }))
        .await;
        let (lb, listen) = start(fast, &target, "", "request_timeout = \"1s\"").await;
        let answer = exchange(
            listen,
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
            Duration::from_secs(5),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 504"), "fast={fast}: {answer}");
        let (state, reason) = target_state(&lb).await;
        assert_eq!(
            (state.as_str(), reason.as_str()),
            ("unhealthy", "Target.Timeout")
        );
    }
}

// 2. Host and header values are checked before any rule, over HTTP/2 too.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn padded_host_and_header_values_over_http2_are_refused() {
    let target = RawTarget::start().await;
    let rules = r#"
[[listeners.rules]]
priority = 1
conditions = { host = ["internal.example"] }
action = { fixed_response = { status = 403, content_type = "text/plain", body = "no" } }

[[listeners.rules]]
priority = 2
conditions = { headers = { "x-canary" = ["1"] } }
action = { fixed_response = { status = 403, content_type = "text/plain", body = "no" } }
"#;
    let (lb, listen) = start(true, &target, rules, "").await;
    let mut sender = h2c(listen).await;
    for (name, value) in [
        ("host", "\tinternal.example"),
        ("host", "internal.example "),
        ("x-canary", " 1"),
        ("x-canary", "1\t"),
    ] {
        let req = http::Request::get("/")
            .header(name, http::HeaderValue::from_str(value).unwrap())
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 400, "{name}: {value:?}");
    }
    // Unpadded: the rules see them.
    let req = http::Request::get("/")
        .header("host", "internal.example")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    assert_eq!(sender.send_request(req).await.unwrap().status(), 403);
    assert!(target.requests().is_empty(), "nothing reached the target");
    assert_not_blamed(&lb, "padded values").await;
}

// 3. The framing defence stays on until the protocol really switched.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_framing_defence_survives_upgrade_headers_answered_without_a_switch() {
    for fast in POSITIONS {
        let target = RawTarget::start().await;
        let (lb, listen) = start(fast, &target, "", "").await;
        for first in [
            "GET /u HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n",
            "GET /u HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
        ] {
            let smuggle = "POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
            let answer = exchange(
                listen,
                format!("{first}{smuggle}").as_bytes(),
                Duration::from_secs(3),
            )
            .await;
            assert_eq!(statuses(&answer), [200, 400], "fast={fast}: {answer}");
            let dup =
                "POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx";
            let answer = exchange(
                listen,
                format!("{first}{dup}").as_bytes(),
                Duration::from_secs(3),
            )
            .await;
            assert_eq!(statuses(&answer), [200, 400], "fast={fast}: {answer}");
        }
        let got = target.requests();
        assert_eq!(got.len(), 4, "only the GETs reached the target");
        assert!(got.iter().all(|r| text(r).starts_with("GET /u ")));
        assert_not_blamed(&lb, "upgrade headers").await;
    }
}

// 4. A bare-LF trailer section is refused, not read two ways.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_lf_trailer_is_refused_and_swallows_nothing() {
    for fast in POSITIONS {
        let target = RawTarget::start().await;
        let (lb, listen) = start(fast, &target, "", "").await;
        for body in [
            "0\r\nX: a\n\n",
            "5\nhello\r\n0\r\n\r\n",
            "5\r\nhello\n0\r\n\r\n",
        ] {
            let bytes = format!(
                "POST /t HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{body}GET /next HTTP/1.1\r\nHost: x\r\n\r\n"
            );
            let answer = exchange(listen, bytes.as_bytes(), Duration::from_secs(3)).await;
            assert_eq!(statuses(&answer), [400], "fast={fast} {body:?}: {answer}");
        }
        // Nothing complete reached the target: at most a head cut off.
        for r in target.requests() {
            assert!(!text(&r).contains("GET /next"), "{}", text(&r));
            assert!(
                !text(&r).ends_with("0\r\n\r\n"),
                "a complete body reached the target: {}",
                text(&r)
            );
        }
        assert_not_blamed(&lb, "bare LF trailer").await;
    }
}

// 5. The two HTTP/1 stacks behave alike.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_half_closes_still_gets_its_answer() {
    for fast in POSITIONS {
        let target = RawTarget::start().await;
        let (lb, listen) = start(fast, &target, "", "").await;
        for req in [
            "GET /h HTTP/1.1\r\nHost: x\r\n\r\n",
            "POST /h HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
        ] {
            let mut s = TcpStream::connect(listen).await.unwrap();
            s.write_all(req.as_bytes()).await.unwrap();
            s.shutdown().await.unwrap();
            let answer = read_for(&mut s, Duration::from_secs(3)).await;
            assert_eq!(statuses(&answer), [200], "fast={fast} {req:?}: {answer}");
        }
        assert_eq!(target.requests().len(), 2);
        assert_not_blamed(&lb, "half close").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsolicited_101_is_a_502_and_the_targets_failure_on_every_path() {
    for fast in POSITIONS {
        // A plain GET (fast path / raw sockets) and a chunked POST (hyper's client).
        for req in [
            "GET /x HTTP/1.1\r\nHost: x\r\n\r\n",
            "POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n",
        ] {
            let target = RawTarget::start_with(fixed_reply(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            ))
            .await;
            let (lb, listen) = start(fast, &target, "", "").await;
            let answer = exchange(listen, req.as_bytes(), Duration::from_secs(2)).await;
            assert_eq!(statuses(&answer), [502], "fast={fast} {req:?}: {answer}");
            assert_eq!(target.requests().len(), 1);
            assert_blamed(&lb, "unsolicited 101").await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http2_preface_is_refused_after_http1_requests() {
    for fast in POSITIONS {
        let target = RawTarget::start().await;
        let (lb, listen) = start(fast, &target, "", "").await;
        let mut s = TcpStream::connect(listen).await.unwrap();
        s.write_all(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut first = vec![0u8; 1024];
        let n = s.read(&mut first).await.unwrap();
        assert!(text(&first[..n]).starts_with("HTTP/1.1 200"));
        // The preface and an empty SETTINGS frame.
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
            .await
            .unwrap();
        let answer = read_for(&mut s, Duration::from_secs(3)).await;
        let refused = answer.starts_with("HTTP/1.1 4") || answer.starts_with("HTTP/1.1 505");
        assert!(refused || answer.is_empty(), "fast={fast}: {answer:?}");
        assert!(
            !answer.as_bytes().starts_with(b"\0\0"),
            "an HTTP/2 SETTINGS frame came back"
        );
        assert_eq!(target.requests().len(), 1);
        assert_not_blamed(&lb, "late preface").await;
    }
}

// 6. No body is ever dropped silently.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_and_head_bodies_of_unknown_length_reach_the_target() {
    for fast in POSITIONS {
        let target = RawTarget::start().await;
        let (lb, listen) = start(fast, &target, "", "").await;
        let answer = exchange(
            listen,
            b"GET /g HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            Duration::from_secs(3),
        )
        .await;
        assert_eq!(statuses(&answer), [200], "fast={fast}: {answer}");
        let got = target.requests();
        assert!(
            text(&got[0]).ends_with("\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
            "fast={fast}: {}",
            text(&got[0])
        );
        assert_not_blamed(&lb, "GET body").await;
    }
    // HTTP/2: DATA without content-length.
    let target = RawTarget::start().await;
    let (_lb, listen) = start(true, &target, "", "").await;
    let mut sender = h2c(listen).await;
    let (tx, body) = Trickle::new();
    let req = http::Request::get(format!("http://x:{}/g2", listen.port()))
        .body(body)
        .unwrap();
    tx.send(Bytes::from_static(b"hello")).await.unwrap();
    drop(tx);
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let got = target.requests();
    assert!(
        text(&got[0]).contains("\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        "{}",
        text(&got[0])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_answered_http10_keep_alive_still_gets_chunked_bodies() {
    for fast in POSITIONS {
        let target = RawTarget::start_with(fixed_reply(
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
        ))
        .await;
        let (lb, listen) = start(fast, &target, "", "").await;
        let mut s = TcpStream::connect(listen).await.unwrap();
        for body in ["first", "second"] {
            let req = format!(
                "POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
                body.len()
            );
            s.write_all(req.as_bytes()).await.unwrap();
            let mut buf = vec![0u8; 2048];
            let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(
                text(&buf[..n]).starts_with("HTTP/1.1 200"),
                "fast={fast}: {}",
                text(&buf[..n])
            );
        }
        let got = target.requests();
        assert_eq!(got.len(), 2);
        assert!(
            text(&got[1]).contains("second"),
            "fast={fast}: {}",
            text(&got[1])
        );
        assert_not_blamed(&lb, "HTTP/1.0 target").await;
    }
}

// 7. CONNECT and odd request targets.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_is_405_and_authority_or_asterisk_targets_are_400() {
    for fast in POSITIONS {
        let target = RawTarget::start().await;
        let (lb, listen) = start(fast, &target, "", "").await;
        let answer = exchange(
            listen,
            b"CONNECT x.example:443 HTTP/1.1\r\nHost: x.example:443\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
            Duration::from_secs(3),
        )
        .await;
        assert_eq!(statuses(&answer), [405], "fast={fast}: {answer}");
        for line in ["GET x.example:443 HTTP/1.1", "OPTIONS * HTTP/1.1"] {
            let answer = exchange(
                listen,
                format!("{line}\r\nHost: x.example\r\n\r\n").as_bytes(),
                Duration::from_secs(3),
            )
            .await;
            assert_eq!(statuses(&answer), [400], "fast={fast} {line}: {answer}");
        }
        assert!(target.requests().is_empty());
        assert_not_blamed(&lb, "CONNECT").await;
    }
}

// 8. The admin address is not shared silently.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_edgelb_on_the_same_admin_address_exits_2_unless_upgrading() {
    let target = RawTarget::start().await;
    let listen = listen_addr();
    let mut old = Edgelb::start(&config(listen, target.addr, "", "")).await;
    let config_path = old.config_path.clone();
    // The same file: the same admin address.
    let err_path = old.dir.path().join("second.err");
    let mut second = std::process::Command::new(common::edgelb_bin())
        .args(["run", "--config"])
        .arg(&config_path)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    // Bounded: it must exit within 10 s (it is killed otherwise).
    let deadline = Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = second.kill();
            let _ = second.wait();
            panic!("a second edgelb on a taken admin address kept running");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(code, Some(2));
    let stderr = std::fs::read_to_string(&err_path).unwrap();
    assert!(
        stderr.contains("admin API: cannot bind") && stderr.contains("--upgrade"),
        "{stderr}"
    );
    // With --upgrade: it serves the listener at once, takes the admin address
    // when the old process leaves.
    let log = std::fs::File::create(old.dir.path().join("new.log")).unwrap();
    let mut new = std::process::Command::new(common::edgelb_bin())
        .args(["run", "--upgrade", "--config"])
        .arg(&config_path)
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    wait_for(
        Duration::from_secs(10),
        "the new process listening",
        || async {
            std::fs::read_to_string(old.dir.path().join("new.log"))
                .is_ok_and(|l| l.contains("taken when it frees"))
        },
    )
    .await;
    old.signal("TERM");
    assert_eq!(old.wait_exit(Duration::from_secs(10)).await, 0);
    let admin = old.admin;
    wait_for(
        Duration::from_secs(10),
        "the new process's admin API",
        || async { common::admin_answers(admin).await },
    )
    .await;
    let got = common::get(listen, "/").await;
    assert_eq!(got.status, 200);
    let _ = new.kill();
    let _ = new.wait();
}

// 9. The rest of the hunt's list.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http11_without_host_is_400_and_h2c_upgrades_are_not_tunnelled() {
    for fast in POSITIONS {
        let target = RawTarget::start().await;
        let (lb, listen) = start(fast, &target, "", "").await;
        let answer = exchange(listen, b"GET / HTTP/1.1\r\n\r\n", Duration::from_secs(3)).await;
        assert_eq!(statuses(&answer), [400], "fast={fast}: {answer}");
        let answer = exchange(
            listen,
            b"GET /h2c HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
            Duration::from_secs(2),
        )
        .await;
        assert_eq!(statuses(&answer), [200], "fast={fast}: {answer}");
        let got = target.requests();
        assert_eq!(got.len(), 1);
        let seen = text(&got[0]).to_ascii_lowercase();
        assert!(
            !seen.contains("upgrade") && !seen.contains("http2-settings"),
            "{seen}"
        );
        assert_not_blamed(&lb, "h2c").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_101_without_the_right_accept_is_502() {
    for fast in POSITIONS {
        for (accept, want) in [
            ("wrong", 502),
            // base64(SHA-1(key + GUID)) for the RFC 6455 sample key.
            ("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", 101),
        ] {
            let reply: Reply = Arc::new(move |_| {
                format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
                )
                .into_bytes()
            });
            let target = RawTarget::start_with(reply).await;
            let (lb, listen) = start(fast, &target, "", "").await;
            let answer = exchange(
                listen,
                b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                Duration::from_secs(2),
            )
            .await;
            assert_eq!(statuses(&answer), [want], "fast={fast} {accept}: {answer}");
            if want == 502 {
                assert_blamed(&lb, "bad accept").await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_encoding_other_than_chunked_is_502_at_once() {
    for fast in POSITIONS {
        for req in [
            "GET /te HTTP/1.1\r\nHost: x\r\n\r\n",
            "POST /te HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n",
        ] {
            let target = RawTarget::start_with(fixed_reply(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, identity\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            ))
            .await;
            let (lb, listen) = start(fast, &target, "", "").await;
            let started = Instant::now();
            let mut s = TcpStream::connect(listen).await.unwrap();
            s.write_all(req.as_bytes()).await.unwrap();
            let mut buf = vec![0u8; 2048];
            let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
                .await
                .expect("an answer, not a hang")
                .unwrap();
            assert!(
                text(&buf[..n]).starts_with("HTTP/1.1 502"),
                "fast={fast}: {}",
                text(&buf[..n])
            );
            assert!(started.elapsed() < Duration::from_secs(2));
            assert_blamed(&lb, "chunked, identity").await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_unique_and_share_no_prefix() {
    for fast in POSITIONS {
        let target = RawTarget::start().await;
        let (_lb, listen) = start(fast, &target, "", "").await;
        let mut s = TcpStream::connect(listen).await.unwrap();
        for _ in 0..20 {
            s.write_all(b"GET /id HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            let mut buf = vec![0u8; 1024];
            let n = s.read(&mut buf).await.unwrap();
            assert!(text(&buf[..n]).starts_with("HTTP/1.1 200"));
        }
        let ids: Vec<String> = target
            .requests()
            .iter()
            .map(|r| {
                let t = text(r);
                let line = t
                    .lines()
                    .find(|l| l.to_ascii_lowercase().starts_with("x-request-id:"))
                    .unwrap()
                    .to_owned();
                line.split(':').nth(1).unwrap().trim().to_owned()
            })
            .collect();
        assert_eq!(ids.len(), 20);
        let mut halves: Vec<&str> = ids.iter().map(|i| &i[..16]).collect();
        halves.sort();
        halves.dedup();
        assert_eq!(halves.len(), 20, "ids share a predictable half: {ids:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn underscore_spellings_of_edgelbs_own_headers_are_dropped() {
    for fast in POSITIONS {
        let target = RawTarget::start().await;
        let (lb, listen) = start(fast, &target, "", "").await;
        let answer = exchange(
            listen,
            b"GET /u HTTP/1.1\r\nHost: x\r\nX_Forwarded_For: 10.9.9.9\r\nx_request_id: fixed\r\nX_Custom: kept\r\nConnection: close\r\n\r\n",
            Duration::from_secs(3),
        )
        .await;
        assert_eq!(statuses(&answer), [200], "fast={fast}: {answer}");
        let got = text(&target.requests()[0]).to_ascii_lowercase();
        assert!(
            !got.contains("10.9.9.9") && !got.contains("fixed"),
            "fast={fast}: {got}"
        );
        assert!(got.contains("x_custom: kept"), "fast={fast}: {got}");
        assert!(
            got.contains("x-forwarded-for: 127.0.0.1\r\n"),
            "fast={fast}: {got}"
        );
        assert_not_blamed(&lb, "underscores").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_mid_body_is_not_waited_for() {
    for fast in POSITIONS {
        let target = RawTarget::start().await;
        let (lb, listen) = start(fast, &target, "", "").await;
        for req in [
            "POST /m HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc",
            "POST /m HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
        ] {
            let started = Instant::now();
            let mut s = TcpStream::connect(listen).await.unwrap();
            s.write_all(req.as_bytes()).await.unwrap();
            s.shutdown().await.unwrap();
            // Closed (or answered 400) at once, not after idle_timeout (60 s).
            let answer = read_for(&mut s, Duration::from_secs(5)).await;
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "fast={fast} {req:?}: waited"
            );
            assert!(
                answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
                "fast={fast}: {answer}"
            );
        }
        assert_not_blamed(&lb, "client gone mid-body").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn padded_host_values_over_http1_meet_the_same_rules() {
    let rules = r#"
[[listeners.rules]]
priority = 1
conditions = { host = ["internal.example"] }
action = { fixed_response = { status = 403, content_type = "text/plain", body = "no" } }
"#;
    for fast in POSITIONS {
        let target = RawTarget::start().await;
        let (lb, listen) = start(fast, &target, rules, "").await;
        for host in [
            "internal.example ",
            "internal.example\t",
            " internal.example",
            "\tinternal.example",
        ] {
            let answer = exchange(
                listen,
                format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
                Duration::from_secs(3),
            )
            .await;
            // Trimmed by the parser (and then refused by the rule), or refused.
            let st = statuses(&answer);
            assert!(st == [403] || st == [400], "fast={fast} {host:?}: {answer}");
        }
        assert!(
            target.requests().is_empty(),
            "a padded host reached the target"
        );
        assert_not_blamed(&lb, "padded HTTP/1 host").await;
    }
}
