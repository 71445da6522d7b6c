//! Idle client connections through the real binary: parked HTTP/1 connections
//! and silent new ones cost little memory, stay usable, and close at once when
//! their listener finishes; a burst's extra target connections do not linger.

mod common;

use common::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A connection idle this long has been parked (edgelb parks after 1 s).
const PAST_PARKING: Duration = Duration::from_millis(1500);

fn config_with(listen: std::net::SocketAddr, target: std::net::SocketAddr, extra: &str) -> String {
    one_group_config(listen, &[(target, 1)], "").replace(
        "default_action = { forward = \"web\" }",
        &format!("default_action = {{ forward = \"web\" }}\n{extra}"),
    )
}

/// Sends one GET on `s` and reads its whole (small) response.
async fn request(s: &mut TcpStream) -> String {
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(b"\r\n\r\nt") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("a response in time")
            .unwrap();
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// Reads until the peer closes; `Err` if it does not within `within`.
async fn closed_within(s: &mut TcpStream, within: Duration) -> Result<(), String> {
    let mut buf = [0u8; 256];
    match tokio::time::timeout(within, s.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => Ok(()),
        Ok(Ok(n)) => Err(format!("unexpected {n} bytes")),
        Err(_) => Err(format!("still open after {within:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_connections_close_at_once_when_the_daemon_stops() {
    let t = TestTarget::start("t").await;
    let listen = listen_addr();
    let mut lb = Edgelb::start(&config_with(listen, t.addr, "idle_timeout = \"60s\"")).await;
    let mut parked = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(listen).await.unwrap();
        assert!(request(&mut s).await.starts_with("HTTP/1.1 200 "));
        parked.push(s);
    }
    tokio::time::sleep(PAST_PARKING).await;
    lb.signal("TERM");
    // The idle timeout (60 s) does not hold the drain up.
    assert_eq!(lb.wait_exit(Duration::from_secs(5)).await, 0);
    for s in &mut parked {
        closed_within(s, Duration::from_secs(1)).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_connections_of_a_removed_listener_close_and_the_others_stay() {
    let t = TestTarget::start("t").await;
    let kept = listen_addr();
    let removed = listen_addr();
    let both = format!(
        r#"
[admin]
bind = "ADMIN"
[[listeners]]
name = "kept"
protocol = "http"
bind = "{kept}"
idle_timeout = "60s"
default_action = {{ forward = "web" }}
[[listeners]]
name = "removed"
protocol = "http"
bind = "{removed}"
idle_timeout = "60s"
default_action = {{ forward = "web" }}
[[target_groups]]
name = "web"
protocol = "http"
targets = [ {{ address = "{}" }} ]
"#,
        t.addr
    );
    let lb = Edgelb::start(&both).await;
    let mut on_kept = TcpStream::connect(kept).await.unwrap();
    let mut on_removed = TcpStream::connect(removed).await.unwrap();
    request(&mut on_kept).await;
    request(&mut on_removed).await;
    tokio::time::sleep(PAST_PARKING).await;
    let generation = lb.generation().await;
    let start = both.find("[[listeners]]\nname = \"removed\"").unwrap();
    let end = both.find("[[target_groups]]").unwrap();
    lb.rewrite(&format!("{}{}", &both[..start], &both[end..]));
    lb.signal("HUP");
    wait_for(Duration::from_secs(10), "the reload", || async {
        lb.generation().await > generation
    })
    .await;
    closed_within(&mut on_removed, Duration::from_secs(5))
        .await
        .unwrap();
    // The kept listener's parked connection is still served.
    assert!(request(&mut on_kept).await.starts_with("HTTP/1.1 200 "));
    assert_eq!(t.requests(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_idle_keep_alive_connections_cost_little_once_parked() {
    const CONNS: usize = 2000;
    edgelb::listener::budget::raise_nofile();
    let t = TestTarget::start("t").await;
    let listen = listen_addr();
    let lb = Edgelb::start(&config_with(listen, t.addr, "idle_timeout = \"60s\"")).await;
    assert_eq!(get(listen, "/").await.text(), "t");
    let anon = || proc_status_kib(lb.pid(), "RssAnon");
    let before = anon();
    // All requests first, then all responses: many are in flight at once, and
    // edgelb opens many target connections for them.
    let mut conns = Vec::with_capacity(CONNS);
    for _ in 0..CONNS {
        let mut s = TcpStream::connect(listen).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        conns.push(s);
    }
    let mut buf = [0u8; 1024];
    for s in &mut conns {
        let n = s.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200 "));
    }
    let peak = anon().saturating_sub(before);
    // Parked, the burst's target connections closed (hundreds of them, ~30 KiB
    // each), the freed memory returned: ~1 KiB per connection is left in a
    // debug build (~0.2–0.4 KiB in a release build).
    let budget_kib = (CONNS * 1536 / 1024) as u64;
    wait_for(
        Duration::from_secs(20),
        "idle connections to shrink to their parked size",
        || async { anon().saturating_sub(before) < budget_kib },
    )
    .await;
    assert!(
        peak > budget_kib,
        "the burst itself should have cost more than {budget_kib} KiB (it cost {peak} KiB)"
    );
    // Every connection is still open and served.
    for s in conns.iter_mut().step_by(10) {
        assert!(request(s).await.starts_with("HTTP/1.1 200 "));
    }
    assert_eq!(
        lb.metric("edgelb_active_connections{listener=\"front\"}")
            .await,
        CONNS as f64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_silent_connections_cost_little_and_are_served_when_they_speak() {
    const CONNS: usize = 1000;
    edgelb::listener::budget::raise_nofile();
    let t = TestTarget::start("t").await;
    let listen = listen_addr();
    let lb = Edgelb::start(&config_with(listen, t.addr, "idle_timeout = \"60s\"")).await;
    assert_eq!(get(listen, "/").await.text(), "t");
    let before = proc_status_kib(lb.pid(), "RssAnon");
    let mut conns = Vec::with_capacity(CONNS);
    for _ in 0..CONNS {
        conns.push(TcpStream::connect(listen).await.unwrap());
    }
    wait_for(
        Duration::from_secs(10),
        "every connection accepted",
        || async {
            lb.metric("edgelb_active_connections{listener=\"front\"}")
                .await
                == CONNS as f64
        },
    )
    .await;
    let grown = proc_status_kib(lb.pid(), "RssAnon").saturating_sub(before);
    // hyper's state (~5 KiB) is not made before the first byte.
    assert!(
        grown < (CONNS * 2500 / 1024) as u64,
        "{CONNS} silent connections grew edgelb by {grown} KiB"
    );
    for s in conns.iter_mut().step_by(50) {
        assert!(request(s).await.starts_with("HTTP/1.1 200 "));
    }
}
