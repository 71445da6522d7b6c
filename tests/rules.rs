//! Listener rules through the real listener: each condition, priority order,
//! default action, weighted forwards, group stickiness, redirects, fixed responses.

mod common;

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::Full;
use std::net::SocketAddr;

struct Setup {
    listen: SocketAddr,
    _lb: Edgelb,
    _targets: Vec<TestTarget>,
}

/// Groups `a`, `b`, `c` (one target each, answering its group's name) behind a
/// listener with `rules` and default action forward to `a`.
async fn setup(rules: &str) -> Setup {
    let mut targets = Vec::new();
    let mut groups = String::new();
    for name in ["a", "b", "c"] {
        let t = TestTarget::start(name).await;
        groups.push_str(&format!("\n[[target_groups]]\nname = \"{name}\"\nprotocol = \"http\"\ntargets = [ {{ address = \"{}\" }} ]\n", t.addr));
        targets.push(t);
    }
    let listen = listen_addr();
    let config = format!(
        "[admin]\nbind = \"ADMIN\"\n\n[[listeners]]\nname = \"front\"\nprotocol = \"http\"\nbind = \"{listen}\"\ndefault_action = {{ forward = \"a\" }}\n{rules}\n{groups}"
    );
    let lb = Edgelb::start(&config).await;
    Setup {
        listen,
        _lb: lb,
        _targets: targets,
    }
}

