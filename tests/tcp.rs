//! L4 listeners against real TCP targets: balancing, half-close, PROXY v2,
//! refused targets, idle timeout, max_connections, tls listeners.

mod common;

use common::tls::*;
use common::*;
use rustls::version::TLS13;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A TCP target: reads the client's stream to its end (after an optional PROXY
/// header it records), then answers `<name>:<what it read>` and closes.
struct EchoTarget {
    addr: SocketAddr,
    /// Connections that carried data (health checks carry none).
    served: Arc<AtomicUsize>,
    headers: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
}

async fn echo_target(name: &'static str, expect_proxy: bool) -> EchoTarget {
    let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    let headers = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (served2, headers2) = (served.clone(), headers.clone());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = socket.accept().await {
            let (served, headers) = (served2.clone(), headers2.clone());
            tokio::spawn(async move {
                if expect_proxy {
                    let mut head = vec![0u8; 16];
                    if s.read_exact(&mut head).await.is_err() {
                        return;
                    }
                    let len = u16::from_be_bytes([head[14], head[15]]) as usize;
                    let mut rest = vec![0u8; len];
                    s.read_exact(&mut rest).await.unwrap();
                    head.extend_from_slice(&rest);
                    headers.lock().unwrap().push(head);
                }
                let mut data = Vec::new();
                if s.read_to_end(&mut data).await.is_err() || data.is_empty() {
                    return;
                }
                served.fetch_add(1, Ordering::SeqCst);
                let mut answer = format!("{name}:").into_bytes();
                answer.extend_from_slice(&data);
                let _ = s.write_all(&answer).await;
            });
        }
    });
    EchoTarget {
        addr,
        served,
        headers,
    }
}

fn tcp_config(listen: SocketAddr, targets: &[(SocketAddr, u32)], listener_extra: &str) -> String {
    one_group_config(
        listen,
        targets,
        "[target_groups.health_check]\ninterval = \"1s\"\ntimeout = \"500ms\"\n",
    )
    .replace(
        "protocol = \"http\"\nbind",
        &format!("protocol = \"tcp\"\n{listener_extra}bind"),
    )
    .replace(
        "name = \"web\"\nprotocol = \"http\"",
        "name = \"web\"\nprotocol = \"tcp\"",
    )
}

