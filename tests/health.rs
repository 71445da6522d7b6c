//! Active and passive health checking with real targets: a failing target leaves
//! the rotation by itself and comes back by itself.

mod common;

use common::*;
use http::StatusCode;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A fast health check: interval 1 s, timeout 500 ms, thresholds 2/2.
const FAST_CHECKS: &str = "\n[target_groups.health_check]\ninterval = \"1s\"\ntimeout = \"500ms\"\nhealthy_threshold = 2\nunhealthy_threshold = 2\npath = \"/health\"\n";

async fn target_json(lb: &Edgelb, index: usize) -> serde_json::Value {
    lb.status_json().await["target_groups"][0]["targets"][index].clone()
}

async fn wait_state(lb: &Edgelb, index: usize, state: &str, within: Duration) -> serde_json::Value {
    wait_for(within, &format!("target {index} to be {state}"), || async {
        target_json(lb, index).await["state"] == state
    })
    .await;
    target_json(lb, index).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_target_leaves_and_returns_by_itself() {
    let a = TestTarget::start("a").await;
    let b = TestTarget::start("b").await;
    let listen = listen_addr();
    let lb = Edgelb::start(&one_group_config(
        listen,
        &[(a.addr, 1), (b.addr, 1)],
        FAST_CHECKS,
    ))
    .await;
    wait_state(&lb, 1, "healthy", Duration::from_secs(5)).await;
    wait_state(&lb, 0, "healthy", Duration::from_secs(5)).await;

    // Stopped: unhealthy within unhealthy_threshold × interval + timeout (+ jitter slack).
    let b_addr = b.addr;
    b.stop().await;
    let stopped = Instant::now();
    let t = wait_state(
        &lb,
        1,
        "unhealthy",
        Duration::from_millis(2 * 1000 + 500 + 1500),
    )
    .await;
    assert_eq!(t["reason"], "Target.FailedHealthChecks");
    assert!(stopped.elapsed() <= Duration::from_millis(4000));
    let mut client = H1::connect(listen).await;
    for _ in 0..10 {
        assert_eq!(client.get("/").await.text(), "a");
    }
    assert_eq!(
        lb.metric("edgelb_healthy_targets{target_group=\"web\"}")
            .await,
        1.0
    );
    assert_eq!(
        lb.metric("edgelb_unhealthy_targets{target_group=\"web\"}")
            .await,
        1.0
    );
    assert_eq!(
        lb.metric(&format!(
            "edgelb_target_up{{target=\"{b_addr}\",target_group=\"web\"}}"
        ))
        .await,
        0.0
    );

    // Started again on the same port: healthy within healthy_threshold × interval, untouched.
    let b2 = TestTarget::start_on(b_addr, "b").await;
    let t = wait_state(&lb, 1, "healthy", Duration::from_millis(2 * 1000 + 1500)).await;
    assert_eq!(t["reason"], serde_json::Value::Null);
    assert_eq!(t["last_check_result"], "success");
    assert!(t["consecutive_successes"].as_u64().unwrap() >= 2);
    let mut names = Vec::new();
    for _ in 0..4 {
        names.push(client.get("/").await.text());
    }
    assert!(names.contains(&"b".to_owned()), "{names:?}");
    assert!(b2.requests() > 0);
    assert!(
        lb.metric("edgelb_health_checks_total{result=\"failure\",target_group=\"web\"}")
            .await
            >= 2.0
    );
    assert!(
        lb.metric("edgelb_health_checks_total{result=\"success\",target_group=\"web\"}")
            .await
            >= 4.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_status_and_hanging_checks_have_their_reasons() {
    let a = TestTarget::start("a").await;
    let b = TestTarget::start("b").await;
    let listen = listen_addr();
    let lb = Edgelb::start(&one_group_config(
        listen,
        &[(a.addr, 1), (b.addr, 1)],
        FAST_CHECKS,
    ))
    .await;
    wait_state(&lb, 0, "healthy", Duration::from_secs(5)).await;
    a.set_health_status(503);
    b.set_health_hang(true);
    let ta = wait_state(&lb, 0, "unhealthy", Duration::from_secs(5)).await;
    assert_eq!(ta["reason"], "Target.ResponseCodeMismatch");
    let tb = wait_state(&lb, 1, "unhealthy", Duration::from_secs(5)).await;
    assert_eq!(tb["reason"], "Target.Timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matcher_decides_what_is_healthy() {
    let a = TestTarget::start("a").await;
    a.set_health_status(202);
    let listen = listen_addr();
    let checks = FAST_CHECKS.replace(
        "path = \"/health\"",
        "path = \"/health\"\nmatcher = \"200,202\"",
    );
    let lb = Edgelb::start(&one_group_config(listen, &[(a.addr, 1)], &checks)).await;
    wait_state(&lb, 0, "healthy", Duration::from_secs(5)).await;
    a.set_health_status(204);
    wait_state(&lb, 0, "unhealthy", Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_open_routes_to_all_when_none_is_healthy() {
    let a = TestTarget::start("a").await;
    a.set_health_status(500);
    let listen = listen_addr();
    let lb = Edgelb::start(&one_group_config(listen, &[(a.addr, 1)], FAST_CHECKS)).await;
    wait_state(&lb, 0, "unhealthy", Duration::from_secs(5)).await;
    let got = get(listen, "/").await;
    assert_eq!(
        (got.status, got.text().as_str()),
        (StatusCode::OK, "a"),
        "fail_open = true (the default) still routes"
    );
    let (status, body) = lb.admin_get("/healthz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, r#"{"status":"unhealthy","unhealthy_groups":["web"]}"#);

    let closed = one_group_config(
        listen_addr(),
        &[(a.addr, 1)],
        &format!("fail_open = false\n{FAST_CHECKS}"),
    );
    let listen2: SocketAddr = closed
        .split("bind = \"")
        .nth(2)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let lb2 = Edgelb::start(&closed).await;
    wait_state(&lb2, 0, "unhealthy", Duration::from_secs(5)).await;
    assert_eq!(
        get(listen2, "/").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );

    // Recovery flips /healthz back.
    a.set_health_status(200);
    wait_state(&lb, 0, "healthy", Duration::from_secs(5)).await;
    let (status, body) = lb.admin_get("/healthz").await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, r#"{"status":"ok"}"#)
    );
    wait_state(&lb2, 0, "healthy", Duration::from_secs(5)).await;
    assert_eq!(get(listen2, "/").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_target_under_steady_load_costs_no_request() {
    let a = TestTarget::start("a").await;
    let b = TestTarget::start("b").await;
    let c = TestTarget::start("c").await;
    let listen = listen_addr();
    let lb = Edgelb::start(&one_group_config(
        listen,
        &[(a.addr, 1), (b.addr, 1), (c.addr, 1)],
        FAST_CHECKS,
    ))
    .await;
    wait_for(Duration::from_secs(5), "all healthy", || async {
        lb.metric("edgelb_healthy_targets{target_group=\"web\"}")
            .await
            == 3.0
    })
    .await;
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(tokio::spawn(async move {
            let mut client = H1::connect(listen).await;
            let mut failures = 0;
            for _ in 0..300 {
                if client.get("/").await.status != StatusCode::OK {
                    failures += 1;
                }
            }
            failures
        }));
    }
    wait_for(Duration::from_secs(10), "traffic on b", || async {
        b.requests() >= 50
    })
    .await;
    b.stop().await;
    let mut failed = 0;
    for c in clients {
        failed += c.await.unwrap();
    }
    assert_eq!(failed, 0, "requests failed while a target was killed");
    assert!(a.requests() + c.requests() > 600);
    assert_eq!(target_json(&lb, 1).await["state"], "unhealthy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unused_groups_are_not_checked() {
    let a = TestTarget::start("a").await;
    let spare = TestTarget::start("spare").await;
    let listen = listen_addr();
    let config = one_group_config(listen, &[(a.addr, 1)], FAST_CHECKS)
        + &format!(
            "\n[[target_groups]]\nname = \"spare\"\nprotocol = \"http\"\ntargets = [ {{ address = \"{}\" }} ]\n",
            spare.addr
        );
    let lb = Edgelb::start(&config).await;
    wait_state(&lb, 0, "healthy", Duration::from_secs(5)).await;
    let s = lb.status_json().await;
    assert_eq!(s["target_groups"][1]["targets"][0]["state"], "unused");
    assert_eq!(
        spare
            .health_checks
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_state_survives_a_reload() {
    let a = TestTarget::start("a").await;
    let b = TestTarget::start("b").await;
    b.set_health_status(500);
    let listen = listen_addr();
    let config = one_group_config(listen, &[(a.addr, 1), (b.addr, 1)], FAST_CHECKS);
    let lb = Edgelb::start(&config).await;
    wait_state(&lb, 1, "unhealthy", Duration::from_secs(5)).await;
    lb.rewrite(&config.replace("weight = 1 }, {", "weight = 2 }, {"));
    lb.signal("HUP");
    wait_for(Duration::from_secs(5), "generation 2", || async {
        lb.generation().await == 2
    })
    .await;
    let t = target_json(&lb, 1).await;
    assert_eq!(t["state"], "unhealthy");
    assert_eq!(target_json(&lb, 0).await["weight"], 2);
}
