//! Targets from DNS (SPEC §12) through the real binary, against a real DNS
//! server on loopback UDP whose records the tests change while edgelb runs.

mod common;

use common::dns_server::{DnsServer, Mode};
use common::*;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

const FAST_CHECKS: &str = "[target_groups.health_check]\ninterval = \"1s\"\ntimeout = \"500ms\"\nhealthy_threshold = 2\nunhealthy_threshold = 2\npath = \"/health\"\n";

/// A config with one http listener forwarding to group `web`, whose targets
/// are `targets` (TOML), resolved by `dns`.
fn config(listen: SocketAddr, dns: &DnsServer, targets: &str, group_extra: &str) -> String {
    format!(
        r#"[global]
drain_timeout = "10s"
resolvers = ["{dns}"]

[admin]
bind = "ADMIN"

[[listeners]]
name = "front"
protocol = "http"
bind = "{listen}"
default_action = {{ forward = "web" }}

[[target_groups]]
name = "web"
protocol = "http"
deregistration_delay = "1s"
targets = [ {targets} ]
{group_extra}
{FAST_CHECKS}"#,
        dns = dns.addr,
    )
}

/// The group's targets in `/status`: address → (state, origin).
async fn targets(lb: &Edgelb) -> HashMap<String, (String, String)> {
    let status = lb.status_json().await;
    status["target_groups"][0]["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["address"].as_str().unwrap().to_owned(),
                (
                    t["state"].as_str().unwrap().to_owned(),
                    t["origin"].as_str().unwrap().to_owned(),
                ),
            )
        })
        .collect()
}

async fn wait_targets(
    lb: &Edgelb,
    what: &str,
    want: impl Fn(&HashMap<String, (String, String)>) -> bool,
) {
    wait_targets_for(lb, Duration::from_secs(15), what, want).await
}

async fn wait_targets_for(
    lb: &Edgelb,
    within: Duration,
    what: &str,
    want: impl Fn(&HashMap<String, (String, String)>) -> bool,
) {
    let mut last = HashMap::new();
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        last = targets(lb).await;
        if want(&last) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}: {last:?}\n{}", lb.log());
}

/// Which targets answer `n` requests (by the name each answers with).
async fn spread(listen: SocketAddr, n: usize) -> HashMap<String, usize> {
    let mut h1 = H1::connect(listen).await;
    let mut seen = HashMap::new();
    for _ in 0..n {
        let got = h1.get("/").await;
        assert_eq!(got.status, 200, "{}", got.text());
        *seen.entry(got.text()).or_default() += 1;
    }
    seen
}

