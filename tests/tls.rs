//! TLS termination through the real binary, with certificates made at test time.

mod common;

use bytes::Bytes;
use common::tls::*;
use common::*;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::version::{TLS12, TLS13};
use std::net::SocketAddr;
use std::time::Duration;

struct Setup {
    listen: SocketAddr,
    lb: Edgelb,
    ca: TestCa,
    dir: tempfile::TempDir,
    default: TestCert,
    exact: TestCert,
    wild: TestCert,
    target: TestTarget,
}

fn https_config(
    listen: SocketAddr,
    target: SocketAddr,
    certs: &[&TestCert],
    extra: &str,
) -> String {
    let list: Vec<String> = certs
        .iter()
        .map(|c| {
            format!(
                "{{ cert = \"{}\", key = \"{}\" }}",
                c.cert_path.display(),
                c.key_path.display()
            )
        })
        .collect();
    one_group_config(listen, &[(target, 1)], "").replace(
        "protocol = \"http\"\nbind",
        &format!(
            "protocol = \"https\"\n{extra}certificates = [ {} ]\nbind",
            list.join(", ")
        ),
    )
}

async fn setup(extra: &str) -> Setup {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let default = ca.issue(dir.path(), "default", &["default.example.com"]);
    let exact = ca.issue(dir.path(), "exact", &["api.example.com"]);
    let wild = ca.issue(dir.path(), "wild", &["*.example.com"]);
    let target = TestTarget::start("t").await;
    let listen = listen_addr();
    let lb = Edgelb::start(&https_config(
        listen,
        target.addr,
        &[&default, &exact, &wild],
        extra,
    ))
    .await;
    Setup {
        listen,
        lb,
        ca,
        dir,
        default,
        exact,
        wild,
        target,
    }
}

/// One HTTP/1.1 GET over an established TLS stream.
async fn get_over<S>(stream: S) -> (hyper::client::conn::http1::SendRequest<Full<Bytes>>, Got)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let got = send_on(&mut sender).await;
    (sender, got)
}

