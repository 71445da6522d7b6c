//! Mutual TLS on listeners (SPEC §8), through the real binary: a PKI made at
//! test time (a root, an intermediate, good, expired, revoked and foreign
//! client certificates, CRLs), real rustls clients over HTTP/1.1 and HTTP/2,
//! a real PROXY v2 reader on a tls listener.

mod common;

use bytes::Bytes;
use common::tls::*;
use common::*;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, RevokedCertParams, SerialNumber,
    date_time_ymd,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A certificate authority of the test PKI.
struct Ca {
    cert: rcgen::CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str, issuer: Option<&Ca>) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.not_before = date_time_ymd(2020, 1, 1);
        params.not_after = date_time_ymd(2049, 1, 1);
        let cert = match issuer {
            None => rcgen::CertifiedIssuer::self_signed(params, key).unwrap(),
            Some(i) => rcgen::CertifiedIssuer::signed_by(params, key, &i.cert).unwrap(),
        };
        Ca { cert }
    }

    /// A client certificate for `cn` with `serial`, valid until `until` (y, m, d).
    fn client(&self, cn: &str, serial: &[u8], until: (i32, u8, u8)) -> Client {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        // In this order in the certificate: RFC 2253 writes it backwards.
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "edgelb tests");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.serial_number = Some(SerialNumber::from_slice(serial));
        params.not_before = date_time_ymd(2020, 1, 1);
        params.not_after = date_time_ymd(until.0, until.1, until.2);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.cert).unwrap();
        Client {
            chain: vec![cert.der().clone(), self.cert.der().clone()],
            key: key.serialize_der(),
        }
    }

    /// A revocation list of this CA naming `serials`, next updated on `next` (y, m, d).
    fn crl(&self, serials: &[&[u8]], next: (i32, u8, u8)) -> String {
        let params = CertificateRevocationListParams {
            this_update: date_time_ymd(2025, 1, 1),
            next_update: date_time_ymd(next.0, next.1, next.2),
            crl_number: SerialNumber::from(vec![1]),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(s),
                    revocation_time: date_time_ymd(2025, 1, 1),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params.signed_by(&self.cert).unwrap().pem().unwrap()
    }
}

/// A client's certificate chain (leaf first) and key.
#[derive(Clone)]
struct Client {
    chain: Vec<CertificateDer<'static>>,
    key: Vec<u8>,
}

const GOOD: &[u8] = &[0x1A, 0x2B];
const REVOKED: &[u8] = &[0x0B, 0xAD];

/// The PKI of a test and its files: the trust store holds the root and the
/// intermediate; clients are issued by the intermediate, which signs the CRL.
struct Pki {
    dir: tempfile::TempDir,
    server_ca: TestCa,
    server: TestCert,
    inter: Ca,
    good: Client,
    second: Client,
    expired: Client,
    revoked: Client,
    foreign: Client,
    trust_store: PathBuf,
    crl: PathBuf,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let server_ca = TestCa::new();
        let server = server_ca.issue(dir.path(), "server", &["api.example.com"]);
        let root = Ca::new("edgelb test root", None);
        let inter = Ca::new("edgelb test intermediate", Some(&root));
        let good = inter.client("good-client", GOOD, (2049, 1, 1));
        let second = inter.client("second-client", &[0x2C], (2049, 1, 1));
        let expired = inter.client("expired-client", &[0x3D], (2021, 3, 4));
        let revoked = inter.client("revoked-client", REVOKED, (2049, 1, 1));
        let other_root = Ca::new("someone else's CA", None);
        let foreign = other_root.client("foreign-client", &[0x4E], (2049, 1, 1));
        let trust_store = dir.path().join("clients-ca.pem");
        std::fs::write(&trust_store, root.cert.pem() + &inter.cert.pem()).unwrap();
        let crl = dir.path().join("clients.crl.pem");
        std::fs::write(&crl, inter.crl(&[REVOKED], (2049, 1, 1))).unwrap();
        Pki {
            dir,
            server_ca,
            server,
            inter,
            good,
            second,
            expired,
            revoked,
            foreign,
            trust_store,
            crl,
        }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// `mutual_authentication` in verify mode with this PKI's files.
    fn verify(&self, extra: &str) -> String {
        format!(
            "mode = \"verify\"\ntrust_store = \"{}\"\ncrls = [\"{}\"]\n{extra}",
            self.trust_store.display(),
            self.crl.display()
        )
    }

