//! The access log: JSON lines with the right values, never slowing requests,
//! reopened on SIGUSR1.

mod common;

use common::*;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_and_tcp_lines_carry_the_right_values() {
    let t = TestTarget::start("t").await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let (listen, tcp_listen) = (listen_addr(), listen_addr());
    let config = one_group_config(listen, &[(t.addr, 1)], "").replace(
        "[global]\n",
        &format!("[global]\naccess_log = \"{}\"\n", log.display()),
    ) + &format!(
        "\n[[listeners]]\nname = \"raw\"\nprotocol = \"tcp\"\nbind = \"{tcp_listen}\"\ndefault_action = {{ forward = \"rawtg\" }}\n\n[[target_groups]]\nname = \"rawtg\"\nprotocol = \"tcp\"\ntargets = [ {{ address = \"{}\" }} ]\n",
        t.addr
    );
    let lb = Edgelb::start(&config).await;
    let mut client = H1::connect(listen).await;
    let req = http::Request::get("/a/b?x=1")
        .header("host", "shop.example")
        .header("user-agent", "test-agent/1")
        .header("x-request-id", "rid-42");
    let got = client
        .send(
            req.body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(got.status, http::StatusCode::OK);
    // A raw TCP connection through the tcp listener (an HTTP request, as bytes).
    let mut s = tokio::net::TcpStream::connect(tcp_listen).await.unwrap();
    s.write_all(b"GET /raw HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    // The connection's line is written when it closes on both sides.
    drop(s);
    wait_for(Duration::from_secs(5), "two access log lines", || async {
        lines(&log).len() >= 2
    })
    .await;
    let all = lines(&log);
    let http = all
        .iter()
        .find(|l| l["type"] == "http")
        .expect("an http line");
    assert_eq!(http["listener"], "front");
    assert_eq!(http["method"], "GET");
    assert_eq!(http["host"], "shop.example");
    assert_eq!(http["path"], "/a/b");
    assert_eq!(http["query"], "x=1");
    assert_eq!(http["user_agent"], "test-agent/1");
    assert_eq!(http["request_id"], "rid-42");
    assert_eq!(http["elb_status_code"], 200);
    assert_eq!(http["target_status_code"], 200);
    assert_eq!(http["target_group"], "web");
    assert_eq!(http["target"], t.addr.to_string());
    assert_eq!(http["action"], "forward");
    assert_eq!(http["rule_priority"], "default");
    assert_eq!(http["sent_bytes"], 1);
    assert!(http["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(http["target_processing_time"].as_f64().unwrap() >= 0.0);
    assert!(http["time"].as_str().unwrap().ends_with('Z'));
    let tcp = all.iter().find(|l| l["type"] == "tcp").expect("a tcp line");
    assert_eq!(tcp["listener"], "raw");
    assert_eq!(tcp["target"], t.addr.to_string());
    assert!(tcp["received_bytes"].as_u64().unwrap() > 30);
    assert_eq!(tcp["sent_bytes"].as_u64().unwrap(), out.len() as u64);
    drop(lb);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr1_reopens_the_file() {
    let t = TestTarget::start("t").await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let listen = listen_addr();
    let config = one_group_config(listen, &[(t.addr, 1)], "").replace(
        "[global]\n",
        &format!("[global]\naccess_log = \"{}\"\n", log.display()),
    );
    let lb = Edgelb::start(&config).await;
    get(listen, "/before").await;
    wait_for(Duration::from_secs(5), "the first line", || async {
        lines(&log).len() == 1
    })
    .await;
    let rotated = dir.path().join("access.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    lb.signal("USR1");
    // The reopen happens on the writer's next turn; lines written before it
    // still go to the rotated file, so wait until one lands in the new file.
    wait_for(
        Duration::from_secs(10),
        "a line in the reopened file",
        || async {
            get(listen, "/after").await;
            lines(&log).iter().any(|l| l["path"] == "/after")
        },
    )
    .await;
    assert_eq!(lines(&rotated)[0]["path"], "/before");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_log_sink_drops_lines_but_never_requests() {
    let t = TestTarget::start("t").await;
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("stuck.log");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    // A reader that never reads: writes block once the pipe is full.
    let _reader = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .unwrap();
    let listen = listen_addr();
    let config = one_group_config(listen, &[(t.addr, 1)], "").replace(
        "[global]\n",
        &format!("[global]\naccess_log = \"{}\"\n", fifo.display()),
    );
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let path = dir.path().join("edgelb.toml");
    std::fs::write(&path, config.replace("ADMIN", &admin.to_string())).unwrap();
    let mut child = std::process::Command::new(edgelb_bin())
        .args(["run", "--config"])
        .arg(&path)
        .env("EDGELB_ACCESS_LOG_QUEUE", "8")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(Duration::from_secs(10), "edgelb", || async {
        admin_answers(admin).await
    })
    .await;
    let mut client = H1::connect(listen).await;
    for _ in 0..600 {
        assert_eq!(client.get("/").await.status, http::StatusCode::OK);
    }
    let metrics = get(admin, "/metrics").await.text();
    let dropped: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("edgelb_access_log_dropped_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(dropped > 0.0, "lines were dropped, not waited for");
    let _ = child.kill();
    let _ = child.wait();
}
