//! The metrics of SPEC §5: every name with its labels, moving by exactly the
//! expected amount, and a live scrape that `promtool check metrics` accepts.

mod common;

use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_exists_and_moves_by_exactly_the_traffic() {
    let a = TestTarget::start("a").await;
    let b = TestTarget::start("b").await;
    let listen = listen_addr();
    let lb = Edgelb::start(&one_group_config(listen, &[(a.addr, 1), (b.addr, 1)], "[target_groups.health_check]\ninterval = \"1s\"\ntimeout = \"500ms\"\nunhealthy_threshold = 1\n")).await;
    wait_for(Duration::from_secs(5), "healthy", || async {
        lb.metric("edgelb_healthy_targets{target_group=\"web\"}")
            .await
            == 2.0
    })
    .await;
    let text = lb.admin_get("/metrics").await.1;
    for name in [
        "edgelb_http_responses_total",
        "edgelb_requests_total",
        "edgelb_target_response_seconds",
        "edgelb_healthy_targets",
        "edgelb_unhealthy_targets",
        "edgelb_target_up",
        "edgelb_active_connections",
        "edgelb_connections_total",
        "edgelb_rejected_connections_total",
        "edgelb_processed_bytes_total",
        "edgelb_target_connection_errors_total",
        "edgelb_tls_handshake_errors_total",
        "edgelb_health_checks_total",
        "edgelb_config_reloads_total",
        "edgelb_config_generation",
        "edgelb_build_info",
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "{name} is missing"
        );
    }
    let requests = "edgelb_requests_total{listener=\"front\",target_group=\"web\"}";
    let ok = "edgelb_http_responses_total{class=\"2xx\",listener=\"front\",source=\"target\",target_group=\"web\"}";
    let (r0, ok0) = (lb.metric(requests).await, lb.metric(ok).await);
    let mut client = H1::connect(listen).await;
    for _ in 0..25 {
        client.get("/").await;
    }
    assert_eq!(lb.metric(requests).await - r0, 25.0);
    assert_eq!(lb.metric(ok).await - ok0, 25.0);
    assert_eq!(
        lb.metric("edgelb_target_response_seconds_count{target_group=\"web\"}")
            .await,
        25.0
    );
    assert!(
        lb.metric("edgelb_processed_bytes_total{direction=\"in\",listener=\"front\"}")
            .await
            > 25.0 * 20.0
    );

    // A stopped target: the healthy gauge drops.
    b.stop().await;
    wait_for(
        Duration::from_secs(5),
        "the healthy gauge to drop",
        || async {
            lb.metric("edgelb_healthy_targets{target_group=\"web\"}")
                .await
                == 1.0
        },
    )
    .await;
    assert_eq!(
        lb.metric("edgelb_unhealthy_targets{target_group=\"web\"}")
            .await,
        1.0
    );

    if std::env::var_os("EDGELB_PROMTOOL").is_some() {
        let dir = tempfile::tempdir().unwrap();
        let scrape = dir.path().join("scrape.txt");
        std::fs::write(&scrape, lb.admin_get("/metrics").await.1).unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("promtool check metrics < {}", scrape.display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        println!("promtool check metrics: ok");
    }
}
