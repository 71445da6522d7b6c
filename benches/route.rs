//! Hot-path micro-benchmark of routing: a request head matched against 100 rules
//! of mixed host, path and header conditions, and 1,000 rules against 1.

use criterion::{Criterion, criterion_group, criterion_main};
use edgelb::config::{Conditions as ConditionsConfig, FixedResponse};
use edgelb::route::conditions::Conditions;
use edgelb::route::{CompiledRule, FixedAction, RequestView, RouteAction, RuleTable};
use std::hint::black_box;
use std::net::IpAddr;

fn fixed(status: u16) -> RouteAction<()> {
    RouteAction::Fixed(FixedAction::compile(&FixedResponse {
        status,
        content_type: "text/plain".into(),
        body: String::new(),
    }))
}

fn table(n: u32) -> RuleTable<()> {
    let rules = (0..n)
        .map(|i| {
            let mut c = ConditionsConfig::default();
            match i % 3 {
                0 => c.host = Some(vec![format!("svc{i}.example.com")]),
                1 => c.path = Some(vec![format!("/api/v{i}/*")]),
                _ => {
                    c.path = Some(vec![format!("/static{i}/*.css")]);
                    c.headers = vec![("x-tenant".into(), vec![format!("t{i}-*")])];
                }
            }
            CompiledRule {
                priority: i + 1,
                conditions: Conditions::compile(&c),
                action: fixed(200),
            }
        })
        .collect();
    RuleTable::new(rules, fixed(404))
}

fn bench_route(c: &mut Criterion) {
    let table = table(100);
    let ip: IpAddr = "192.0.2.1".parse().unwrap();
    let cases = [
        (
            "host_hit",
            http::Request::get("/")
                .header("host", "svc63.example.com")
                .body(())
                .unwrap(),
        ),
        (
            "path_hit_late",
            http::Request::get("/api/v97/users")
                .header("host", "www.example.com")
                .body(())
                .unwrap(),
        ),
        (
            "default_no_match",
            http::Request::get("/nothing/here")
                .header("host", "www.example.com")
                .header("x-tenant", "zz")
                .body(())
                .unwrap(),
        ),
    ];
    for (name, req) in cases {
        let (parts, _) = req.into_parts();
        c.bench_function(&format!("route_100_rules/{name}"), |b| {
            b.iter(|| {
                let view = RequestView::new(black_box(&parts), ip);
                black_box(table.select(&view).priority)
            })
        });
    }
    // The load test's routing row: 1,000 rules, none matching, against 1 rule.
    for n in [1, 1000] {
        let rules = self::table(n);
        let (parts, _) = http::Request::get("/")
            .header("host", "www.example.com")
            .body(())
            .unwrap()
            .into_parts();
        c.bench_function(&format!("route_{n}_rules/default"), |b| {
            b.iter(|| {
                let view = RequestView::new(black_box(&parts), ip);
                black_box(rules.select(&view).priority)
            })
        });
    }
}

criterion_group!(benches, bench_route);
criterion_main!(benches);
