//! Zero-downtime operations: reloads under load, draining, watch_config,
//! systemd notifications, and a binary upgrade by SO_REUSEPORT overlap.

mod common;

use common::*;
use http::StatusCode;
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_reloads_under_load_lose_no_request() {
    let a = TestTarget::start("a").await;
    let b = TestTarget::start("b").await;
    let ca = common::tls::TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let listen = listen_addr();
    let extra_listen = listen_addr();
    let https_listen = listen_addr();
    let config = |i: usize| {
        let cert = ca.issue(dir.path(), &format!("c{}", i % 2), &["localhost"]);
        let mut c = one_group_config(listen, &[(a.addr, 1 + (i % 3) as u32), (b.addr, 1)], "");
        c.push_str(&format!(
            "\n[[listeners]]\nname = \"tls\"\nprotocol = \"https\"\nbind = \"{https_listen}\"\ncertificates = [ {{ cert = \"{}\", key = \"{}\" }} ]\ndefault_action = {{ forward = \"web\" }}\n",
            cert.cert_path.display(),
            cert.key_path.display()
        ));
        if i % 2 == 1 {
            c.push_str(&format!("\n[[listeners]]\nname = \"extra\"\nprotocol = \"http\"\nbind = \"{extra_listen}\"\ndefault_action = {{ forward = \"web\" }}\n"));
        }
        c
    };
    let lb = Edgelb::start(&config(0)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut clients = Vec::new();
    for _ in 0..3 {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        clients.push(tokio::spawn(async move {
            let mut client = H1::connect(listen).await;
            // Bounded: at most 3,000 requests per client.
            for _ in 0..3000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let req = http::Request::get("/")
                    .header("host", "x")
                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                    .unwrap();
                match client.send(req).await {
                    Ok(r) if r.status == StatusCode::OK => ok.fetch_add(1, Ordering::SeqCst),
                    _ => failed.fetch_add(1, Ordering::SeqCst),
                };
            }
        }));
    }
    for i in 1..=20 {
        lb.rewrite(&config(i));
        lb.signal("HUP");
        let want = i as u64 + 1;
        wait_for(Duration::from_secs(10), "the reload", || async {
            lb.generation().await == want
        })
        .await;
    }
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "requests failed during reloads"
    );
    assert!(ok.load(Ordering::SeqCst) > 100);
    assert_eq!(
        lb.metric("edgelb_config_reloads_total{result=\"success\"}")
            .await,
        20.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_target_drains_then_disappears() {
    let a = TestTarget::start("a").await;
    let b = TestTarget::start("b").await;
    let listen = listen_addr();
    let config = one_group_config(
        listen,
        &[(a.addr, 1), (b.addr, 1)],
        "deregistration_delay = \"2s\"",
    );
    let lb = Edgelb::start(&config).await;
    wait_for(Duration::from_secs(5), "healthy", || async {
        lb.metric("edgelb_healthy_targets{target_group=\"web\"}")
            .await
            == 2.0
    })
    .await;
    lb.rewrite(&one_group_config(
        listen,
        &[(a.addr, 1)],
        "deregistration_delay = \"2s\"",
    ));
    lb.signal("HUP");
    wait_for(Duration::from_secs(5), "generation 2", || async {
        lb.generation().await == 2
    })
    .await;
    let s = lb.status_json().await;
    let targets = s["target_groups"][0]["targets"].as_array().unwrap().clone();
    assert_eq!(targets.len(), 2);
    assert_eq!(targets[1]["address"], b.addr.to_string());
    assert_eq!(targets[1]["state"], "draining");
    assert_eq!(targets[1]["reason"], "Target.DeregistrationInProgress");
    let before = b.requests();
    for _ in 0..6 {
        assert_eq!(get(listen, "/").await.text(), "a");
    }
    assert_eq!(
        b.requests(),
        before,
        "a draining target gets no new request"
    );
    wait_for(
        Duration::from_secs(6),
        "the drained target to disappear",
        || async {
            lb.status_json().await["target_groups"][0]["targets"]
                .as_array()
                .unwrap()
                .len()
                == 1
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_config_picks_up_an_editor_style_rename() {
    let a = TestTarget::start("a").await;
    let b = TestTarget::start("b").await;
    let listen = listen_addr();
    let config = one_group_config(listen, &[(a.addr, 1)], "")
        .replace("[global]\n", "[global]\nwatch_config = true\n");
    let lb = Edgelb::start(&config).await;
    // An editor writes a new file beside the old one and renames it over.
    let new = config
        .replace(&a.addr.to_string(), &b.addr.to_string())
        .replace("ADMIN", &lb.admin.to_string());
    let tmp = lb.config_path.with_extension("toml.swp");
    std::fs::write(&tmp, new).unwrap();
    std::fs::rename(&tmp, &lb.config_path).unwrap();
    wait_for(Duration::from_secs(10), "the watched reload", || async {
        lb.generation().await == 2
    })
    .await;
    wait_for(Duration::from_secs(5), "b to serve", || async {
        get(listen, "/").await.text() == "b"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_and_stopping_reach_the_notify_socket() {
    let a = TestTarget::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let listen = listen_addr();
    let config = one_group_config(listen, &[(a.addr, 1)], "")
        .replace("ADMIN", &format!("127.0.0.1:{}", free_port()));
    let path = dir.path().join("edgelb.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = std::process::Command::new(edgelb_bin())
        .args(["run", "--config"])
        .arg(&path)
        .env("NOTIFY_SOCKET", &sock_path)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let recv = |sock: &UnixDatagram| {
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let ready = tokio::task::block_in_place(|| recv(&sock));
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready}");
    // The listener is bound by the time READY=1 is sent.
    assert!(tokio::net::TcpStream::connect(listen).await.is_ok());
    let _ = std::process::Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status();
    let reloading = tokio::task::block_in_place(|| recv(&sock));
    assert!(
        reloading.lines().any(|l| l == "RELOADING=1") && reloading.contains("MONOTONIC_USEC="),
        "{reloading}"
    );
    let ready_again = tokio::task::block_in_place(|| recv(&sock));
    assert!(ready_again.lines().any(|l| l == "READY=1"), "{ready_again}");
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let stopping = tokio::task::block_in_place(|| recv(&sock));
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping}");
    let code = tokio::task::spawn_blocking(move || child.wait().unwrap().code())
        .await
        .unwrap();
    assert_eq!(code, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_upgrade_by_overlapping_processes_refuses_nothing() {
    let a = TestTarget::start("a").await;
    let listen = listen_addr();
    let config = one_group_config(listen, &[(a.addr, 1)], "");
    let mut old = Edgelb::start(&config).await;
    // The new binary starts on the same addresses while the old one serves.
    let new = Edgelb::start(&config).await;
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicUsize::new(0));
    let client = {
        let (stop, failed) = (stop.clone(), failed.clone());
        tokio::spawn(async move {
            let mut done = 0;
            // Bounded: at most 2,000 new connections.
            for _ in 0..2000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                match tokio::net::TcpStream::connect(listen).await {
                    Ok(_) => {
                        let mut h1 = H1::connect(listen).await;
                        let req = http::Request::get("/")
                            .header("host", "x")
                            .body(http_body_util::Full::new(bytes::Bytes::new()))
                            .unwrap();
                        match h1.send(req).await {
                            Ok(got) if got.status == StatusCode::OK => {}
                            other => {
                                eprintln!("request failed during the upgrade: {other:?}");
                                failed.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    }
                    Err(e) => {
                        eprintln!("connect failed during the upgrade: {e}");
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                }
                done += 1;
            }
            done
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    old.signal("TERM");
    assert_eq!(old.wait_exit(Duration::from_secs(10)).await, 0);
    wait_for(
        Duration::from_secs(5),
        "requests served by the new process",
        || async {
            new.metric("edgelb_requests_total{listener=\"front\",target_group=\"web\"}")
                .await
                > 20.0
        },
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    let done = client.await.unwrap();
    assert!(done > 20);
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "a connection was refused or failed during the upgrade"
    );
}
