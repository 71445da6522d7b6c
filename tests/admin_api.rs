//! The admin API's target registration (RegisterTargets / DeregisterTargets),
//! its persistence, and the Zabbix discovery.

mod common;

use bytes::Bytes;
use common::*;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use std::net::SocketAddr;
use std::time::Duration;

const TOKEN: &str = "t0ken-for-tests";

async fn call(
    lb: &Edgelb,
    method: Method,
    path: &str,
    body: &str,
    token: Option<&str>,
) -> (StatusCode, serde_json::Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "admin");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let got = H1::connect(lb.admin)
        .await
        .send(req.body(Full::new(Bytes::from(body.to_owned()))).unwrap())
        .await
        .unwrap();
    (
        got.status,
        serde_json::from_slice(&got.body).unwrap_or(serde_json::Value::Null),
    )
}

fn config_with_token(
    listen: SocketAddr,
    targets: &[(SocketAddr, u32)],
    dir: &std::path::Path,
) -> String {
    let token_file = dir.join("admin.token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    one_group_config(listen, targets, "deregistration_delay = \"1s\"\n[target_groups.health_check]\ninterval = \"1s\"\ntimeout = \"500ms\"\n")
        .replace("bind = \"ADMIN\"", &format!("bind = \"ADMIN\"\ntoken_file = \"{}\"", token_file.display()))
        .replace("[global]\n", &format!("[global]\nstate_file = \"{}\"\n", dir.join("targets.json").display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_serve_deregister_drain() {
    let a = TestTarget::start("a").await;
    let b = TestTarget::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let lb = Edgelb::start(&config_with_token(listen, &[(a.addr, 1)], dir.path())).await;
    let body = format!("{{\"address\": \"{}\", \"weight\": 2}}", b.addr);

    assert_eq!(
        call(&lb, Method::POST, "/target-groups/web/targets", &body, None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(
            &lb,
            Method::POST,
            "/target-groups/web/targets",
            &body,
            Some("nope")
        )
        .await
        .0,
        StatusCode::UNAUTHORIZED
    );
    let (status, v) = call(
        &lb,
        Method::POST,
        "/target-groups/web/targets",
        &body,
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");

    let targets = |lb: &Edgelb| {
        let admin = lb.admin;
        async move {
            let got = get(admin, "/target-groups/web/targets").await;
            serde_json::from_slice::<serde_json::Value>(&got.body).unwrap()["targets"]
                .as_array()
                .unwrap()
                .clone()
        }
    };
    let t = targets(&lb).await;
    assert_eq!(t.len(), 2);
    assert_eq!(t[1]["address"], b.addr.to_string());
    assert_eq!(t[1]["weight"], 2);
    wait_for(
        Duration::from_secs(5),
        "the registered target to be healthy",
        || async { targets(&lb).await[1]["state"] == "healthy" },
    )
    .await;
    let mut client = H1::connect(listen).await;
    let mut names = Vec::new();
    for _ in 0..6 {
        names.push(client.get("/").await.text());
    }
    assert_eq!(names.iter().filter(|n| *n == "b").count(), 4, "{names:?}");

    // Refusals change nothing.
    assert_eq!(
        call(
            &lb,
            Method::POST,
            "/target-groups/web/targets",
            &body,
            Some(TOKEN)
        )
        .await
        .0,
        StatusCode::CONFLICT
    );
    assert_eq!(
        call(
            &lb,
            Method::POST,
            "/target-groups/nope/targets",
            &body,
            Some(TOKEN)
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        call(
            &lb,
            Method::POST,
            "/target-groups/web/targets",
            "{\"address\": \"not an address\"}",
            Some(TOKEN)
        )
        .await
        .0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        call(
            &lb,
            Method::POST,
            "/target-groups/web/targets",
            "{not json",
            Some(TOKEN)
        )
        .await
        .0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        call(
            &lb,
            Method::POST,
            "/target-groups/web/targets",
            "{\"address\": \"10.0.0.1:80\", \"color\": 1}",
            Some(TOKEN)
        )
        .await
        .0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(targets(&lb).await.len(), 2);

    // Deregister: draining, then gone.
    let encoded = b.addr.to_string().replace(':', "%3A");
    let (status, v) = call(
        &lb,
        Method::DELETE,
        &format!("/target-groups/web/targets/{encoded}"),
        "",
        Some(TOKEN),
    )
    .await;
    assert_eq!(
        (status, v["state"].as_str()),
        (StatusCode::OK, Some("draining"))
    );
    assert_eq!(targets(&lb).await[1]["state"], "draining");
    wait_for(
        Duration::from_secs(5),
        "the deregistered target to go",
        || async { targets(&lb).await.len() == 1 },
    )
    .await;
    assert_eq!(
        call(
            &lb,
            Method::DELETE,
            &format!("/target-groups/web/targets/{encoded}"),
            "",
            Some(TOKEN)
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_targets_survive_reloads_and_restarts() {
    let a = TestTarget::start("a").await;
    let b = TestTarget::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let config = config_with_token(listen, &[(a.addr, 1)], dir.path());
    let mut lb = Edgelb::start(&config).await;
    let body = format!("{{\"address\": \"{}\"}}", b.addr);
    assert_eq!(
        call(
            &lb,
            Method::POST,
            "/target-groups/web/targets",
            &body,
            Some(TOKEN)
        )
        .await
        .0,
        StatusCode::OK
    );
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("targets.json")).unwrap()).unwrap();
    assert_eq!(state["targets"]["web"][0]["address"], b.addr.to_string());

    lb.signal("HUP");
    wait_for(Duration::from_secs(5), "generation 2", || async {
        lb.generation().await == 2
    })
    .await;
    assert_eq!(
        lb.status_json().await["target_groups"][0]["targets"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    lb.signal("TERM");
    assert_eq!(lb.wait_exit(Duration::from_secs(10)).await, 0);
    drop(lb);
    let restarted = Edgelb::start(&config).await;
    let t = restarted.status_json().await["target_groups"][0]["targets"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(t.len(), 2);
    assert_eq!(t[1]["address"], b.addr.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deregistered_file_target_comes_back_on_reload() {
    let a = TestTarget::start("a").await;
    let b = TestTarget::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let lb = Edgelb::start(&config_with_token(
        listen,
        &[(a.addr, 1), (b.addr, 1)],
        dir.path(),
    ))
    .await;
    let encoded = b.addr.to_string().replace(':', "%3A");
    assert_eq!(
        call(
            &lb,
            Method::DELETE,
            &format!("/target-groups/web/targets/{encoded}"),
            "",
            Some(TOKEN)
        )
        .await
        .0,
        StatusCode::OK
    );
    wait_for(Duration::from_secs(5), "b gone", || async {
        lb.status_json().await["target_groups"][0]["targets"]
            .as_array()
            .unwrap()
            .len()
            == 1
    })
    .await;
    lb.signal("HUP");
    wait_for(Duration::from_secs(5), "b back", || async {
        lb.status_json().await["target_groups"][0]["targets"]
            .as_array()
            .unwrap()
            .len()
            == 2
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zabbix_discovery_lists_groups_and_targets() {
    let a = TestTarget::start("a").await;
    let listen = listen_addr();
    let lb = Edgelb::start(&one_group_config(listen, &[(a.addr, 1)], "")).await;
    let (status, body) = lb.admin_get("/zabbix/discovery").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        format!(r#"[{{"{{#TARGET}}":"{}","{{#TG}}":"web"}}]"#, a.addr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_world_readable_token_file_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let config = config_with_token(listen, &[], dir.path());
    std::fs::set_permissions(
        dir.path().join("admin.token"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let lb = Edgelb::start(&config).await;
    assert!(lb.log().contains("readable by every user"), "{}", lb.log());
    std::fs::set_permissions(
        dir.path().join("admin.token"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let quiet = Edgelb::start(&config_with_token(listen_addr(), &[], dir.path())).await;
    assert!(!quiet.log().contains("readable by every user"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_endpoint_reveals_a_secret_and_bodies_are_limited() {
    const KEY: &str = "4f1c9e0a7b2d6c3e8a5f0b1d2c3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e";
    let t = TestTarget::start("t").await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("sticky.key");
    std::fs::write(&key, format!("{KEY}\n")).unwrap();
    let listen = listen_addr();
    let config = config_with_token(listen, &[(t.addr, 1)], dir.path())
        .replace(
            "[global]\n",
            &format!("[global]\nstickiness_key_file = \"{}\"\n", key.display()),
        )
        .replace(
            "deregistration_delay",
            "stickiness = { type = \"lb_cookie\", duration = \"1h\" }\nderegistration_delay",
        );
    let lb = Edgelb::start(&config).await;
    assert_eq!(get(listen, "/").await.text(), "t");
    let secrets = [TOKEN, KEY, &KEY[..16]];
    let reads = [
        "/healthz",
        "/metrics",
        "/status",
        "/zabbix/discovery",
        "/target-groups/web/targets",
        "/nothing",
    ];
    for path in reads {
        let got = H1::connect(lb.admin).await.get(path).await;
        let text = got.text();
        for s in secrets {
            assert!(!text.contains(s), "{path} reveals a secret");
        }
    }
    // A wrong token is not echoed back, and neither is the right one.
    for token in ["guess-token-123", TOKEN] {
        let (_, body) = call(&lb, Method::POST, "/reload", "", Some(token)).await;
        let text = body.to_string();
        assert!(!text.contains(token) && !text.contains(KEY), "{text}");
    }
    let log = lb.log();
    for s in secrets {
        assert!(!log.contains(s), "the log reveals a secret");
    }
    // Request bodies are limited.
    let big = format!(
        "{{\"address\": \"127.0.0.1:1\", \"pad\": \"{}\"}}",
        "x".repeat(100 * 1024)
    );
    let (status, _) = call(
        &lb,
        Method::POST,
        "/target-groups/web/targets",
        &big,
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(lb.admin_get("/healthz").await.0.is_success());
}