/// Sends `data`, half-closes, and reads the answer to its end.
async fn exchange(listen: SocketAddr, data: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(listen).await.unwrap();
    s.write_all(data).await.unwrap();
    s.shutdown().await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_distribution_and_half_close() {
    let a = echo_target("a", false).await;
    let b = echo_target("b", false).await;
    let listen = listen_addr();
    let lb = Edgelb::start(&tcp_config(listen, &[(a.addr, 3), (b.addr, 1)], "")).await;
    wait_for(Duration::from_secs(5), "targets healthy", || async {
        lb.metric("edgelb_healthy_targets{target_group=\"web\"}")
            .await
            == 2.0
    })
    .await;
    for i in 0..40 {
        let answer = exchange(listen, format!("msg{i}").as_bytes()).await;
        let text = String::from_utf8(answer).unwrap();
        // Half-close: the target saw our end of stream and still answered in full.
        assert!(
            text == format!("a:msg{i}") || text == format!("b:msg{i}"),
            "{text}"
        );
    }
    assert_eq!(
        (
            a.served.load(Ordering::SeqCst),
            b.served.load(Ordering::SeqCst)
        ),
        (30, 10)
    );
    assert_eq!(
        lb.metric("edgelb_connections_total{listener=\"front\"}")
            .await,
        40.0
    );
    // "msg0".."msg9" are 4 bytes, "msg10".."msg39" 5; each answer adds "a:" or "b:".
    let sent = 10 * 4 + 30 * 5;
    assert_eq!(
        lb.metric("edgelb_processed_bytes_total{direction=\"in\",listener=\"front\"}")
            .await,
        sent as f64
    );
    assert_eq!(
        lb.metric("edgelb_processed_bytes_total{direction=\"out\",listener=\"front\"}")
            .await,
        (sent + 40 * 2) as f64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_v2_header_reaches_the_target_byte_for_byte() {
    let t = echo_target("t", true).await;
    let listen = listen_addr();
    let _lb = Edgelb::start(&tcp_config(
        listen,
        &[(t.addr, 1)],
        "proxy_protocol = true\n",
    ))
    .await;
    let mut s = TcpStream::connect(listen).await.unwrap();
    let client = s.local_addr().unwrap();
    s.write_all(b"payload").await.unwrap();
    s.shutdown().await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    assert_eq!(out, b"t:payload");
    let headers = t.headers.lock().unwrap().clone();
    let header = headers
        .iter()
        .find(|h| {
            h.len() == 28 && h[16..20] == [127, 0, 0, 1] && h[24..26] == client.port().to_be_bytes()
        })
        .expect("a PROXY header from our client");
    let mut expected = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    expected.extend_from_slice(&[0x21, 0x11, 0x00, 0x0c, 127, 0, 0, 1, 127, 0, 0, 1]);
    expected.extend_from_slice(&client.port().to_be_bytes());
    expected.extend_from_slice(&listen.port().to_be_bytes());
    assert_eq!(header, &expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_target_is_skipped_for_the_next() {
    let alive = echo_target("alive", false).await;
    let listen = listen_addr();
    let lb = Edgelb::start(&tcp_config(
        listen,
        &[(dead_addr(), 1), (alive.addr, 1)],
        "",
    ))
    .await;
    for i in 0..10 {
        assert_eq!(
            exchange(listen, format!("m{i}").as_bytes()).await,
            format!("alive:m{i}").as_bytes()
        );
    }
    assert_eq!(alive.served.load(Ordering::SeqCst), 10);
    // No target at all: the client is closed at once.
    let listen2 = listen_addr();
    let _lb2 = Edgelb::start(&tcp_config(listen2, &[(dead_addr(), 1)], "")).await;
    let mut s = TcpStream::connect(listen2).await.unwrap();
    let mut buf = [0u8; 8];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0);
    drop(lb);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed() {
    let t = echo_target("t", false).await;
    let listen = listen_addr();
    let _lb = Edgelb::start(&tcp_config(
        listen,
        &[(t.addr, 1)],
        "idle_timeout = \"1s\"\n",
    ))
    .await;
    let mut s = TcpStream::connect(listen).await.unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 8];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("closed by edgelb")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "closed after {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_refuses_and_counts() {
    let t = echo_target("t", false).await;
    let listen = listen_addr();
    let lb = Edgelb::start(&tcp_config(listen, &[(t.addr, 1)], "max_connections = 2\n")).await;
    let held1 = TcpStream::connect(listen).await.unwrap();
    let held2 = TcpStream::connect(listen).await.unwrap();
    wait_for(Duration::from_secs(5), "two active connections", || async {
        lb.metric("edgelb_active_connections{listener=\"front\"}")
            .await
            == 2.0
    })
    .await;
    let mut third = TcpStream::connect(listen).await.unwrap();
    let mut buf = [0u8; 8];
    let n = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buf))
        .await
        .expect("closed at once")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert_eq!(
        lb.metric("edgelb_rejected_connections_total{listener=\"front\"}")
            .await,
        1.0
    );
    drop((held1, held2));
    wait_for(
        Duration::from_secs(5),
        "the held connections to close",
        || async {
            lb.metric("edgelb_active_connections{listener=\"front\"}")
                .await
                == 0.0
        },
    )
    .await;
    assert_eq!(exchange(listen, b"again").await, b"t:again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listener_decrypts_to_a_tcp_target() {
    let t = echo_target("t", false).await;
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let cert = ca.issue(dir.path(), "db", &["db.example.com"]);
    let listen = listen_addr();
    let config = tcp_config(listen, &[(t.addr, 1)], "").replace(
        "protocol = \"tcp\"\nbind",
        &format!(
            "protocol = \"tls\"\ncertificates = [ {{ cert = \"{}\", key = \"{}\" }} ]\nbind",
            cert.cert_path.display(),
            cert.key_path.display()
        ),
    );
    let lb = Edgelb::start(&config).await;
    let mut s = tls_connect(ca.client_config(&[&TLS13], &[]), listen, "db.example.com")
        .await
        .unwrap();
    s.write_all(b"secret").await.unwrap();
    s.shutdown().await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out, b"t:secret");
    assert_eq!(
        lb.metric("edgelb_processed_bytes_total{direction=\"in\",listener=\"front\"}")
            .await,
        6.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_target_keeps_its_connections_until_the_delay_ends() {
    let a = echo_target("a", false).await;
    let listen = listen_addr();
    let config = tcp_config(listen, &[(a.addr, 1)], "").replace(
        "name = \"web\"\nprotocol = \"tcp\"",
        "name = \"web\"\nprotocol = \"tcp\"\nderegistration_delay = \"1s\"",
    );
    let lb = Edgelb::start(&config).await;
    let mut held = TcpStream::connect(listen).await.unwrap();
    held.write_all(b"still here").await.unwrap();
    wait_for(
        Duration::from_secs(5),
        "the connection to be open",
        || async {
            lb.metric("edgelb_active_connections{listener=\"front\"}")
                .await
                == 1.0
        },
    )
    .await;
    // The target leaves the file: its connection stays open while it drains…
    let b = echo_target("b", false).await;
    lb.rewrite(&config.replace(&a.addr.to_string(), &b.addr.to_string()));
    lb.signal("HUP");
    wait_for(Duration::from_secs(5), "generation 2", || async {
        lb.generation().await == 2
    })
    .await;
    let started = std::time::Instant::now();
    // …and is closed when the deregistration delay ends.
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(10), held.read(&mut buf))
        .await
        .expect("closed after the delay")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "closed after {:?}",
        started.elapsed()
    );
    assert_eq!(exchange(listen, b"new").await, b"b:new");
}