    /// A config with one `protocol` listener (https or tls) asking client
    /// certificates as `mtls` says, forwarding to `target`.
    fn config(&self, protocol: &str, listen: SocketAddr, target: SocketAddr, mtls: &str) -> String {
        let (group, extra) = match protocol {
            "tls" => ("tcp", "proxy_protocol = true\n"),
            _ => ("http", ""),
        };
        format!(
            r#"[global]
drain_timeout = "10s"
access_log = "{log}"

[admin]
bind = "ADMIN"

[[listeners]]
name = "front"
protocol = "{protocol}"
bind = "{listen}"
{extra}certificates = [ {{ cert = "{cert}", key = "{key}" }} ]
default_action = {{ forward = "web" }}

[listeners.mutual_authentication]
{mtls}
[[target_groups]]
name = "web"
protocol = "{group}"
targets = [ {{ address = "{target}" }} ]
"#,
            log = self.path("access.log").display(),
            cert = self.server.cert_path.display(),
            key = self.server.key_path.display(),
        )
    }

    /// A TLS client presenting `client` (none: no certificate), offering `alpn`.
    fn client_config(&self, client: Option<&Client>, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.server_ca.der()).unwrap();
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots);
        let mut config = match client {
            None => builder.with_no_client_auth(),
            Some(c) => builder
                .with_client_auth_cert(
                    c.chain.clone(),
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(c.key.clone())),
                )
                .unwrap(),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

/// An HTTP/1.1 connection over TLS presenting `client` (ALPN http/1.1).
async fn h1_connection(
    pki: &Pki,
    listen: SocketAddr,
    client: &Client,
) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let stream = tls_connect(
        pki.client_config(Some(client), &[b"http/1.1"]),
        listen,
        "api.example.com",
    )
    .await
    .unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

/// One HTTP/1.1 request over a new TLS connection presenting `client`, with
/// `spoof` headers of the client's own; `Err` when the connection fails.
async fn h1_get(
    pki: &Pki,
    listen: SocketAddr,
    client: Option<&Client>,
    spoof: &[(&str, &str)],
) -> Result<StatusCode, String> {
    let config = pki.client_config(client, &[b"http/1.1"]);
    let stream = tls_connect(config, listen, "api.example.com")
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut status = StatusCode::OK;
    // Two requests: the identity is the connection's, every request carries it.
    for _ in 0..2 {
        let mut req = Request::get("/who").header("host", "api.example.com");
        for (name, value) in spoof {
            req = req.header(*name, *value);
        }
        sender.ready().await.map_err(|e| e.to_string())?;
        let resp = sender
            .send_request(req.body(Full::new(Bytes::new())).unwrap())
            .await
            .map_err(|e| e.to_string())?;
        status = resp.status();
        resp.into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(status)
}

/// What is URL-encoded in a PEM header value (as ALB: all but unreserved).
const URL_ENCODED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn leaf_pem_encoded(client: &Client, whole_chain: bool) -> String {
    let certs = if whole_chain {
        &client.chain[..]
    } else {
        &client.chain[..1]
    };
    let pem: String = certs.iter().map(|c| pem_of(c)).collect();
    percent_encoding::utf8_percent_encode(&pem, URL_ENCODED).to_string()
}

fn pem_of(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap());
        pem.push('\n');
    }
    pem + "-----END CERTIFICATE-----\n"
}

