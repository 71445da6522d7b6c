//! Hot-path micro-benchmark of stickiness cookies: sealing and opening.

use criterion::{Criterion, criterion_group, criterion_main};
use edgelb::balance::cookie::CookieKeys;
use std::hint::black_box;

fn bench_cookie(c: &mut Criterion) {
    let keys = CookieKeys::from_secrets(&[vec![7u8; 32]]);
    c.bench_function("cookie_seal", |b| {
        b.iter(|| {
            keys.seal(
                "EDGELB",
                b"web",
                black_box(b"10.0.1.10:8080"),
                2_000_000_000,
            )
        })
    });
    let sealed = keys.seal("EDGELB", b"web", b"10.0.1.10:8080", 2_000_000_000);
    c.bench_function("cookie_open", |b| {
        b.iter(|| {
            keys.open(
                "EDGELB",
                b"web",
                black_box(sealed.as_bytes()),
                1_000_000_000,
            )
        })
    });
    let rotated = CookieKeys::from_secrets(&[vec![8u8; 32], vec![7u8; 32]]);
    c.bench_function("cookie_open_second_key", |b| {
        b.iter(|| {
            rotated.open(
                "EDGELB",
                b"web",
                black_box(sealed.as_bytes()),
                1_000_000_000,
            )
        })
    });
}

criterion_group!(benches, bench_cookie);
criterion_main!(benches);
