//! Hostile and malformed requests: refused before anything reaches a target,
//! and the process goes on serving.

mod common;

use common::*;

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
async fn content_length_with_transfer_encoding_cannot_desync_the_target() {
    // hyper lets Transfer-Encoding win over Content-Length (RFC 9112 §6.3), drops the
    // Content-Length and closes the client connection after the response; the target
    // gets a body framed by edgelb, so nothing can be smuggled behind it.
    let t = TestTarget::start("t").await;
    let listen = listen_addr();
    let _lb = Edgelb::start(&one_group_config(listen, &[(t.addr, 1)], "")).await;
    let line = raw_status_line(
        listen,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    assert!(
        line.starts_with("HTTP/1.1 200 ") || line.starts_with("HTTP/1.1 400 "),
        "{line}"
    );
    assert!(
        t.seen.lock().unwrap().iter().all(|s| s.uri != "/smuggled"),
        "a smuggled request reached the target"
    );
    assert!(t.seen.lock().unwrap().iter().all(|s| s.body_len <= 3));
}
