//! Differential test of the two HTTP/1 stacks (issue 20): a corpus of raw
//! requests — framing, line endings, request targets, Host forms, trailers,
//! upgrades, CONNECT, header oddities, pipelining — is sent to an edgelb with
//! the fast path on (`h1/`) and to one with it off (hyper's server and client
//! for everything). For every input both must answer the same statuses, in
//! the same order, and their targets must receive the same bytes.
//!
//! The bytes at the target are compared after four normalisations, each
//! for a difference that is not a behaviour: header names in lower case (the
//! fast path keeps the client's case, as nginx and HAProxy do; hyper writes
//! lower case), the generated `X-Request-Id` value (random),
//! `X-Forwarded-Port` (each edgelb listens on its own port), and the place of
//! the `X-Forwarded-*` lines (hyper's header map rewrites a client's
//! `X-Forwarded-Proto` where it stood, the fast path writes its own at the
//! end; the order of fields of different names carries no meaning).
//!
//! Every input carries an `X-Case: N` header right after its request line,
//! so that requests at the targets can be told apart while cases run side by
//! side.

mod common;

use common::raw_target::RawTarget;
use common::{Edgelb, listen_addr};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One input: a name for the report, and the request line and the rest
/// (the `X-Case` line goes between them).
struct Case {
    name: String,
    line: String,
    rest: Vec<u8>,
}

fn case(name: impl Into<String>, line: &str, rest: &[u8]) -> Case {
    Case {
        name: name.into(),
        line: line.to_owned(),
        rest: rest.to_vec(),
    }
}