async fn send(listen: SocketAddr, req: http::request::Builder) -> Got {
    H1::connect(listen)
        .await
        .send(req.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap()
}

fn rule(priority: u32, conditions: &str, action: &str) -> String {
    format!(
        "\n[[listeners.rules]]\npriority = {priority}\nconditions = {{ {conditions} }}\naction = {action}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_conditions_and_default() {
    let s = setup(
        &(rule(10, "host = [\"api.example.com\"]", "{ forward = \"b\" }")
            + &rule(20, "host = [\"*.img.example.com\"]", "{ forward = \"c\" }")),
    )
    .await;
    let host = |h: &str| Request::get("/").header("host", h);
    assert_eq!(
        send(s.listen, host("API.example.com:8080")).await.text(),
        "b"
    );
    assert_eq!(send(s.listen, host("x.img.example.com")).await.text(), "c");
    assert_eq!(send(s.listen, host("other.example.com")).await.text(), "a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_method_header_query_conditions() {
    let s = setup(
        &(rule(10, "path = [\"/api/*\"]", "{ forward = \"b\" }")
            + &rule(20, "method = [\"DELETE\"]", "{ forward = \"c\" }")
            + &rule(
                30,
                "headers = { \"x-canary\" = [\"on\", \"y*\"] }",
                "{ forward = \"c\" }",
            )
            + &rule(40, "query = { \"version\" = \"2\" }", "{ forward = \"b\" }")),
    )
    .await;
    let get = |p: &str| Request::get(p).header("host", "h");
    assert_eq!(send(s.listen, get("/api/users?x=1")).await.text(), "b");
    assert_eq!(
        send(s.listen, get("/API/users")).await.text(),
        "a",
        "paths are case-sensitive"
    );
    assert_eq!(
        send(s.listen, get("/other/../api/x")).await.text(),
        "b",
        "dot-segments are removed before matching"
    );
    assert_eq!(
        send(s.listen, Request::delete("/x").header("host", "h"))
            .await
            .text(),
        "c"
    );
    assert_eq!(
        send(s.listen, get("/x").header("X-Canary", "YES"))
            .await
            .text(),
        "c"
    );
    assert_eq!(
        send(s.listen, get("/x").header("x-canary", "off"))
            .await
            .text(),
        "a"
    );
    assert_eq!(send(s.listen, get("/x?a=1&version=2")).await.text(), "b");
    assert_eq!(send(s.listen, get("/x?version=3")).await.text(), "a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_ip_uses_the_tcp_peer_not_forwarded_for() {
    let s = setup(
        &(rule(10, "source_ip = [\"127.0.0.0/8\"]", "{ forward = \"b\" }")
            + &rule(
                20,
                "source_ip = [\"10.0.0.0/8\", \"::1/128\"]",
                "{ forward = \"c\" }",
            )),
    )
    .await;
    assert_eq!(
        send(s.listen, Request::get("/").header("host", "h"))
            .await
            .text(),
        "b"
    );
    let spoofed = Request::get("/")
        .header("host", "h")
        .header("x-forwarded-for", "10.1.1.1");
    assert_eq!(send(s.listen, spoofed).await.text(), "b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lowest_priority_wins_whatever_the_file_order() {
    let s = setup(
        &(rule(50, "path = [\"/x*\"]", "{ forward = \"c\" }")
            + &rule(5, "path = [\"/x/*\"]", "{ forward = \"b\" }")),
    )
    .await;
    assert_eq!(
        send(s.listen, Request::get("/x/1").header("host", "h"))
            .await
            .text(),
        "b"
    );
    assert_eq!(
        send(s.listen, Request::get("/xy").header("host", "h"))
            .await
            .text(),
        "c"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_forward_splits_90_10_over_1000_requests() {
    let s = setup(&rule(1, "path = [\"/split\"]", "{ forward = { target_groups = [ { name = \"b\", weight = 90 }, { name = \"c\", weight = 10 } ] } }")).await;
    let mut client = H1::connect(s.listen).await;
    let (mut b, mut c) = (0, 0);
    for _ in 0..1000 {
        match client.get("/split").await.text().as_str() {
            "b" => b += 1,
            "c" => c += 1,
            other => panic!("unexpected {other}"),
        }
    }
    // Smooth WRR: exact over whole cycles of 100.
    assert_eq!((b, c), (900, 100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_stickiness_keeps_a_client_on_its_group() {
    let s = setup(&rule(1, "path = [\"/s\"]", "{ forward = { target_groups = [ { name = \"b\", weight = 1 }, { name = \"c\", weight = 1 } ], stickiness = \"1h\" } }")).await;
    let first = send(s.listen, Request::get("/s").header("host", "h")).await;
    let group = first.text();
    let set_cookie = first.headers["set-cookie"].to_str().unwrap().to_owned();
    assert!(set_cookie.starts_with("EDGELBTG="), "{set_cookie}");
    assert!(
        set_cookie.contains("; Path=/; Max-Age=3600; HttpOnly"),
        "{set_cookie}"
    );
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    for _ in 0..20 {
        let got = send(
            s.listen,
            Request::get("/s")
                .header("host", "h")
                .header("cookie", &cookie),
        )
        .await;
        assert_eq!(got.text(), group);
    }
    // Without the cookie, the split alternates.
    let mut seen = std::collections::HashSet::new();
    for _ in 0..4 {
        seen.insert(
            send(s.listen, Request::get("/s").header("host", "h"))
                .await
                .text(),
        );
    }
    assert_eq!(seen.len(), 2);
    // A forged or tampered cookie is ignored like an absent one, never an error.
    let mut forged = cookie.clone();
    forged.push('A');
    let got = send(
        s.listen,
        Request::get("/s")
            .header("host", "h")
            .header("cookie", forged),
    )
    .await;
    assert_eq!(got.status, StatusCode::OK);
    assert!(
        got.headers["set-cookie"]
            .to_str()
            .unwrap()
            .starts_with("EDGELBTG=")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_and_fixed_response_actions() {
    let s = setup(
        &(rule(1, "path = [\"/old/*\"]", "{ redirect = { protocol = \"https\", port = \"443\", path = \"/new/#{path}\", status = 301 } }")
            + &rule(2, "path = [\"/moved\"]", "{ redirect = { host = \"www.#{host}\", status = 302 } }")
            + &rule(3, "path = [\"/maintenance\"]", "{ fixed_response = { status = 503, content_type = \"text/plain\", body = \"down for maintenance\\n\" } }")),
    )
    .await;
    let got = send(
        s.listen,
        Request::get("/old/page?x=1").header("host", "example.com:8080"),
    )
    .await;
    assert_eq!(got.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        got.headers["location"],
        "https://example.com/new/old/page?x=1"
    );

    let got = send(
        s.listen,
        Request::get("/moved").header("host", "example.com"),
    )
    .await;
    assert_eq!(got.status, StatusCode::FOUND);
    assert_eq!(
        got.headers["location"],
        format!("http://www.example.com:{}/moved", s.listen.port()).as_str()
    );

    let got = send(s.listen, Request::get("/maintenance").header("host", "h")).await;
    assert_eq!(got.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(got.headers["content-type"], "text/plain");
    assert_eq!(got.text(), "down for maintenance\n");

    // A host that is no host cannot be put into a Location.
    let got = send(s.listen, Request::get("/moved").header("host", "bad host")).await;
    assert_eq!(got.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        s._lb
            .metric("edgelb_requests_total{listener=\"front\",target_group=\"\"}")
            .await,
        4.0
    );
    assert_eq!(s._lb.metric("edgelb_http_responses_total{class=\"3xx\",listener=\"front\",source=\"lb\",target_group=\"\"}").await, 2.0);
}
