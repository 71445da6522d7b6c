//! Hot-path micro-benchmark of header rewriting: a typical browser request
//! head made into the target's head, on the fast path (parsed in place,
//! written into a buffer) and on hyper's path (a parsed `Request` rewritten in
//! its header map); and a target's response head made into the client's.

use criterion::{Criterion, criterion_group, criterion_main};
use edgelb::proxy::headers::{ForwardedFor, TargetHead, prepare_request};
use edgelb::wire::request::{MAX_HEADERS, Parsed, parse};
use edgelb::wire::{response, rewrite};
use http::HeaderValue;
use std::hint::black_box;

const REQUEST: &[u8] = b"GET /shop/cart?item=42&ref=home HTTP/1.1\r\nHost: shop.example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:130.0) Gecko/20100101 Firefox/130.0\r\nAccept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\nAccept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\nConnection: keep-alive\r\nCookie: session=abc123; theme=dark\r\nUpgrade-Insecure-Requests: 1\r\nX-Forwarded-For: 203.0.113.9\r\n\r\n";

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Sun, 22 Nov 2026 10:00:00 GMT\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: 1024\r\nConnection: keep-alive\r\nCache-Control: no-cache\r\nETag: \"5f3c-1\"\r\n\r\n";

fn forwarded() -> ForwardedFor {
    ForwardedFor {
        client_ip: HeaderValue::from_static("192.0.2.7"),
        proto: HeaderValue::from_static("http"),
        port: HeaderValue::from_static("8080"),
    }
}

fn bench_headers(c: &mut Criterion) {
    let fwd = forwarded();
    let mut out = Vec::with_capacity(4096);
    c.bench_function("rewrite_request_head/fast_path", |b| {
        b.iter(|| {
            let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let Parsed::Complete(head) = parse(black_box(REQUEST), &mut slots, 65536) else {
                panic!("a fast-path head")
            };
            let line = rewrite::RequestLine {
                method: head.method.as_bytes(),
                target: head.target,
                host: None,
                identity: b"",
                extra: b"",
            };
            let lines = || head.headers.iter().map(|h| (h.name, h.value));
            rewrite::target_head(&mut out, &line, lines, &fwd);
            black_box(out.len())
        })
    });
    // hyper's path starts from what hyper parsed: a `Request` with a header map.
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut slots);
    parsed.parse(REQUEST).unwrap();
    let mut template = http::Request::builder()
        .method(parsed.method.unwrap())
        .uri(parsed.path.unwrap());
    for h in parsed.headers.iter() {
        template = template.header(h.name, h.value);
    }
    let template = template.body(()).unwrap();
    c.bench_function("rewrite_request_head/header_map", |b| {
        b.iter(|| {
            let mut req = template.clone();
            prepare_request(
                black_box(&mut req),
                &fwd,
                TargetHead::Http1 { upgrade: false },
                None,
            );
            black_box(req.headers().len())
        })
    });
    c.bench_function("rewrite_response_head/fast_path", |b| {
        b.iter(
            || match response::parse(black_box(RESPONSE), false, false, &mut out) {
                response::Parsed::Complete(h) => black_box(h.len),
                _ => panic!("a complete head"),
            },
        )
    });
}

criterion_group!(benches, bench_headers);
criterion_main!(benches);