/// The corpus: well over 200 inputs.
fn corpus() -> Vec<Case> {
    let mut c = Vec::new();
    // Request targets.
    for target in [
        "/",
        "/a/b?c=d",
        "/a/../b",
        "/a/./b/",
        "/%2e%2e/etc",
        "//double/slash",
        "/a?b=c&d=%20",
        "/a;param=1",
        "/~user/_x-y.z",
        "/a%00b",
        "/a#frag",
        "/a\\b",
        "/a|b",
        "/a{b}",
        "/\"q\"",
        "/caf\u{e9}",
        "http://x/abs",
        "http://X/abs?q",
        "http://x:80/abs",
        "http://other.example/abs",
        "https://x/abs",
        "x.example:443",
        "*",
        "abc",
        "?q",
        "",
    ] {
        c.push(case(
            format!("target {target:?}"),
            &format!("GET {target} HTTP/1.1"),
            b"Host: x\r\n\r\n",
        ));
    }
    c.push(case(
        "target 9000 bytes",
        &format!("GET /{} HTTP/1.1", "a".repeat(9000)),
        b"Host: x\r\n\r\n",
    ));
    // Methods.
    for method in [
        "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT", "PRI",
        "get", "FOO", "M-SEARCH", "G@T",
    ] {
        c.push(case(
            format!("method {method}"),
            &format!("{method} /m HTTP/1.1"),
            b"Host: x\r\nContent-Length: 0\r\n\r\n",
        ));
    }
    c.push(case(
        "CONNECT authority",
        "CONNECT x.example:443 HTTP/1.1",
        b"Host: x.example:443\r\n\r\n",
    ));
    // Versions.
    for version in [
        "HTTP/1.1",
        "HTTP/1.0",
        "HTTP/2.0",
        "HTTP/0.9",
        "HTTP/1.2",
        "http/1.1",
        "HTTP/1.1 ",
        "HTTP/11",
        "HTTP/3",
    ] {
        c.push(case(
            format!("version {version:?}"),
            &format!("GET /v {version}"),
            b"Host: x\r\n\r\n",
        ));
    }
    c.push(case("HTTP/1.0 without Host", "GET /v HTTP/1.0", b"\r\n"));
    c.push(case(
        "HTTP/1.0 keep-alive",
        "GET /v HTTP/1.0",
        b"Host: x\r\nConnection: keep-alive\r\n\r\n",
    ));
    // Host forms.
    for host in [
        None,
        Some("x"),
        Some("X.Example"),
        Some("x:80"),
        Some("x:8080"),
        Some("127.0.0.1"),
        Some("[::1]:80"),
        Some("[::1]"),
        Some(""),
        Some(" x"),
        Some("x "),
        Some("\tx"),
        Some("x y"),
        Some("a/b"),
        Some("a@b"),
        Some("x:99999"),
        Some("x:abc"),
        Some("x:"),
        Some("xn--bcher-kva.example"),
        Some("_x.example"),
        Some("x..y"),
    ] {
        let rest = match host {
            None => "\r\n".to_owned(),
            Some(h) => format!("Host: {h}\r\n\r\n"),
        };
        c.push(case(
            format!("host {host:?}"),
            "GET /h HTTP/1.1",
            rest.as_bytes(),
        ));
    }
    c.push(case(
        "two hosts",
        "GET /h HTTP/1.1",
        b"Host: x\r\nHost: y\r\n\r\n",
    ));
    c.push(case(
        "two equal hosts",
        "GET /h HTTP/1.1",
        b"Host: x\r\nHost: x\r\n\r\n",
    ));
    c.push(case("host no space", "GET /h HTTP/1.1", b"Host:x\r\n\r\n"));
    c.push(case("host tab", "GET /h HTTP/1.1", b"Host:\tx\r\n\r\n"));
    c.push(case(
        "host lower name",
        "GET /h HTTP/1.1",
        b"host: x\r\n\r\n",
    ));
    // Content-Length forms.
    for (name, cl, body) in [
        ("cl 0", "0", ""),
        ("cl 5", "5", "hello"),
        ("cl +5", "+5", "hello"),
        ("cl 05", "05", "hello"),
        ("cl spaces", " 5 ", "hello"),
        ("cl 5,5", "5,5", "hello"),
        ("cl 5, 6", "5, 6", "hello!"),
        ("cl -1", "-1", ""),
        ("cl hex", "0x5", "hello"),
        ("cl huge", "99999999999999999999999", ""),
        ("cl empty", "", ""),
        ("cl short body", "10", "hello"),
        ("cl long body", "3", "hello"),
    ] {
        c.push(case(
            name,
            "POST /cl HTTP/1.1",
            format!("Host: x\r\nContent-Length: {cl}\r\n\r\n{body}").as_bytes(),
        ));
    }
    c.push(case(
        "cl twice equal",
        "POST /cl HTTP/1.1",
        b"Host: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
    ));
    c.push(case(
        "cl twice differ",
        "POST /cl HTTP/1.1",
        b"Host: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    ));
    c.push(case(
        "cl on GET",
        "GET /cl HTTP/1.1",
        b"Host: x\r\nContent-Length: 5\r\n\r\nhello",
    ));
    c.push(case(
        "cl on HEAD",
        "HEAD /cl HTTP/1.1",
        b"Host: x\r\nContent-Length: 5\r\n\r\nhello",
    ));
    // Transfer-Encoding forms.
    for (name, te, body) in [
        ("te chunked", "chunked", "5\r\nhello\r\n0\r\n\r\n"),
        ("te Chunked", "Chunked", "5\r\nhello\r\n0\r\n\r\n"),
        ("te CHUNKED", "CHUNKED", "5\r\nhello\r\n0\r\n\r\n"),
        (
            "te chunked twice",
            "chunked, chunked",
            "5\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "te gzip chunked",
            "gzip, chunked",
            "5\r\nhello\r\n0\r\n\r\n",
        ),
        ("te gzip", "gzip", "hello"),
        ("te identity", "identity", "hello"),
        (
            "te chunked identity",
            "chunked, identity",
            "5\r\nhello\r\n0\r\n\r\n",
        ),
        ("te xchunked", "xchunked", "5\r\nhello\r\n0\r\n\r\n"),
        ("te chunked space", " chunked ", "5\r\nhello\r\n0\r\n\r\n"),
        ("te empty", "", "5\r\nhello\r\n0\r\n\r\n"),
        ("chunk ext", "chunked", "5;a=b\r\nhello\r\n0\r\n\r\n"),
        (
            "chunk ext quoted",
            "chunked",
            "5;a=\"b c\"\r\nhello\r\n0\r\n\r\n",
        ),
        ("chunk upper hex", "chunked", "A\r\n0123456789\r\n0\r\n\r\n"),
        (
            "chunk leading zeros",
            "chunked",
            "0005\r\nhello\r\n0\r\n\r\n",
        ),
        ("chunk 0x", "chunked", "0x5\r\nhello\r\n0\r\n\r\n"),
        (
            "chunk space before size",
            "chunked",
            " 5\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "chunk space after size",
            "chunked",
            "5 \r\nhello\r\n0\r\n\r\n",
        ),
        ("chunk negative", "chunked", "-5\r\nhello\r\n0\r\n\r\n"),
        (
            "chunk huge",
            "chunked",
            "ffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
        ),
        ("chunk size too small", "chunked", "3\r\nhello\r\n0\r\n\r\n"),
        ("chunk size too large", "chunked", "7\r\nhello\r\n0\r\n\r\n"),
        ("chunk data no crlf", "chunked", "5\r\nhello0\r\n\r\n"),
        ("chunk bare lf size", "chunked", "5\nhello\r\n0\r\n\r\n"),
        ("chunk bare lf data", "chunked", "5\r\nhello\n0\r\n\r\n"),
        ("chunk bare lf last", "chunked", "5\r\nhello\r\n0\n\r\n"),
        ("chunk bare cr", "chunked", "5\rhello\r\n0\r\n\r\n"),
        ("trailer", "chunked", "5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"),
        (
            "two trailers",
            "chunked",
            "5\r\nhello\r\n0\r\nX-T: 1\r\nX-U: 2\r\n\r\n",
        ),
        ("trailer bare lf", "chunked", "0\r\nX: a\n\n"),
        ("trailer bare lf end", "chunked", "0\r\nX: a\r\n\n"),
        ("trailer obs-fold", "chunked", "0\r\nX: a\r\n b\r\n\r\n"),
        ("trailer no colon", "chunked", "0\r\nnocolon\r\n\r\n"),
        (
            "trailer content-length",
            "chunked",
            "0\r\nContent-Length: 5\r\n\r\n",
        ),
        ("empty chunked", "chunked", "0\r\n\r\n"),
        ("chunked missing last", "chunked", "5\r\nhello\r\n"),
    ] {
        c.push(case(
            name,
            "POST /te HTTP/1.1",
            format!("Host: x\r\nTransfer-Encoding: {te}\r\n\r\n{body}").as_bytes(),
        ));
    }
    c.push(case("te twice", "POST /te HTTP/1.1", b"Host: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"));
    c.push(case(
        "te and cl",
        "POST /te HTTP/1.1",
        b"Host: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ));
    c.push(case(
        "cl and te",
        "POST /te HTTP/1.1",
        b"Host: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
    ));
    c.push(case(
        "te on GET",
        "GET /te HTTP/1.1",
        b"Host: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ));
    c.push(case(
        "te on HTTP/1.0",
        "POST /te HTTP/1.0",
        b"Host: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ));
    c.push(case(
        "te space before colon",
        "POST /te HTTP/1.1",
        b"Host: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
    ));
    // Line endings.
    c.push(case("bare lf head", "GET /lf HTTP/1.1", b"Host: x\n\n"));
    c.push(case(
        "mixed line ends",
        "GET /lf HTTP/1.1",
        b"Host: x\n\r\n",
    ));
    c.push(case(
        "bare cr head",
        "GET /lf HTTP/1.1",
        b"Host: x\r\r\n\r\n",
    ));
    c.push(case(
        "cr in value",
        "GET /lf HTTP/1.1",
        b"Host: x\r\nX-A: a\rb\r\n\r\n",
    ));
    c.push(case(
        "lf lf cl body",
        "POST /lf HTTP/1.1",
        b"Host: x\nContent-Length: 2\n\nhi",
    ));
    c.push(case(
        "leading empty lines",
        "GET /lf HTTP/1.1",
        b"Host: x\r\n\r\n",
    ));
    // Header oddities.
    for (name, header) in [
        ("underscore name", "X_Forwarded_For: 1.2.3.4"),
        ("underscore request id", "x_request_id: mine"),
        ("underscore other", "X_Custom: 1"),
        ("space before colon", "X-A : 1"),
        ("empty name", ": x"),
        ("empty value", "X-A:"),
        ("value spaces", "X-A:    padded    "),
        ("value tab", "X-A:\tt"),
        ("nul in value", "X-A: a\0b"),
        ("del in value", "X-A: a\x7fb"),
        ("obs text", "X-A: caf\u{e9}"),
        ("obs fold", "X-A: a\r\n b"),
        ("name with space", "X A: 1"),
        ("name with slash", "X/A: 1"),
        (
            "long value",
            "X-A: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ),
        ("connection close", "Connection: close"),
        ("connection keep-alive", "Connection: keep-alive"),
        ("connection names a header", "Connection: X-Hop\r\nX-Hop: 1"),
        ("connection names host", "Connection: Host"),
        ("proxy-connection", "Proxy-Connection: keep-alive"),
        ("keep-alive header", "Keep-Alive: timeout=5"),
        ("te trailers", "TE: trailers"),
        ("te gzip header", "TE: gzip"),
        ("trailer header", "Trailer: X-T"),
        ("upgrade without connection", "Upgrade: websocket"),
        (
            "upgrade h2c",
            "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__",
        ),
        (
            "upgrade foo answered 200",
            "Connection: upgrade\r\nUpgrade: foo/1",
        ),
        ("expect 100", "Expect: 100-continue"),
        ("expect other", "Expect: something"),
        ("x-forwarded-for sent", "X-Forwarded-For: 10.1.1.1"),
        (
            "x-forwarded-for twice",
            "X-Forwarded-For: 10.1.1.1\r\nX-Forwarded-For: 10.2.2.2",
        ),
        ("x-request-id sent", "X-Request-Id: abc"),
        ("x-forwarded-proto sent", "X-Forwarded-Proto: https"),
        ("cookie", "Cookie: a=b; c=d"),
        ("content-length spaced name", "Content-Length : 0"),
        ("max-forwards", "Max-Forwards: 0"),
    ] {
        c.push(case(
            name,
            "GET /hdr HTTP/1.1",
            format!("Host: x\r\n{header}\r\n\r\n").as_bytes(),
        ));
    }
    c.push(case(
        "many headers",
        "GET /many HTTP/1.1",
        format!(
            "Host: x\r\n{}\r\n",
            (0..90)
                .map(|i| format!("X-H{i}: {i}\r\n"))
                .collect::<String>()
        )
        .as_bytes(),
    ));
    c.push(case(
        "too many headers",
        "GET /many HTTP/1.1",
        format!(
            "Host: x\r\n{}\r\n",
            (0..120)
                .map(|i| format!("X-H{i}: {i}\r\n"))
                .collect::<String>()
        )
        .as_bytes(),
    ));
    c.push(case(
        "head too large",
        "GET /big HTTP/1.1",
        format!("Host: x\r\nX-Big: {}\r\n\r\n", "b".repeat(70_000)).as_bytes(),
    ));
    // Bodies of other methods.
    for method in ["PUT", "PATCH", "DELETE", "OPTIONS"] {
        c.push(case(
            format!("{method} cl"),
            &format!("{method} /b HTTP/1.1"),
            b"Host: x\r\nContent-Length: 3\r\n\r\nabc",
        ));
        c.push(case(
            format!("{method} chunked"),
            &format!("{method} /b HTTP/1.1"),
            b"Host: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        ));
    }
    c.push(case(
        "post no length",
        "POST /b HTTP/1.1",
        b"Host: x\r\n\r\n",
    ));
    c.push(case(
        "expect with body",
        "POST /b HTTP/1.1",
        b"Host: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
    ));
    // Pipelining (the X-Case line goes into the first request; the rest carry none).
    c.push(case(
        "pipelined gets",
        "GET /p1 HTTP/1.1",
        b"Host: x\r\n\r\nGET /p2 HTTP/1.1\r\nX-Case: #\r\nHost: x\r\n\r\n",
    ));
    c.push(case(
        "pipelined post get",
        "POST /p1 HTTP/1.1",
        b"Host: x\r\nContent-Length: 2\r\n\r\nhiGET /p2 HTTP/1.1\r\nX-Case: #\r\nHost: x\r\n\r\n",
    ));
    c.push(case("pipelined chunked get", "POST /p1 HTTP/1.1", b"Host: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\nGET /p2 HTTP/1.1\r\nX-Case: #\r\nHost: x\r\n\r\n"));
    c.push(case(
        "pipelined after close",
        "GET /p1 HTTP/1.1",
        b"Host: x\r\nConnection: close\r\n\r\nGET /p2 HTTP/1.1\r\nX-Case: #\r\nHost: x\r\n\r\n",
    ));
    c.push(case("pipelined then smuggle", "GET /p1 HTTP/1.1", b"Host: x\r\n\r\nPOST /p2 HTTP/1.1\r\nX-Case: #\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"));
    c.push(case(
        "pipelined bad second",
        "GET /p1 HTTP/1.1",
        b"Host: x\r\n\r\nGARBAGE\r\n\r\n",
    ));
    c.push(case(
        "pipelined connect second",
        "GET /p1 HTTP/1.1",
        b"Host: x\r\n\r\nCONNECT x:1 HTTP/1.1\r\nHost: x:1\r\n\r\n",
    ));
    c.push(case(
        "pipelined preface second",
        "GET /p1 HTTP/1.1",
        b"Host: x\r\n\r\nPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    ));
    c.push(case("pipelined upgrade then smuggle", "GET /p1 HTTP/1.1", b"Host: x\r\nUpgrade: websocket\r\n\r\nPOST /p2 HTTP/1.1\r\nX-Case: #\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx"));
    c.push(case("pipelined bare lf trailer", "POST /p1 HTTP/1.1", b"Host: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: a\n\nGET /p2 HTTP/1.1\r\nX-Case: #\r\nHost: x\r\n\r\n"));
    // Garbage.
    c.push(case("garbage line", "GARBAGE", b"\r\n\r\n"));
    c.push(case("only spaces", "   ", b"\r\n\r\n"));
    c.push(case("tls hello", "\x16\x03\x01\x00\x05", b"hello"));
    c.push(case(
        "two spaces in line",
        "GET  /x HTTP/1.1",
        b"Host: x\r\n\r\n",
    ));
    c.push(case("tab in line", "GET\t/x HTTP/1.1", b"Host: x\r\n\r\n"));
    c.push(case("no version", "GET /x", b"Host: x\r\n\r\n"));
    c.push(case("nul in line", "GET /\0 HTTP/1.1", b"Host: x\r\n\r\n"));
    c
}

/// What one input got from one edgelb.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    /// The statuses of the HTTP/1.1 responses, in order.
    statuses: Vec<u16>,
    /// Bytes that were not an HTTP/1.1 response (an HTTP/2 frame, say).
    other_bytes: usize,
    /// edgelb closed the connection (rather than waiting for more).
    closed: bool,
    at_target: Vec<String>,
}

/// The responses in `answer`, read one after another by their framing:
/// their statuses, and how many bytes were left that were none.
fn responses(answer: &[u8]) -> (Vec<u16>, usize) {
    let mut statuses = Vec::new();
    let mut at = 0;
    while at < answer.len() {
        let mut slots = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut slots);
        let Ok(httparse::Status::Complete(head)) = resp.parse(&answer[at..]) else {
            break;
        };
        let status = resp.code.unwrap_or(0);
        let header = |name: &str| {
            resp.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
        };
        let body = if (100..200).contains(&status) || status == 204 || status == 304 {
            Some(0)
        } else if header("transfer-encoding").as_deref() == Some("chunked") {
            // The same chunked framing as a request's, behind a made-up head.
            let prefix: &[u8] = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
            common::raw_target::request_len(&[prefix, &answer[at + head..]].concat())
                .map(|n| n - prefix.len())
        } else {
            header("content-length").and_then(|l| l.parse::<usize>().ok())
        };
        let Some(body) = body else {
            break;
        };
        statuses.push(status);
        at = (at + head + body).min(answer.len());
    }
    (statuses, answer.len() - at)
}

/// A request as the target got it, less what may differ without a
/// behaviour differing (see the module doc).
fn normalise(request: &[u8]) -> String {
    let text = String::from_utf8_lossy(request);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.split("\r\n");
    let mut out = vec![lines.next().unwrap_or("").to_owned()];
    let mut forwarded = Vec::new();
    for line in lines {
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        let name = name.to_ascii_lowercase();
        let value = match name.as_str() {
            "x-request-id" if value.trim().len() == 32 => " <generated>",
            "x-forwarded-port" => " <port>",
            _ => value,
        };
        let line = format!("{name}:{value}");
        // The X-Forwarded-* fields edgelb writes: one of each, wherever the
        // stack put it (a field's position among others of other names
        // carries no meaning, RFC 9110 §5.3).
        if name.starts_with("x-forwarded-") {
            forwarded.push(line);
        } else {
            out.push(line);
        }
    }
    forwarded.sort();
    out.extend(forwarded);
    format!("{}\r\n\r\n{body}", out.join("\r\n"))
}

/// Sends `bytes` on a new connection; what came back until the connection
/// closed or went quiet, and whether it closed.
async fn send(addr: SocketAddr, bytes: &[u8]) -> (Vec<u8>, bool) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(bytes).await;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 16384];
    // Bounded: 3 s in all; 300 ms of quiet once something came.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let quiet = if out.is_empty() {
            Duration::from_millis(1500)
        } else {
            Duration::from_millis(300)
        };
        let wait = quiet.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
        match tokio::time::timeout(wait, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            Ok(_) => return (out, true),
            Err(_) => return (out, false),
        }
    }
}

fn config(listen: SocketAddr, target: SocketAddr) -> String {
    format!(
        r#"[admin]
bind = "ADMIN"

[[listeners]]
name = "front"
protocol = "http"
bind = "{listen}"
default_action = {{ forward = "web" }}

[[target_groups]]
name = "web"
protocol = "http"
targets = [ {{ address = "{target}" }} ]

[target_groups.health_check]
interval = "30s"
"#
    )
}

/// The case number in a request at the target.
fn case_of(request: &[u8]) -> Option<usize> {
    let text = String::from_utf8_lossy(request);
    let at = text.to_ascii_lowercase().find("x-case: ")?;
    text[at + 8..].split("\r\n").next()?.trim().parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_http1_stacks_answer_every_input_alike() {
    let cases = corpus();
    assert!(cases.len() >= 200, "the corpus has {} inputs", cases.len());
    let (fast_target, hyper_target) = (RawTarget::start().await, RawTarget::start().await);
    let (fast_listen, hyper_listen) = (listen_addr(), listen_addr());
    let _fast = Edgelb::start_dispatch(&config(fast_listen, fast_target.addr), true).await;
    let _hyper = Edgelb::start_dispatch(&config(hyper_listen, hyper_target.addr), false).await;
    let inputs: Vec<Vec<u8>> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut b = format!("{}\r\nX-Case: {i}\r\n", c.line).into_bytes();
            let rest =
                String::from_utf8_lossy(&c.rest).replace("X-Case: #", &format!("X-Case: {i}"));
            if rest.as_bytes() == c.rest.as_slice() {
                b.extend_from_slice(&c.rest);
            } else {
                b.extend_from_slice(rest.as_bytes());
            }
            b
        })
        .collect();
    // Sixteen inputs at a time, each to both.
    let mut answers = vec![((Vec::new(), false), (Vec::new(), false)); inputs.len()];
    for (batch, chunk) in inputs.chunks(16).enumerate() {
        let runs = chunk.iter().map(|bytes| async move {
            tokio::join!(send(fast_listen, bytes), send(hyper_listen, bytes))
        });
        for (i, got) in futures_join(runs).await.into_iter().enumerate() {
            answers[batch * 16 + i] = got;
        }
    }
    // What reached each target, by case.
    let by_case = |target: &RawTarget| {
        // Requests whose X-Case line did not survive go under `usize::MAX`.
        let mut m: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        for r in target.requests() {
            let case = case_of(&r).unwrap_or(usize::MAX);
            m.entry(case).or_default().push(normalise(&r));
        }
        for list in m.values_mut() {
            // Pipelined requests of one case arrive in order; cases side by side do not matter.
            list.sort_by_key(|r| r.split(' ').nth(1).map(str::to_owned));
        }
        m
    };
    let (fast_seen, hyper_seen) = (by_case(&fast_target), by_case(&hyper_target));
    let mut differ = Vec::new();
    assert_eq!(
        fast_seen.get(&usize::MAX),
        hyper_seen.get(&usize::MAX),
        "requests without their case's X-Case line"
    );
    for (i, c) in cases.iter().enumerate() {
        let outcome = |(bytes, closed): &(Vec<u8>, bool), seen: &BTreeMap<usize, Vec<String>>| {
            let (statuses, other_bytes) = responses(bytes);
            Outcome {
                statuses,
                other_bytes,
                closed: *closed,
                at_target: seen.get(&i).cloned().unwrap_or_default(),
            }
        };
        let fast = outcome(&answers[i].0, &fast_seen);
        let hyper = outcome(&answers[i].1, &hyper_seen);
        if fast != hyper {
            differ.push(format!(
                "#{i} {}:\n  fast path: {fast:?}\n  hyper:     {hyper:?}",
                c.name
            ));
        }
        // edgelb answers HTTP/1 inputs in HTTP/1 (or closes): nothing else.
        assert_eq!(
            fast.other_bytes,
            0,
            "#{i} {}: bytes that are no HTTP/1.1 response: {:?}",
            c.name,
            String::from_utf8_lossy(&answers[i].0.0)
        );
    }
    assert!(
        differ.is_empty(),
        "{} of {} inputs answered differently:\n{}",
        differ.len(),
        cases.len(),
        differ.join("\n")
    );
}

/// Runs futures side by side, keeping their order.
async fn futures_join<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let handles: Vec<_> = futures.map(Box::pin).collect();
    let mut out = Vec::with_capacity(handles.len());
    let mut pending: Vec<_> = handles.into_iter().map(Some).collect();
    let mut results: Vec<Option<F::Output>> = (0..pending.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all = true;
        for (i, slot) in pending.iter_mut().enumerate() {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        results[i] = Some(v);
                        *slot = None;
                    }
                    std::task::Poll::Pending => all = false,
                }
            }
        }
        if all {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    for r in results {
        out.push(r.expect("every future finished"));
    }
    out
}