fn state(t: &HashMap<String, (String, String)>, addr: SocketAddr) -> Option<&str> {
    t.get(&addr.to_string()).map(|(s, _)| s.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dns_name_s_addresses_come_and_go_as_its_records_do() {
    let dns = DnsServer::start(1).await;
    let port = free_port();
    let a: SocketAddr = format!("127.0.0.2:{port}").parse().unwrap();
    let b: SocketAddr = format!("127.0.0.3:{port}").parse().unwrap();
    let ta = TestTarget::start_on(a, "a").await;
    let tb = TestTarget::start_on(b, "b").await;
    dns.set_hosts("app.test", &["127.0.0.2"]);
    let listen = listen_addr();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("admin.token");
    std::fs::write(&token, "secret-token\n").unwrap();
    let config = config(
        listen,
        &dns,
        &format!("{{ dns = \"app.test\", port = {port}, weight = 2 }}"),
        "",
    )
    .replace(
        "bind = \"ADMIN\"",
        &format!("bind = \"ADMIN\"\ntoken_file = \"{}\"", token.display()),
    );
    let lb = Edgelb::start(&config).await;
    wait_targets(&lb, "a healthy", |t| state(t, a) == Some("healthy")).await;
    assert_eq!(targets(&lb).await[&a.to_string()].1, "dns:app.test");
    assert_eq!(
        spread(listen, 4).await,
        HashMap::from([("a".to_owned(), 4)])
    );

    // A second address: it starts initial, then takes its share.
    dns.set_hosts("app.test", &["127.0.0.2", "127.0.0.3"]);
    wait_targets(&lb, "b added", |t| state(t, b).is_some()).await;
    wait_targets(&lb, "b healthy", |t| state(t, b) == Some("healthy")).await;
    assert_eq!(
        state(&targets(&lb).await, a),
        Some("healthy"),
        "a kept its health"
    );
    let seen = spread(listen, 10).await;
    assert_eq!((seen["a"], seen["b"]), (5, 5), "{seen:?}");

    // A target registered through the API sits beside the DNS ones.
    let c: SocketAddr = format!("127.0.0.4:{port}").parse().unwrap();
    let _tc = TestTarget::start_on(c, "c").await;
    let register = http::Request::post("/target-groups/web/targets")
        .header("host", "admin")
        .header("authorization", "Bearer secret-token")
        .body(http_body_util::Full::new(bytes::Bytes::from(format!(
            "{{\"address\": \"{c}\", \"weight\": 1}}"
        ))))
        .unwrap();
    let got = H1::connect(lb.admin).await.send(register).await.unwrap();
    assert!(got.status.is_success(), "{} {}", got.status, got.text());
    wait_targets(&lb, "c registered", |t| {
        t.get(&c.to_string()).is_some_and(|(_, o)| o == "api")
    })
    .await;

    // The first address goes from DNS: it drains, then leaves; b stays.
    dns.set_hosts("app.test", &["127.0.0.3"]);
    wait_targets(&lb, "a gone", |t| state(t, a).is_none()).await;
    assert_eq!(state(&targets(&lb).await, b), Some("healthy"));
    assert!(ta.requests() > 0 && tb.requests() > 0);
    let seen = spread(listen, 6).await;
    assert!(!seen.contains_key("a"), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_weights_split_traffic_and_priorities_fail_over_and_back() {
    let dns = DnsServer::start(1).await;
    let port = free_port();
    let addr = |host: &str| -> SocketAddr { format!("{host}:{port}").parse().unwrap() };
    let one = TestTarget::start_on(addr("127.0.0.5"), "one").await;
    let two = TestTarget::start_on(addr("127.0.0.6"), "two").await;
    let _backup = TestTarget::start_on(addr("127.0.0.7"), "backup").await;
    dns.set_hosts("one.test", &["127.0.0.5"]);
    dns.set_hosts("two.test", &["127.0.0.6"]);
    dns.set_hosts("backup.test", &["127.0.0.7"]);
    dns.set_srv(
        "_http._tcp.web.test",
        &[
            (10, 3, port, "one.test"),
            (10, 1, port, "two.test"),
            (20, 5, port, "backup.test"),
        ],
    );
    let listen = listen_addr();
    let lb = Edgelb::start(&config(
        listen,
        &dns,
        "{ srv = \"_http._tcp.web.test\" }",
        "",
    ))
    .await;
    wait_targets(&lb, "all three healthy", |t| {
        t.len() == 3
            && t.values()
                .all(|(s, o)| s == "healthy" && o == "srv:_http._tcp.web.test")
    })
    .await;
    // Weights 3:1 within the first priority; the second gets nothing.
    let seen = spread(listen, 40).await;
    assert_eq!(
        (seen.get("one"), seen.get("two"), seen.get("backup")),
        (Some(&30), Some(&10), None),
        "{seen:?}"
    );

    // The first priority fails: the next takes over.
    one.set_health_status(500);
    two.set_health_status(500);
    wait_targets(&lb, "priority 10 unhealthy", |t| {
        state(t, addr("127.0.0.5")) == Some("unhealthy")
            && state(t, addr("127.0.0.6")) == Some("unhealthy")
    })
    .await;
    assert_eq!(
        spread(listen, 4).await,
        HashMap::from([("backup".to_owned(), 4)])
    );

    // One of them recovers: traffic goes back to priority 10 at once.
    two.set_health_status(200);
    wait_targets(&lb, "two healthy again", |t| {
        state(t, addr("127.0.0.6")) == Some("healthy")
    })
    .await;
    assert_eq!(
        spread(listen, 4).await,
        HashMap::from([("two".to_owned(), 4)])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_trouble_keeps_the_set_and_nxdomain_empties_it_only_after_30s() {
    let dns = DnsServer::start(1).await;
    let port = free_port();
    let a: SocketAddr = format!("127.0.0.8:{port}").parse().unwrap();
    let _ta = TestTarget::start_on(a, "a").await;
    dns.set_hosts("flaky.test", &["127.0.0.8"]);
    let listen = listen_addr();
    let lb = Edgelb::start(&config(
        listen,
        &dns,
        &format!("{{ dns = \"flaky.test\", port = {port} }}"),
        "",
    ))
    .await;
    wait_targets(&lb, "a healthy", |t| state(t, a) == Some("healthy")).await;
    let errors = "edgelb_dns_resolutions_total{result=\"error\",target_group=\"web\"}";
    let nxdomain = "edgelb_dns_resolutions_total{result=\"nxdomain\",target_group=\"web\"}";
    let success = "edgelb_dns_resolutions_total{result=\"success\",target_group=\"web\"}";
    assert!(lb.metric(success).await >= 1.0);

    for mode in [Mode::ServFail, Mode::Silent] {
        dns.set_mode(mode);
        let before = lb.metric(errors).await;
        wait_for(Duration::from_secs(15), "a failed lookup", || async {
            lb.metric(errors).await > before
        })
        .await;
        assert_eq!(state(&targets(&lb).await, a), Some("healthy"), "{mode:?}");
        assert_eq!(
            spread(listen, 2).await,
            HashMap::from([("a".to_owned(), 2)])
        );
    }

    dns.set_mode(Mode::NxDomain);
    let started = std::time::Instant::now();
    wait_for(Duration::from_secs(15), "NXDOMAIN counted", || async {
        lb.metric(nxdomain).await >= 1.0
    })
    .await;
    // Well inside the hold: still served.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(state(&targets(&lb).await, a), Some("healthy"));
    assert_eq!(
        spread(listen, 2).await,
        HashMap::from([("a".to_owned(), 2)])
    );
    wait_targets_for(&lb, Duration::from_secs(40), "the group emptied", |t| {
        t.is_empty()
    })
    .await;
    assert!(
        started.elapsed() >= Duration::from_secs(29),
        "emptied after {:?}",
        started.elapsed()
    );
    let got = get(listen, "/").await;
    assert_eq!(got.status, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_kept_for_their_ttl_without_a_query_storm() {
    let dns = DnsServer::start(3).await;
    let port = free_port();
    let a: SocketAddr = format!("127.0.0.9:{port}").parse().unwrap();
    let _ta = TestTarget::start_on(a, "a").await;
    dns.set_hosts("steady.test", &["127.0.0.9"]);
    let listen = listen_addr();
    let lb = Edgelb::start(&config(
        listen,
        &dns,
        &format!("{{ dns = \"steady.test\", port = {port} }}"),
        "",
    ))
    .await;
    wait_targets(&lb, "a present", |t| state(t, a).is_some()).await;
    let start = dns.queries("steady.test");
    tokio::time::sleep(Duration::from_secs(7)).await;
    // TTL 3 s: two or three rounds in 7 s, each an A and an AAAA query.
    let asked = dns.queries("steady.test") - start;
    assert!(
        (2..=8).contains(&asked),
        "{asked} queries in 7 s at TTL 3 s"
    );
    // A TTL of 0 is held for the floor of 1 s.
    dns.zone.lock().unwrap().ttl = 0;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let start = dns.queries("steady.test");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let asked = dns.queries("steady.test") - start;
    assert!((2..=10).contains(&asked), "{asked} queries in 3 s at TTL 0");
    drop(lb);
}

#[test]
fn check_names_misused_dns_targets() {
    let dir = tempfile::tempdir().unwrap();
    let run = |targets: &str, global: &str| {
        let text = format!(
            "[global]\n{global}\n[[listeners]]\nname = \"l\"\nprotocol = \"http\"\nbind = \"127.0.0.1:1\"\n\
             default_action = {{ forward = \"g\" }}\n\n[[target_groups]]\nname = \"g\"\nprotocol = \"http\"\n\
             targets = [ {targets} ]\n"
        );
        let path = dir.path().join("edgelb.toml");
        std::fs::write(&path, &text).unwrap();
        let out = std::process::Command::new(edgelb_bin())
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(
        run(
            "{ dns = \"app.internal\", port = 80 }, { srv = \"_x._tcp.y\" }",
            "resolvers = [\"127.0.0.53\", \"[::1]:5353\"]"
        )
        .0,
        0
    );
    for (targets, global, message, line_col) in [
        (
            "{ dns = \"app.internal\" }",
            "",
            "missing key `port`",
            "edgelb.toml:12:13: ",
        ),
        (
            "{ srv = \"_x._tcp.y\", weight = 2 }",
            "",
            "takes its port and weight from the SRV records",
            "edgelb.toml:12:13: ",
        ),
        (
            "{ address = \"10.0.0.1:80\", dns = \"a.b\", port = 80 }",
            "",
            "one of `address`, `dns` or `srv`",
            "edgelb.toml:12:13: ",
        ),
        (
            "{ dns = \"bad name!\", port = 80 }",
            "",
            "invalid DNS name",
            "edgelb.toml:12:21: ",
        ),
        (
            "{ address = \"10.0.0.1:80\" }",
            "resolvers = [\"dns.example\"]",
            "invalid resolver",
            "edgelb.toml:2:14: ",
        ),
    ] {
        let (code, err) = run(targets, global);
        assert_eq!(code, 1, "{targets}: {err}");
        assert!(
            err.contains(message) && err.contains(line_col),
            "{targets}: {err}"
        );
    }
}

/// The cost of following DNS: 100 groups × 10 names at TTL 1 s, the daemon
/// otherwise idle. `cargo test --release --test dns -- --ignored --nocapture`
/// (docs/performance.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn cost_of_1000_names_re_resolved_every_second() {
    let dns = DnsServer::start(1).await;
    let mut groups = String::new();
    for g in 0..100 {
        let names: Vec<String> = (0..10)
            .map(|n| {
                let name = format!("n{n}.g{g}.test");
                dns.set_hosts(&name, &[&format!("127.1.{g}.{}", n + 1)]);
                format!("{{ dns = \"{name}\", port = 9 }}")
            })
            .collect();
        groups += &format!(
            "[[target_groups]]\nname = \"g{g}\"\nprotocol = \"http\"\ntargets = [ {} ]\n\
             [target_groups.health_check]\ninterval = \"300s\"\n\n",
            names.join(", ")
        );
    }
    let text = format!(
        "[global]\nworker_threads = 1\nresolvers = [\"{}\"]\n[admin]\nbind = \"ADMIN\"\n\
         [[listeners]]\nname = \"l\"\nprotocol = \"http\"\nbind = \"{}\"\n\
         default_action = {{ forward = \"g0\" }}\n{groups}",
        dns.addr,
        listen_addr()
    );
    let lb = Edgelb::start(&text).await;
    let ticks = |pid: i32| -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    };
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (q0, t0) = (total_queries(&dns), ticks(lb.pid()));
    tokio::time::sleep(Duration::from_secs(20)).await;
    let (q1, t1) = (total_queries(&dns), ticks(lb.pid()));
    let cpu = (t1 - t0) as f64 / 100.0 / 20.0;
    println!(
        "1000 names at TTL 1 s: {:.0} queries/s, edgelb CPU {:.1}% of one core",
        (q1 - q0) as f64 / 20.0,
        cpu * 100.0
    );
    assert!(q1 > q0);
}

fn total_queries(dns: &DnsServer) -> usize {
    dns.zone.lock().unwrap().queries.values().sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aaaa_records_are_targets_too() {
    let dns = DnsServer::start(1).await;
    let port = free_port();
    let v6: SocketAddr = format!("[::1]:{port}").parse().unwrap();
    let v4: SocketAddr = format!("127.0.0.10:{port}").parse().unwrap();
    let _t6 = TestTarget::start_on(v6, "six").await;
    let _t4 = TestTarget::start_on(v4, "four").await;
    dns.set_hosts("dual.test", &["127.0.0.10", "::1"]);
    let listen = listen_addr();
    let lb = Edgelb::start(&config(
        listen,
        &dns,
        &format!("{{ dns = \"dual.test\", port = {port} }}"),
        "",
    ))
    .await;
    wait_targets(&lb, "both healthy", |t| {
        state(t, v6) == Some("healthy") && state(t, v4) == Some("healthy")
    })
    .await;
    let seen = spread(listen, 4).await;
    assert_eq!((seen["six"], seen["four"]), (2, 2), "{seen:?}");
}
