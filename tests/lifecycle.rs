//! The daemon's life: reload on SIGHUP and POST /reload, failed reloads, the
//! admin API, graceful shutdown on SIGTERM, exit codes.

mod common;

use common::*;
use http::StatusCode;
use std::net::SocketAddr;
use std::time::Duration;

async fn counts(listen: SocketAddr, n: usize, names: &[&str]) -> Vec<usize> {
    let mut client = H1::connect(listen).await;
    let mut out = vec![0; names.len()];
    for _ in 0..n {
        let text = client.get("/").await.text();
        out[names
            .iter()
            .position(|n| *n == text)
            .expect("a known target answered")] += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_changes_weights_and_keeps_serving() {
    let a = TestTarget::start("a").await;
    let b = TestTarget::start("b").await;
    let listen = listen_addr();
    let lb = Edgelb::start(&one_group_config(listen, &[(a.addr, 1), (b.addr, 1)], "")).await;
    assert_eq!(counts(listen, 20, &["a", "b"]).await, [10, 10]);

    lb.rewrite(&one_group_config(listen, &[(a.addr, 3), (b.addr, 1)], ""));
    lb.signal("HUP");
    wait_for(Duration::from_secs(5), "generation 2", || async {
        lb.generation().await == 2
    })
    .await;
    assert_eq!(counts(listen, 40, &["a", "b"]).await, [30, 10]);
    assert_eq!(
        lb.metric("edgelb_config_reloads_total{result=\"success\"}")
            .await,
        1.0
    );
    assert_eq!(lb.metric("edgelb_config_generation").await, 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_reload_keeps_the_running_config() {
    let a = TestTarget::start("a").await;
    let listen = listen_addr();
    let good = one_group_config(listen, &[(a.addr, 1)], "");
    let lb = Edgelb::start(&good).await;

    // A validation error via SIGHUP.
    lb.rewrite(&good.replace("weight = 1", "weight = 5000"));
    lb.signal("HUP");
    wait_for(
        Duration::from_secs(5),
        "the failed reload to be counted",
        || async {
            lb.metric("edgelb_config_reloads_total{result=\"failure\"}")
                .await
                == 1.0
        },
    )
    .await;
    let status = lb.status_json().await;
    assert_eq!(status["generation"], 1);
    assert_eq!(status["last_reload"]["ok"], false);
    let error = status["last_reload"]["error"].as_str().unwrap();
    assert!(
        error.contains("edgelb.toml:") && error.contains("out of range"),
        "{error}"
    );
    assert_eq!(get(listen, "/").await.text(), "a");

    // A syntax error, then a new listener that cannot bind: each changes nothing.
    lb.rewrite("this is = = not toml");
    lb.signal("HUP");
    wait_for(Duration::from_secs(5), "two failed reloads", || async {
        lb.metric("edgelb_config_reloads_total{result=\"failure\"}")
            .await
            == 2.0
    })
    .await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let extra = format!(
        "\n[[listeners]]\nname = \"second\"\nprotocol = \"http\"\nbind = \"{}\"\ndefault_action = {{ forward = \"web\" }}\n",
        taken.local_addr().unwrap()
    );
    lb.rewrite(&(good.clone() + &extra));
    lb.signal("HUP");
    wait_for(Duration::from_secs(5), "three failed reloads", || async {
        lb.metric("edgelb_config_reloads_total{result=\"failure\"}")
            .await
            == 3.0
    })
    .await;
    assert_eq!(lb.generation().await, 1);
    assert_eq!(get(listen, "/").await.text(), "a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_and_removes_listeners() {
    let a = TestTarget::start("a").await;
    let (l1, l2) = (listen_addr(), listen_addr());
    let base = one_group_config(l1, &[(a.addr, 1)], "");
    let lb = Edgelb::start(&base).await;
    let extra = format!(
        "\n[[listeners]]\nname = \"second\"\nprotocol = \"http\"\nbind = \"{l2}\"\ndefault_action = {{ forward = \"web\" }}\n"
    );
    lb.rewrite(&(base.clone() + &extra));
    lb.signal("HUP");
    wait_for(Duration::from_secs(5), "generation 2", || async {
        lb.generation().await == 2
    })
    .await;
    assert_eq!(get(l2, "/").await.text(), "a");
    assert_eq!(get(l1, "/").await.text(), "a");

    lb.rewrite(&base);
    lb.signal("HUP");
    wait_for(Duration::from_secs(5), "generation 3", || async {
        lb.generation().await == 3
    })
    .await;
    wait_for(
        Duration::from_secs(5),
        "the removed listener's socket to close",
        || async { tokio::net::TcpStream::connect(l2).await.is_err() },
    )
    .await;
    assert_eq!(get(l1, "/").await.text(), "a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_reload_needs_the_token_and_reports_errors() {
    let a = TestTarget::start("a").await;
    let listen = listen_addr();
    let token_dir = tempfile::tempdir().unwrap();
    let token_file = token_dir.path().join("admin.token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    let config = one_group_config(listen, &[(a.addr, 1)], "").replace(
        "bind = \"ADMIN\"",
        &format!(
            "bind = \"ADMIN\"\ntoken_file = \"{}\"",
            token_file.display()
        ),
    );
    let lb = Edgelb::start(&config).await;

    let post = |auth: Option<&'static str>| {
        let admin = lb.admin;
        async move {
            let mut c = H1::connect(admin).await;
            let mut req = http::Request::post("/reload").header("host", "admin");
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            c.send(
                req.body(http_body_util::Full::new(bytes::Bytes::new()))
                    .unwrap(),
            )
            .await
            .unwrap()
        }
    };
    assert_eq!(post(None).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        post(Some("Bearer wrong")).await.status,
        StatusCode::UNAUTHORIZED
    );
    let ok = post(Some("Bearer s3cret-token")).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&ok.body).unwrap()["generation"],
        2
    );

    lb.rewrite(&config.replace("protocol = \"http\"\nbind", "protocol = \"htp\"\nbind"));
    let bad = post(Some("Bearer s3cret-token")).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let error = serde_json::from_slice::<serde_json::Value>(&bad.body).unwrap()["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(error.contains("unknown protocol \"htp\""), "{error}");
    assert_eq!(lb.generation().await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutating_calls_are_refused_without_a_token_file() {
    let listen = listen_addr();
    let lb = Edgelb::start(&one_group_config(listen, &[], "")).await;
    let mut c = H1::connect(lb.admin).await;
    let req = http::Request::post("/reload")
        .header("host", "a")
        .header("authorization", "Bearer x");
    let got = c
        .send(
            req.body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(got.status, StatusCode::FORBIDDEN);
    assert_eq!(lb.generation().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_views() {
    let a = TestTarget::start("a").await;
    let listen = listen_addr();
    let config = one_group_config(listen, &[(a.addr, 4)], "")
        + "\n[[target_groups]]\nname = \"spare\"\nprotocol = \"http\"\ntargets = []\n";
    let lb = Edgelb::start(&config).await;
    // The first health check runs at once; the target is in service after it.
    wait_for(
        Duration::from_secs(5),
        "the target to be healthy",
        || async { lb.admin_get("/healthz").await.0 == StatusCode::OK },
    )
    .await;
    let (status, body) = lb.admin_get("/healthz").await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, r#"{"status":"ok"}"#)
    );

    let s = lb.status_json().await;
    assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(s["listeners"][0]["name"], "front");
    assert_eq!(s["listeners"][0]["protocol"], "http");
    assert_eq!(s["listeners"][0]["bind"], listen.to_string());
    assert_eq!(
        s["target_groups"][0]["targets"][0]["address"],
        a.addr.to_string()
    );
    assert_eq!(s["target_groups"][0]["targets"][0]["weight"], 4);
    assert_eq!(s["target_groups"][0]["targets"][0]["state"], "healthy");

    let (status, body) = lb.admin_get("/target-groups/web/targets").await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["target_group"], "web");
    assert_eq!(v["targets"].as_array().unwrap().len(), 1);
    assert_eq!(
        lb.admin_get("/target-groups/nope/targets").await.0,
        StatusCode::NOT_FOUND
    );

    for _ in 0..3 {
        get(listen, "/").await;
    }
    assert_eq!(
        lb.metric("edgelb_requests_total{listener=\"front\",target_group=\"web\"}")
            .await,
        3.0
    );
    assert_eq!(lb.metric("edgelb_http_responses_total{class=\"2xx\",listener=\"front\",source=\"target\",target_group=\"web\"}").await, 3.0);
    assert_eq!(
        lb.metric("edgelb_connections_total{listener=\"front\"}")
            .await,
        3.0
    );
    assert_eq!(
        lb.metric("edgelb_target_response_seconds_count{target_group=\"web\"}")
            .await,
        3.0
    );
    assert_eq!(
        lb.metric("edgelb_healthy_targets{target_group=\"web\"}")
            .await,
        1.0
    );
    assert_eq!(
        lb.metric(&format!(
            "edgelb_target_up{{target=\"{}\",target_group=\"web\"}}",
            a.addr
        ))
        .await,
        1.0
    );
    assert_eq!(
        lb.metric(&format!(
            "edgelb_build_info{{version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        ))
        .await,
        1.0
    );
    wait_for(Duration::from_secs(5), "connections to close", || async {
        lb.metric("edgelb_active_connections{listener=\"front\"}")
            .await
            == 0.0
    })
    .await;

    // A listener whose group has no target makes /healthz say so.
    let lb2 = Edgelb::start(&one_group_config(listen_addr(), &[], "")).await;
    let (status, body) = lb2.admin_get("/healthz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, r#"{"status":"unhealthy","unhealthy_groups":["web"]}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_an_in_flight_request_then_exits_0() {
    let slow = TestTarget::start_with(
        "slow",
        Behaviour {
            delay: Some(Duration::from_millis(1500)),
            ..Default::default()
        },
    )
    .await;
    let listen = listen_addr();
    let mut lb = Edgelb::start(&one_group_config(listen, &[(slow.addr, 1)], "")).await;
    let request = tokio::spawn(async move { get(listen, "/slow").await });
    wait_for(
        Duration::from_secs(5),
        "the request to reach the target",
        || async { slow.requests() == 1 },
    )
    .await;
    lb.signal("TERM");
    // New connections are refused at once.
    wait_for(Duration::from_secs(2), "the listener to close", || async {
        tokio::net::TcpStream::connect(listen).await.is_err()
    })
    .await;
    let got = request.await.unwrap();
    assert_eq!((got.status, got.text().as_str()), (StatusCode::OK, "slow"));
    assert_eq!(
        got.headers.get("connection").map(|v| v.to_str().unwrap()),
        Some("close")
    );
    let code = lb.wait_exit(Duration::from_secs(5)).await;
    assert_eq!(code, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_nothing_in_flight_exits_at_once() {
    let a = TestTarget::start("a").await;
    let listen = listen_addr();
    let mut lb = Edgelb::start(&one_group_config(listen, &[(a.addr, 1)], "")).await;
    // An idle keep-alive connection must not hold the exit back.
    let mut idle = H1::connect(listen).await;
    idle.get("/").await;
    let started = std::time::Instant::now();
    lb.signal("TERM");
    assert_eq!(lb.wait_exit(Duration::from_secs(5)).await, 0);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "exit took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_failure_at_start_exits_2() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = one_group_config(taken.local_addr().unwrap(), &[], "")
        .replace("ADMIN", &format!("127.0.0.1:{}", free_port()));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edgelb.toml");
    std::fs::write(&path, config).unwrap();
    let out = std::process::Command::new(edgelb_bin())
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot bind"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_output() {
    for args in [&["version"][..], &["--version"][..]] {
        let out = std::process::Command::new(edgelb_bin())
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        assert_eq!(
            lines.next().unwrap(),
            format!("edgelb {}", env!("CARGO_PKG_VERSION"))
        );
        assert!(lines.next().unwrap().starts_with("build: "));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_its_three_targets_by_weight() {
    let (listen, admin) = (listen_addr(), listen_addr());
    let mut child = std::process::Command::new(edgelb_bin())
        .args([
            "demo",
            "--listen",
            &listen.to_string(),
            "--admin",
            &admin.to_string(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(Duration::from_secs(10), "the demo listener", || async {
        tokio::net::TcpStream::connect(listen).await.is_ok()
    })
    .await;
    let mut client = H1::connect(listen).await;
    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(client.get("/").await.text());
    }
    assert_eq!(
        seen,
        [
            "demo target 3 (weight 3)\n",
            "demo target 2 (weight 2)\n",
            "demo target 1 (weight 1)\n",
            "demo target 3 (weight 3)\n",
            "demo target 2 (weight 2)\n",
            "demo target 3 (weight 3)\n"
        ]
    );
    assert_eq!(get(admin, "/healthz").await.status, StatusCode::OK);
    // Target 3's switchable health endpoint takes it out of rotation by itself.
    let status: serde_json::Value =
        serde_json::from_slice(&get(admin, "/status").await.body).unwrap();
    let t3: SocketAddr = status["target_groups"][0]["targets"][2]["address"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let toggle = http::Request::post("/health/toggle")
        .header("host", "demo")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    H1::connect(t3).await.send(toggle).await.unwrap();
    wait_for(
        Duration::from_secs(10),
        "target 3 to be unhealthy",
        || async {
            let s: serde_json::Value =
                serde_json::from_slice(&get(admin, "/status").await.body).unwrap();
            s["target_groups"][0]["targets"][2]["state"] == "unhealthy"
        },
    )
    .await;
    for _ in 0..6 {
        assert_ne!(client.get("/").await.text(), "demo target 3 (weight 3)\n");
    }
    let _ = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let code = tokio::task::spawn_blocking(move || child.wait().unwrap().code())
        .await
        .unwrap();
    assert_eq!(code, Some(0));
}