async fn send_on(sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>) -> Got {
    sender.ready().await.unwrap();
    let resp = sender
        .send_request(
            Request::get("/tls")
                .header("host", "api.example.com")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    let (parts, body) = resp.into_parts();
    Got {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_picks_each_certificate_and_unknown_gets_the_default() {
    let s = setup("").await;
    let client = s.ca.client_config(&[&TLS13, &TLS12], &[b"http/1.1"]);
    let cases = [
        ("api.example.com", &s.exact),
        ("www.example.com", &s.wild),
        ("default.example.com", &s.default),
    ];
    for (sni, expected) in cases {
        let stream = tls_connect(client.clone(), s.listen, sni).await.unwrap();
        assert_eq!(presented(&stream), expected.der, "SNI {sni}");
        let (_, got) = get_over(stream).await;
        assert_eq!((got.status, got.text().as_str()), (StatusCode::OK, "t"));
    }
    // An unknown name gets the first certificate (the client then refuses it).
    let mut roots = rustls::RootCertStore::empty();
    roots.add(s.ca.der()).unwrap();
    let tcp = tokio::net::TcpStream::connect(s.listen).await.unwrap();
    let insecure = insecure_client();
    let stream = tokio_rustls::TlsConnector::from(insecure)
        .connect(
            rustls::pki_types::ServerName::try_from("unknown.test").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    assert_eq!(presented(&stream), s.default.der);
    let seen = s.target.last();
    assert_eq!(seen.headers["x-forwarded-proto"], "https");
    assert_eq!(
        seen.headers["x-forwarded-port"],
        s.listen.port().to_string().as_str()
    );
}

/// A client that accepts any certificate (to see what an unknown SNI gets),
/// with the verifier `tls_verify = false` uses.
fn insecure_client() -> std::sync::Arc<rustls::ClientConfig> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    std::sync::Arc::new(
        rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(std::sync::Arc::new(
                edgelb::tls::client::NoVerification(provider),
            ))
            .with_no_client_auth(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_is_negotiated_by_alpn_and_served() {
    let s = setup("").await;
    let stream = tls_connect(
        s.ca.client_config(&[&TLS13], &[b"h2", b"http/1.1"]),
        s.listen,
        "api.example.com",
    )
    .await
    .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let resp = sender
        .send_request(
            Request::get("https://api.example.com/h2")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "t");
    assert_eq!(s.target.last().headers["host"], "api.example.com");

    // http2 = false offers only http/1.1.
    let target = TestTarget::start("t2").await;
    let listen = listen_addr();
    let _lb = Edgelb::start(&https_config(
        listen,
        target.addr,
        &[&s.default],
        "http2 = false\n",
    ))
    .await;
    let stream = tls_connect(
        s.ca.client_config(&[&TLS13], &[b"h2", b"http/1.1"]),
        listen,
        "default.example.com",
    )
    .await
    .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_is_refused_under_tls13_only_and_counted() {
    let s = setup("tls_policy = \"tls13-only\"\n").await;
    let err = tls_connect(
        s.ca.client_config(&[&TLS12], &[]),
        s.listen,
        "api.example.com",
    )
    .await;
    assert!(err.is_err(), "a TLS 1.2-only client must be refused");
    wait_for(
        Duration::from_secs(5),
        "the handshake error to be counted",
        || async {
            s.lb.metric("edgelb_tls_handshake_errors_total{listener=\"front\"}")
                .await
                == 1.0
        },
    )
    .await;
    let ok = tls_connect(
        s.ca.client_config(&[&TLS13], &[]),
        s.listen,
        "api.example.com",
    )
    .await
    .unwrap();
    assert_eq!(
        ok.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    // The default policy also speaks TLS 1.2.
    let s2 = setup("").await;
    let v12 = tls_connect(
        s2.ca.client_config(&[&TLS12], &[]),
        s2.listen,
        "api.example.com",
    )
    .await
    .unwrap();
    assert_eq!(
        v12.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_swaps_certificates_for_new_connections_only() {
    let s = setup("").await;
    let client = s.ca.client_config(&[&TLS13], &[b"http/1.1"]);
    let old_stream = tls_connect(client.clone(), s.listen, "api.example.com")
        .await
        .unwrap();
    assert_eq!(presented(&old_stream), s.exact.der);
    let (mut old_conn, _) = get_over(old_stream).await;

    // Replace the exact certificate's files, then reload.
    let renewed = s.ca.issue(s.dir.path(), "exact", &["api.example.com"]);
    assert_ne!(renewed.der, s.exact.der);
    s.lb.signal("HUP");
    wait_for(Duration::from_secs(5), "generation 2", || async {
        s.lb.generation().await == 2
    })
    .await;

    // A fresh client (a resumed session would show the certificate it began with).
    let fresh = tls_connect(
        s.ca.client_config(&[&TLS13], &[b"http/1.1"]),
        s.listen,
        "api.example.com",
    )
    .await
    .unwrap();
    assert_eq!(presented(&fresh), renewed.der);
    // The connection opened before the reload goes on working.
    let got = send_on(&mut old_conn).await;
    assert_eq!((got.status, got.text().as_str()), (StatusCode::OK, "t"));
    let _ = &s.wild;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_mismatched_and_expired_certificates() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let a = ca.issue(dir.path(), "a", &["a.example.com"]);
    let b = ca.issue(dir.path(), "b", &["b.example.com"]);
    let mismatched = TestCert {
        cert_path: a.cert_path.clone(),
        key_path: b.key_path.clone(),
        der: a.der.clone(),
    };
    let config = https_config(listen_addr(), dead_addr(), &[&mismatched], "")
        .replace("ADMIN", "127.0.0.1:1");
    let path = dir.path().join("edgelb.toml");
    std::fs::write(&path, &config).unwrap();
    let out = std::process::Command::new(edgelb_bin())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = config
        .lines()
        .position(|l| l.starts_with("certificates"))
        .unwrap()
        + 1;
    assert!(
        stderr.contains(&format!("edgelb.toml:{line}:18: "))
            && stderr.contains("does not match the certificate"),
        "{stderr}"
    );

    // An expired certificate is a warning with its date, not an error.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["old.example.com".to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 3, 4);
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(dir.path().join("old.pem"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("old.key"), key.serialize_pem()).unwrap();
    let old = TestCert {
        cert_path: dir.path().join("old.pem"),
        key_path: dir.path().join("old.key"),
        der: cert.der().clone(),
    };
    let config =
        https_config(listen_addr(), dead_addr(), &[&old], "").replace("ADMIN", "127.0.0.1:1");
    std::fs::write(&path, &config).unwrap();
    let out = std::process::Command::new(edgelb_bin())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("expired on 2021-03-04T00:00:00Z"),
        "{stderr}"
    );
}

/// A TLS target: hyper over rustls with `cert`, answering `name`.
async fn tls_target(cert: &TestCert, name: &'static str) -> SocketAddr {
    let chain = vec![cert.der.clone()];
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&cert.key_path).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = socket.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |_req| async move {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                        Bytes::from_static(name.as_bytes()),
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}

use rustls::pki_types::pem::PemObject;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_target_groups_verify_with_ca_file_or_not_at_all() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    ca.write_pem(&dir.path().join("ca.pem"));
    let cert = ca.issue(dir.path(), "target", &["127.0.0.1", "localhost"]);
    let target = tls_target(&cert, "secure").await;
    let group = |listen: SocketAddr, extra: &str| {
        one_group_config(
            listen,
            &[(target, 1)],
            &format!(
                "{extra}\n[target_groups.health_check]\ninterval = \"1s\"\ntimeout = \"500ms\"\n"
            ),
        )
        .replace(
            "name = \"web\"\nprotocol = \"http\"",
            "name = \"web\"\nprotocol = \"https\"",
        )
    };

    // Verified against the group's CA; the https health check passes too.
    let l1 = listen_addr();
    let lb1 = Edgelb::start(&group(
        l1,
        &format!("ca_file = \"{}\"", dir.path().join("ca.pem").display()),
    ))
    .await;
    wait_for(
        Duration::from_secs(5),
        "the https target to be healthy",
        || async {
            lb1.metric("edgelb_healthy_targets{target_group=\"web\"}")
                .await
                == 1.0
        },
    )
    .await;
    let got = get(l1, "/").await;
    assert_eq!(
        (got.status, got.text().as_str()),
        (StatusCode::OK, "secure")
    );

    // Not trusted (the system roots do not know our CA): 502, and the check fails.
    let l2 = listen_addr();
    let lb2 = Edgelb::start(&group(l2, "fail_open = true")).await;
    assert_eq!(get(l2, "/").await.status, StatusCode::BAD_GATEWAY);
    wait_for(
        Duration::from_secs(5),
        "the untrusted target to be unhealthy",
        || async {
            lb2.metric("edgelb_unhealthy_targets{target_group=\"web\"}")
                .await
                == 1.0
        },
    )
    .await;

    // tls_verify = false: accepted, with a warning in the log.
    let l3 = listen_addr();
    let lb3 = Edgelb::start(&group(l3, "tls_verify = false")).await;
    let got = get(l3, "/").await;
    assert_eq!(
        (got.status, got.text().as_str()),
        (StatusCode::OK, "secure")
    );
    assert!(lb3.log().contains("tls_verify = false"), "{}", lb3.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_handshake_is_dropped_after_10s_and_counted() {
    use tokio::io::AsyncReadExt;
    let s = setup("").await;
    let mut silent = tokio::net::TcpStream::connect(s.listen).await.unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 8];
    let n = tokio::time::timeout(Duration::from_secs(20), silent.read(&mut buf))
        .await
        .expect("dropped by edgelb")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(
        started.elapsed() >= Duration::from_secs(9),
        "dropped after {:?}",
        started.elapsed()
    );
    wait_for(
        Duration::from_secs(5),
        "the error to be counted",
        || async {
            s.lb.metric("edgelb_tls_handshake_errors_total{listener=\"front\"}")
                .await
                == 1.0
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_tls_connections_are_parked_with_their_session_and_served_again() {
    const CONNS: usize = 300;
    edgelb::listener::budget::raise_nofile();
    let s = setup("idle_timeout = \"60s\"\n").await;
    let client = s.ca.client_config(&[&TLS13], &[b"http/1.1"]);
    let anon = || proc_status_kib(s.lb.pid(), "RssAnon");
    // Warm: the first connection's one-time costs are not the connections'.
    let (mut first, got) = get_over(
        tls_connect(client.clone(), s.listen, "api.example.com")
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(got.status, StatusCode::OK);
    let before = anon();
    let mut senders = Vec::with_capacity(CONNS);
    for _ in 0..CONNS {
        let stream = tls_connect(client.clone(), s.listen, "api.example.com")
            .await
            .unwrap();
        let (sender, got) = get_over(stream).await;
        assert_eq!(got.status, StatusCode::OK);
        senders.push(sender);
    }
    let held = anon().saturating_sub(before);
    // Parked after 1 s idle: the HTTP/1 server's buffers and the task go, the
    // TLS session (rustls' state, its keys and 4 KiB read buffer) stays. In a
    // debug build a connection holds ~27 KiB while served and ~17 KiB parked.
    let budget_kib = (CONNS * 22) as u64;
    wait_for(
        Duration::from_secs(20),
        "idle TLS connections to shrink to their parked size",
        || async { anon().saturating_sub(before) < budget_kib },
    )
    .await;
    assert!(
        held > budget_kib,
        "held in hyper the connections should cost more than {budget_kib} KiB (they cost {held} KiB)"
    );
    // Every connection is still open and served on its own session.
    for sender in senders.iter_mut().step_by(10) {
        let got = send_on(sender).await;
        assert_eq!((got.status, got.text().as_str()), (StatusCode::OK, "t"));
    }
    assert_eq!(send_on(&mut first).await.status, StatusCode::OK);
    assert_eq!(
        s.lb.metric("edgelb_active_connections{listener=\"front\"}")
            .await,
        (CONNS + 1) as f64
    );
}
