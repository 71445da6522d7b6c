//! Sticky sessions through the real binary: lb_cookie, app_cookie, failover,
//! and cookies honoured across nodes that share a key file.

mod common;

use base64::Engine;
use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::Full;
use std::net::SocketAddr;
use std::time::Duration;

/// The `name=value` part of the response's `Set-Cookie` for `name`.
fn cookie(got: &Got, name: &str) -> Option<String> {
    got.headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with(&format!("{name}=")))
}

fn pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

async fn get_with(listen: SocketAddr, cookie: Option<&str>) -> Got {
    let mut req = Request::get("/").header("host", "h");
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    H1::connect(listen)
        .await
        .send(req.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap()
}

async fn three_targets() -> Vec<TestTarget> {
    vec![
        TestTarget::start("a").await,
        TestTarget::start("b").await,
        TestTarget::start("c").await,
    ]
}

fn sticky_config(
    listen: SocketAddr,
    targets: &[TestTarget],
    stickiness: &str,
    key_file: Option<&std::path::Path>,
) -> String {
    let list: Vec<(SocketAddr, u32)> = targets.iter().map(|t| (t.addr, 1)).collect();
    let mut config = one_group_config(
        listen,
        &list,
        &format!(
            "stickiness = {stickiness}\n[target_groups.health_check]\ninterval = \"1s\"\ntimeout = \"500ms\"\nunhealthy_threshold = 1\n"
        ),
    );
    if let Some(k) = key_file {
        config = config.replace(
            "[global]\n",
            &format!("[global]\nstickiness_key_file = \"{}\"\n", k.display()),
        );
    }
    config
}

async fn all_healthy(lb: &Edgelb, n: f64) {
    wait_for(Duration::from_secs(5), "targets healthy", || async {
        lb.metric("edgelb_healthy_targets{target_group=\"web\"}")
            .await
            == n
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lb_cookie_keeps_a_client_on_one_target_and_reveals_nothing() {
    let targets = three_targets().await;
    let listen = listen_addr();
    let lb = Edgelb::start(&sticky_config(
        listen,
        &targets,
        "{ type = \"lb_cookie\", duration = \"1h\" }",
        None,
    ))
    .await;
    all_healthy(&lb, 3.0).await;
    let first = get_with(listen, None).await;
    let set = cookie(&first, "EDGELB").expect("EDGELB is set");
    assert!(set.ends_with("; Path=/; Max-Age=3600; HttpOnly"), "{set}");
    let jar = pair(&set);
    let value = jar.trim_start_matches("EDGELB=");
    for t in &targets {
        let addr = t.addr.to_string();
        assert!(!set.contains(&addr) && !set.contains("127.0.0.1"));
        let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(value)
            .unwrap();
        assert!(!decoded.windows(9).any(|w| w == b"127.0.0.1"));
    }
    let target = first.text();
    for _ in 0..50 {
        let got = get_with(listen, Some(&jar)).await;
        assert_eq!(got.text(), target);
        assert!(
            cookie(&got, "EDGELB").is_some(),
            "the cookie is refreshed on every response"
        );
    }
    // Without the cookie, requests spread over all three.
    let mut seen = std::collections::HashSet::new();
    for _ in 0..6 {
        seen.insert(get_with(listen, None).await.text());
    }
    assert_eq!(seen.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_cookie_is_ignored_and_counted() {
    let targets = three_targets().await;
    let listen = listen_addr();
    let lb = Edgelb::start(&sticky_config(
        listen,
        &targets,
        "{ type = \"lb_cookie\", duration = \"1h\" }",
        None,
    ))
    .await;
    all_healthy(&lb, 3.0).await;
    let got = get_with(
        listen,
        Some("EDGELB=forged-value-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
    )
    .await;
    assert_eq!(got.status, http::StatusCode::OK);
    assert!(cookie(&got, "EDGELB").is_some());
    assert_eq!(
        lb.metric("edgelb_stickiness_cookies_rejected_total{target_group=\"web\"}")
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_sticky_target_moves_the_client_with_a_new_cookie() {
    let targets = three_targets().await;
    let listen = listen_addr();
    let lb = Edgelb::start(&sticky_config(
        listen,
        &targets,
        "{ type = \"lb_cookie\", duration = \"1h\" }",
        None,
    ))
    .await;
    all_healthy(&lb, 3.0).await;
    let first = get_with(listen, None).await;
    let jar = pair(&cookie(&first, "EDGELB").unwrap());
    let name = first.text();
    let sticky = targets.iter().find(|t| t.name == name).unwrap();
    sticky.stop().await;
    let moved = get_with(listen, Some(&jar)).await;
    assert_eq!(moved.status, http::StatusCode::OK);
    assert_ne!(moved.text(), name);
    let new_jar = pair(&cookie(&moved, "EDGELB").expect("a new cookie"));
    assert_ne!(new_jar, jar);
    let home = moved.text();
    for _ in 0..5 {
        assert_eq!(get_with(listen, Some(&new_jar)).await.text(), home);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_sharing_a_key_file_honour_each_others_cookies() {
    let targets = three_targets().await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("sticky.key");
    std::fs::write(
        &key,
        "4f1c9e0a7b2d6c3e8a5f0b1d2c3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e\n",
    )
    .unwrap();
    let (l1, l2) = (listen_addr(), listen_addr());
    let lb1 = Edgelb::start(&sticky_config(
        l1,
        &targets,
        "{ type = \"lb_cookie\", duration = \"1h\" }",
        Some(&key),
    ))
    .await;
    let lb2 = Edgelb::start(&sticky_config(
        l2,
        &targets,
        "{ type = \"lb_cookie\", duration = \"1h\" }",
        Some(&key),
    ))
    .await;
    all_healthy(&lb1, 3.0).await;
    all_healthy(&lb2, 3.0).await;
    for _ in 0..3 {
        let first = get_with(l1, None).await;
        let jar = pair(&cookie(&first, "EDGELB").unwrap());
        for _ in 0..5 {
            assert_eq!(get_with(l2, Some(&jar)).await.text(), first.text());
        }
    }
    // A node with the key rotated ([new, old]) still honours old cookies.
    let new_key = dir.path().join("new.key");
    std::fs::write(
        &new_key,
        "0000111122223333444455556666777788889999aaaabbbbccccddddeeeeffff",
    )
    .unwrap();
    let l3 = listen_addr();
    let rotated = sticky_config(
        l3,
        &targets,
        "{ type = \"lb_cookie\", duration = \"1h\" }",
        None,
    )
    .replace(
        "[global]\n",
        &format!(
            "[global]\nstickiness_key_file = [\"{}\", \"{}\"]\n",
            new_key.display(),
            key.display()
        ),
    );
    let lb3 = Edgelb::start(&rotated).await;
    all_healthy(&lb3, 3.0).await;
    let first = get_with(l1, None).await;
    let jar = pair(&cookie(&first, "EDGELB").unwrap());
    for _ in 0..5 {
        assert_eq!(get_with(l3, Some(&jar)).await.text(), first.text());
    }
    // …while its own new cookies are not readable by a node with only the old key.
    let from_new = get_with(l3, None).await;
    let new_jar = pair(&cookie(&from_new, "EDGELB").unwrap());
    get_with(l1, Some(&new_jar)).await;
    assert_eq!(
        lb1.metric("edgelb_stickiness_cookies_rejected_total{target_group=\"web\"}")
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_cookie_binds_after_the_target_sets_its_cookie() {
    let behaviour = |v: &str| Behaviour {
        set_cookie: Some(format!("SESSIONID={v}; Path=/")),
        ..Default::default()
    };
    let targets = vec![
        TestTarget::start_with("a", behaviour("1")).await,
        TestTarget::start_with("b", behaviour("2")).await,
        TestTarget::start("c").await,
    ];
    let listen = listen_addr();
    let lb = Edgelb::start(&sticky_config(
        listen,
        &targets,
        "{ type = \"app_cookie\", cookie = \"SESSIONID\", duration = \"10m\" }",
        None,
    ))
    .await;
    all_healthy(&lb, 3.0).await;
    let mut bound = None;
    for _ in 0..3 {
        let got = get_with(listen, None).await;
        match cookie(&got, "EDGELBAPP") {
            Some(c) => {
                assert!(c.contains("Max-Age=600"));
                assert!(got.text() == "a" || got.text() == "b");
                bound = Some((pair(&c), got.text()));
            }
            None => assert_eq!(
                got.text(),
                "c",
                "only targets that set SESSIONID get EDGELBAPP"
            ),
        }
    }
    let (jar, target) = bound.expect("a target set its cookie");
    for _ in 0..10 {
        assert_eq!(get_with(listen, Some(&jar)).await.text(), target);
    }
}