const SPOOFS: &[(&str, &str)] = &[
    ("X-Amzn-Mtls-Clientcert-Subject", "CN=admin"),
    ("X-Amzn-Mtls-Clientcert", "forged"),
    ("x_amzn_mtls_clientcert_serial_number", "00"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_admits_a_good_certificate_and_tells_the_target_who_it_is() {
    let pki = Pki::new();
    for fast_path in [true, false] {
        let target = TestTarget::start("t").await;
        let listen = listen_addr();
        let config = pki.config("https", listen, target.addr, &pki.verify(""));
        let lb = Edgelb::start_dispatch(&config, fast_path).await;
        let status = h1_get(&pki, listen, Some(&pki.good), SPOOFS).await;
        assert_eq!(status, Ok(StatusCode::OK), "fast path {fast_path}");
        let h = target.last().headers;
        let one = |name: &str| {
            let all: Vec<_> = h.get_all(name).iter().collect();
            assert_eq!(all.len(), 1, "{name}: {all:?} (fast path {fast_path})");
            all[0].to_str().unwrap().to_owned()
        };
        assert_eq!(
            one("x-amzn-mtls-clientcert-subject"),
            "CN=good-client,O=edgelb tests"
        );
        assert_eq!(
            one("x-amzn-mtls-clientcert-issuer"),
            "CN=edgelb test intermediate"
        );
        assert_eq!(one("x-amzn-mtls-clientcert-serial-number"), "1A2B");
        assert_eq!(
            one("x-amzn-mtls-clientcert-validity"),
            "NotBefore=2020-01-01T00:00:00Z;NotAfter=2049-01-01T00:00:00Z"
        );
        assert_eq!(
            one("x-amzn-mtls-clientcert-leaf"),
            leaf_pem_encoded(&pki.good, false)
        );
        // The client's copies are gone, whatever their spelling.
        assert!(!h.contains_key("x-amzn-mtls-clientcert"), "{h:?}");
        assert!(
            !h.contains_key("x_amzn_mtls_clientcert_serial_number"),
            "{h:?}"
        );

        // HTTP/2 carries the same identity.
        let stream = tls_connect(
            pki.client_config(Some(&pki.second), &[b"h2"]),
            listen,
            "api.example.com",
        )
        .await
        .unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let resp = sender
            .send_request(
                Request::get("https://api.example.com/h2")
                    .header("x-amzn-mtls-clientcert-subject", "CN=admin")
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let h = target.last().headers;
        let subjects: Vec<_> = h.get_all("x-amzn-mtls-clientcert-subject").iter().collect();
        assert_eq!(subjects, ["CN=second-client,O=edgelb tests"]);
        assert_eq!(h["x-amzn-mtls-clientcert-serial-number"], "2C");

        // The access log names the client's certificate.
        let log_path = pki.path("access.log");
        wait_for(Duration::from_secs(5), "the access log", || async {
            std::fs::read_to_string(&log_path).is_ok_and(|l| l.contains("second-client"))
        })
        .await;
        let log = std::fs::read_to_string(&log_path).unwrap();
        let line: serde_json::Value =
            serde_json::from_str(log.lines().find(|l| l.contains("good-client")).unwrap()).unwrap();
        assert_eq!(line["client_cert_subject"], "CN=good-client,O=edgelb tests");
        assert_eq!(line["client_cert_serial"], "1A2B");
        assert_eq!(line["mtls_error"], serde_json::Value::Null);
        std::fs::remove_file(&log_path).unwrap();
        drop(lb);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_refuses_missing_untrusted_expired_and_revoked_certificates_by_reason() {
    let pki = Pki::new();
    let target = TestTarget::start("t").await;
    let listen = listen_addr();
    let lb = Edgelb::start(&pki.config("https", listen, target.addr, &pki.verify(""))).await;
    let series = |reason: &str| {
        format!("edgelb_client_certificate_errors_total{{listener=\"front\",reason=\"{reason}\"}}")
    };
    let scrape = lb.admin_get("/metrics").await.1;
    for reason in ["missing", "untrusted", "expired", "revoked"] {
        assert!(
            scrape.contains(&format!("{} 0", series(reason))),
            "{scrape}"
        );
    }
    let cases = [
        ("missing", None),
        ("untrusted", Some(&pki.foreign)),
        ("expired", Some(&pki.expired)),
        ("revoked", Some(&pki.revoked)),
    ];
    for (n, (reason, client)) in cases.into_iter().enumerate() {
        let got = h1_get(&pki, listen, client, &[]).await;
        assert!(got.is_err(), "{reason}: {got:?}");
        wait_for(Duration::from_secs(5), reason, || async {
            lb.metric(&series(reason)).await == 1.0
        })
        .await;
        assert_eq!(
            lb.metric("edgelb_tls_handshake_errors_total{listener=\"front\"}")
                .await,
            (n + 1) as f64
        );
    }
    assert_eq!(target.requests(), 0, "no refused client reached the target");
    // Each refusal leaves one line in the access log.
    let log_path = pki.path("access.log");
    wait_for(Duration::from_secs(5), "four handshake records", || async {
        std::fs::read_to_string(&log_path)
            .is_ok_and(|l| l.lines().filter(|l| l.contains("\"handshake\"")).count() == 4)
    })
    .await;
    let log = std::fs::read_to_string(&log_path).unwrap();
    let errors: Vec<String> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|v| v["mtls_error"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(errors, ["missing", "untrusted", "expired", "revoked"]);
    // A good client still gets in.
    assert_eq!(
        h1_get(&pki, listen, Some(&pki.good), &[]).await,
        Ok(StatusCode::OK),
        "{}",
        lb.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_is_admitted_when_expiry_is_ignored_but_not_a_revoked_one() {
    let pki = Pki::new();
    let target = TestTarget::start("t").await;
    let listen = listen_addr();
    let mtls = pki.verify("ignore_client_certificate_expiry = true\n");
    let _lb = Edgelb::start(&pki.config("https", listen, target.addr, &mtls)).await;
    assert_eq!(
        h1_get(&pki, listen, Some(&pki.expired), &[]).await,
        Ok(StatusCode::OK)
    );
    assert_eq!(
        target.last().headers["x-amzn-mtls-clientcert-validity"],
        "NotBefore=2020-01-01T00:00:00Z;NotAfter=2021-03-04T00:00:00Z"
    );
    assert!(h1_get(&pki, listen, Some(&pki.revoked), &[]).await.is_err());
    assert!(h1_get(&pki, listen, Some(&pki.foreign), &[]).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_hands_any_chain_to_the_target_and_nothing_without_one() {
    let pki = Pki::new();
    let target = TestTarget::start("t").await;
    let listen = listen_addr();
    let _lb =
        Edgelb::start(&pki.config("https", listen, target.addr, "mode = \"passthrough\"\n")).await;
    assert_eq!(
        h1_get(&pki, listen, Some(&pki.foreign), SPOOFS).await,
        Ok(StatusCode::OK)
    );
    let h = target.last().headers;
    let chain: Vec<_> = h.get_all("x-amzn-mtls-clientcert").iter().collect();
    assert_eq!(chain, [leaf_pem_encoded(&pki.foreign, true).as_str()]);
    assert!(!h.contains_key("x-amzn-mtls-clientcert-subject"), "{h:?}");
    assert_eq!(h1_get(&pki, listen, None, SPOOFS).await, Ok(StatusCode::OK));
    let h = target.last().headers;
    assert!(
        !h.keys()
            .any(|k| k.as_str().starts_with("x-amzn-mtls") || k.as_str().starts_with("x_amzn")),
        "{h:?}"
    );
}

/// A TCP target that reads one PROXY v2 header and returns it.
async fn proxy_reader() -> (SocketAddr, tokio::sync::mpsc::Receiver<Vec<u8>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut head = [0u8; 16];
                if s.read_exact(&mut head).await.is_err() {
                    return;
                }
                let len = u16::from_be_bytes([head[14], head[15]]) as usize;
                let mut rest = vec![0u8; len];
                if s.read_exact(&mut rest).await.is_err() {
                    return;
                }
                let mut all = head.to_vec();
                all.extend_from_slice(&rest);
                let _ = tx.send(all).await;
                let _ = s.write_all(b"hello").await;
            });
        }
    });
    (addr, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_listener_admits_verified_clients_and_says_so_in_the_proxy_header() {
    let pki = Pki::new();
    let (target, mut headers) = proxy_reader().await;
    let listen = listen_addr();
    let _lb = Edgelb::start(&pki.config("tls", listen, target, &pki.verify(""))).await;
    let mut stream = tls_connect(
        pki.client_config(Some(&pki.good), &[]),
        listen,
        "api.example.com",
    )
    .await
    .unwrap();
    let mut hello = [0u8; 5];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut hello))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&hello, b"hello");
    let header = tokio::time::timeout(Duration::from_secs(5), headers.recv())
        .await
        .unwrap()
        .unwrap();
    // After the 12 bytes of IPv4 addresses and ports: the PP2_TYPE_SSL TLV.
    let tlv = &header[28..];
    assert_eq!(tlv[0], 0x20, "{header:?}");
    assert_eq!(
        tlv[3], 0x07,
        "TLS, certificate on the connection and session"
    );
    assert_eq!(&tlv[4..8], &[0, 0, 0, 0], "verified");
    let subs = &tlv[8..];
    assert_eq!(&subs[..3], &[0x21, 0, 7]);
    assert_eq!(&subs[3..10], b"TLSv1.3");
    assert_eq!(&subs[10..13], &[0x22, 0, 11]);
    assert_eq!(&subs[13..24], b"good-client");

    // Without a certificate the connection never reaches the target.
    let refused = async {
        let mut s = tls_connect(pki.client_config(None, &[]), listen, "api.example.com").await?;
        let mut byte = [0u8; 1];
        s.read_exact(&mut byte).await.map(|_| ())
    };
    assert!(refused.await.is_err());
    assert!(
        tokio::time::timeout(Duration::from_millis(300), headers.recv())
            .await
            .is_err(),
        "the target saw the refused client"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_rereads_the_crl_and_an_unreadable_trust_store_changes_nothing() {
    let pki = Pki::new();
    let target = TestTarget::start("t").await;
    let listen = listen_addr();
    let config = pki.config("https", listen, target.addr, &pki.verify(""));
    let lb = Edgelb::start(&config).await;
    assert_eq!(
        h1_get(&pki, listen, Some(&pki.good), &[]).await,
        Ok(StatusCode::OK)
    );
    // A connection opened before the reload goes on after it.
    let mut open = h1_connection(&pki, listen, &pki.second).await;
    let ask = || {
        Request::get("/kept")
            .header("host", "api.example.com")
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    assert_eq!(
        open.send_request(ask()).await.unwrap().status(),
        StatusCode::OK
    );

    // The CRL now revokes the good client too; the file is re-read on reload.
    std::fs::write(&pki.crl, pki.inter.crl(&[REVOKED, GOOD], (2049, 1, 1))).unwrap();
    let before = lb.generation().await;
    lb.signal("HUP");
    wait_for(Duration::from_secs(10), "the reload", || async {
        lb.generation().await > before
    })
    .await;
    assert!(h1_get(&pki, listen, Some(&pki.good), &[]).await.is_err());
    wait_for(Duration::from_secs(5), "the revoked count", || async {
        lb.metric("edgelb_client_certificate_errors_total{listener=\"front\",reason=\"revoked\"}")
            .await
            == 1.0
    })
    .await;
    assert_eq!(
        h1_get(&pki, listen, Some(&pki.second), &[]).await,
        Ok(StatusCode::OK)
    );
    open.ready().await.unwrap();
    assert_eq!(
        open.send_request(ask()).await.unwrap().status(),
        StatusCode::OK
    );

    // An unreadable trust store fails the reload; the listener keeps its trust.
    let missing = pki.path("gone.pem");
    lb.rewrite(&config.replace(
        &pki.trust_store.display().to_string(),
        &missing.display().to_string(),
    ));
    let generation = lb.generation().await;
    lb.signal("HUP");
    wait_for(Duration::from_secs(10), "the failed reload", || async {
        lb.metric("edgelb_config_reloads_total{result=\"failure\"}")
            .await
            == 1.0
    })
    .await;
    assert_eq!(lb.generation().await, generation);
    assert_eq!(
        h1_get(&pki, listen, Some(&pki.second), &[]).await,
        Ok(StatusCode::OK)
    );
    assert!(h1_get(&pki, listen, Some(&pki.good), &[]).await.is_err());
    assert!(h1_get(&pki, listen, Some(&pki.foreign), &[]).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_not_resumed_where_client_certificates_are_asked() {
    let pki = Pki::new();
    let target = TestTarget::start("t").await;
    let listen = listen_addr();
    let _lb = Edgelb::start(&pki.config("https", listen, target.addr, &pki.verify(""))).await;
    // One client configuration: its session cache would offer a resumption.
    let config = pki.client_config(Some(&pki.good), &[b"http/1.1"]);
    for _ in 0..2 {
        let mut stream = tls_connect(config.clone(), listen, "api.example.com")
            .await
            .unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut reply = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut reply))
            .await
            .unwrap()
            .ok();
        assert!(
            reply.starts_with(b"HTTP/1.1 200"),
            "{:?}",
            String::from_utf8_lossy(&reply)
        );
        assert_eq!(
            stream.get_ref().1.handshake_kind(),
            Some(rustls::HandshakeKind::Full),
            "every connection verifies the certificate"
        );
    }
}

/// Runs `edgelb check` on `config`; (exit code, stderr).
fn check(dir: &Path, config: &str) -> (i32, String) {
    let path = dir.join("edgelb.toml");
    std::fs::write(&path, config.replace("ADMIN", "127.0.0.1:1")).unwrap();
    let out = std::process::Command::new(edgelb_bin())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `file:line:col` of the value of `key` in `config` (`at`: where in the
/// value), as check reports it.
fn position(config: &str, key: &str, at: usize) -> String {
    let n = config
        .lines()
        .position(|l| l.starts_with(&format!("{key} = ")))
        .unwrap();
    format!("edgelb.toml:{}:{}: ", n + 1, key.len() + 4 + at)
}

#[test]
fn check_names_the_trust_store_and_crl_problems() {
    let pki = Pki::new();
    let dir = pki.dir.path();
    let listen = listen_addr();
    let base = pki.config("https", listen, dead_addr(), &pki.verify(""));
    assert_eq!(check(dir, &base).0, 0);

    // Not PEM.
    std::fs::write(pki.path("junk.pem"), "not a certificate").unwrap();
    let junk = base.replace(
        &pki.trust_store.display().to_string(),
        &pki.path("junk.pem").display().to_string(),
    );
    let (code, err) = check(dir, &junk);
    assert_eq!(code, 1);
    assert!(err.contains(&position(&junk, "trust_store", 0)), "{err}");
    assert!(err.contains("not a PEM bundle of certificates"), "{err}");

    // A bundle without a CA certificate (a client's leaf).
    std::fs::write(pki.path("leaf.pem"), pem_of(&pki.good.chain[0])).unwrap();
    let leaf = base.replace(
        &pki.trust_store.display().to_string(),
        &pki.path("leaf.pem").display().to_string(),
    );
    let (code, err) = check(dir, &leaf);
    assert_eq!(code, 1);
    assert!(err.contains("no CA certificate"), "{err}");

    // A CRL another CA signed.
    let other = Ca::new("someone else's CA", None);
    std::fs::write(pki.path("other.crl.pem"), other.crl(&[GOOD], (2049, 1, 1))).unwrap();
    let foreign = base.replace(
        &pki.crl.display().to_string(),
        &pki.path("other.crl.pem").display().to_string(),
    );
    let (code, err) = check(dir, &foreign);
    assert_eq!(code, 1);
    assert!(err.contains(&position(&foreign, "crls", 1)), "{err}");
    assert!(
        err.contains("is not signed by a CA of the trust store"),
        "{err}"
    );

    // An expired CRL is a warning.
    std::fs::write(
        pki.path("old.crl.pem"),
        pki.inter.crl(&[GOOD], (2025, 6, 1)),
    )
    .unwrap();
    let old = base.replace(
        &pki.crl.display().to_string(),
        &pki.path("old.crl.pem").display().to_string(),
    );
    let (code, err) = check(dir, &old);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("expired on 2025-06-01T00:00:00Z"), "{err}");

    // mutual_authentication on an http listener, and an unknown mode.
    let http = base.replace("protocol = \"https\"", "protocol = \"http\"");
    let (code, err) = check(dir, &http);
    assert_eq!(code, 1);
    assert!(
        err.contains("applies to https and tls listeners only"),
        "{err}"
    );
    let (code, err) = check(dir, &base.replace("mode = \"verify\"", "mode = \"strict\""));
    assert_eq!(code, 1);
    assert!(err.contains("unknown mode \"strict\""), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_parked_while_idle_keeps_its_client_s_identity() {
    let pki = Pki::new();
    for fast_path in [true, false] {
        let target = TestTarget::start("t").await;
        let listen = listen_addr();
        let config = pki.config("https", listen, target.addr, &pki.verify(""));
        let lb = Edgelb::start_dispatch(&config, fast_path).await;
        let mut sender = h1_connection(&pki, listen, &pki.good).await;
        for round in 0..2 {
            if round == 1 {
                // Idle past the 1 s after which a connection parks.
                tokio::time::sleep(Duration::from_millis(1500)).await;
            }
            sender.ready().await.unwrap();
            let resp = sender
                .send_request(
                    Request::get("/who")
                        .header("host", "api.example.com")
                        .header("x-amzn-mtls-clientcert-subject", "CN=admin")
                        .body(Full::new(Bytes::new()))
                        .unwrap(),
                )
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::OK, "round {round}");
            resp.into_body().collect().await.unwrap();
            let h = target.last().headers;
            let subjects: Vec<_> = h.get_all("x-amzn-mtls-clientcert-subject").iter().collect();
            assert_eq!(
                subjects,
                ["CN=good-client,O=edgelb tests"],
                "round {round}, fast path {fast_path}"
            );
            assert_eq!(h["x-forwarded-proto"], "https");
        }
        // The access log names the client for the request after the pause too.
        let log_path = pki.path("access.log");
        wait_for(Duration::from_secs(5), "two access-log lines", || async {
            std::fs::read_to_string(&log_path).is_ok_and(|l| l.matches("good-client").count() >= 2)
        })
        .await;
        std::fs::remove_file(&log_path).unwrap();
        drop(lb);
    }
}
