//! Certificates ordered, served and renewed by edgelb itself (SPEC §10),
//! against a real ACME server: Debian's `pebble`, validating against
//! edgelb's own listeners, names resolved through the tests' DNS server.
//!
//! `.ci/run` installs pebble and runs this with `EDGELB_PEBBLE=1`, which
//! makes its absence a failure; elsewhere the tests are skipped without it.

mod common;

use bytes::Bytes;
use common::dns_server::DnsServer;
use common::pebble::{Pebble, have_pebble};
use common::*;
use http_body_util::{BodyExt, Empty};
use rustls::pki_types::CertificateDer;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

const NAMES: [&str; 2] = ["shop.example.com", "www.shop.example.com"];
const TOKEN: &str = "acme-test-token-0123456789";

fn pebble_available() -> bool {
    let have = have_pebble();
    assert!(
        have || std::env::var_os("EDGELB_PEBBLE").is_none(),
        "EDGELB_PEBBLE=1 but pebble is not installed (apt-get install pebble)"
    );
    if !have {
        eprintln!("skipped: pebble is not installed (EDGELB_PEBBLE=1 makes this a failure)");
    }
    have
}

/// An http listener `web` on `http` (http-01 is answered there), an https
/// listener `secure` on `https` whose certificate is `{ acme = NAMES }`,
/// both forwarding to group `app` of `target`.
fn listeners(http: &str, https: &str, target: SocketAddr) -> String {
    format!(
        r#"[[listeners]]
name = "web"
protocol = "http"
bind = "{http}"
default_action = {{ forward = "app" }}

[[listeners]]
name = "secure"
protocol = "https"
bind = "{https}"
certificates = [ {{ acme = ["{n0}", "{n1}"] }} ]
default_action = {{ forward = "app" }}

[[target_groups]]
name = "app"
protocol = "http"
targets = [ {{ address = "{target}", weight = 1 }} ]
"#,
        n0 = NAMES[0],
        n1 = NAMES[1],
    )
}

/// pebble, its DNS, a target and edgelb with an http and an https listener
/// whose certificate is `{ acme = NAMES }`.
struct Setup {
    pebble: Pebble,
    dns: DnsServer,
    lb: Edgelb,
    _target: TestTarget,
    https: SocketAddr,
    http: SocketAddr,
}

impl Setup {
    async fn start(challenge: &str) -> Setup {
        let target = TestTarget::start("app").await;
        let dns = DnsServer::start(1).await;
        for n in NAMES {
            dns.set_hosts(n, &["127.0.0.1"]);
        }
        let http = listen_addr();
        let https = listen_addr();
        let pebble = Pebble::start(http.port(), https.port(), dns.addr).await;
        let token = pebble.dir.path().join("admin.token");
        std::fs::write(&token, TOKEN).unwrap();
        let config = format!(
            r#"[admin]
bind = "ADMIN"
token_file = "{token}"

[acme]
directory = "{directory}"
contact = ["mailto:ops@example.com"]
terms_of_service_agreed = true
storage = "acme"
challenge = "{challenge}"
ca_file = "{ca}"

{listeners}"#,
            listeners = listeners(&http.to_string(), &https.to_string(), target.addr),
            token = token.display(),
            directory = pebble.directory,
            ca = pebble.ca_file.display(),
        );
        let lb = Edgelb::start(&config).await;
        Setup {
            pebble,
            dns,
            lb,
            _target: target,
            https,
            http,
        }
    }

    /// `/status`'s entry for the certificate.
    async fn acme_status(&self) -> serde_json::Value {
        self.lb.status_json().await["acme"][0].clone()
    }

    async fn wait_state(&self, state: &str) {
        let admin = self.lb.admin;
        wait_for(
            Duration::from_secs(60),
            &format!("ACME state {state}"),
            || async move {
                let doc: serde_json::Value =
                    serde_json::from_str(&get(admin, "/status").await.text()).unwrap_or_default();
                doc["acme"][0]["state"] == state
            },
        )
        .await;
    }

    async fn orders(&self, result: &str) -> f64 {
        self.lb
            .metric(&format!("edgelb_acme_orders_total{{result=\"{result}\"}}"))
            .await
    }

    async fn wait_orders(&self, result: &str, n: f64) {
        let admin = self.lb.admin;
        let series = format!("edgelb_acme_orders_total{{result=\"{result}\"}} {n}");
        wait_for(Duration::from_secs(60), &series.clone(), || {
            let series = series.clone();
            async move { get(admin, "/metrics").await.text().contains(&series) }
        })
        .await;
    }

    /// A client trusting pebble's root only.
    async fn client(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.pebble.root().await).unwrap();
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// The certificate a handshake for `name` gets (verified against pebble's root).
    async fn served(&self, name: &str) -> CertificateDer<'static> {
        let tls = common::tls::tls_connect(self.client(&[b"http/1.1"]).await, self.https, name)
            .await
            .expect("a verified handshake");
        common::tls::presented(&tls)
    }

    async fn renew(&self) {
        let (status, _) = admin_post(self.lb.admin, "/acme/renew").await;
        assert_eq!(status, 202);
    }
}

async fn admin_post(admin: SocketAddr, path: &str) -> (u16, String) {
    common::admin_call(admin, TOKEN, "POST", path, "").await
}

/// A keep-alive HTTPS connection to edgelb for `name`.
async fn keep_alive(
    config: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    name: &str,
) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    let tls = common::tls::tls_connect(config, addr, name).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

async fn get_on(
    sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    host: &str,
) -> (u16, String) {
    sender.ready().await.unwrap();
    let req = http::Request::get("/")
        .header("host", host)
        .body(Empty::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http01_orders_serves_renews_under_an_open_connection_and_a_restart_orders_nothing() {
    if !pebble_available() {
        return;
    }
    let mut s = Setup::start("http-01").await;
    // Until the first issuance there is nothing to serve for the names.
    s.wait_state("valid").await;
    let status = s.acme_status().await;
    assert_eq!(status["names"], serde_json::json!(NAMES), "{status}");
    assert!(status["expiry"].is_string(), "{status}");
    assert_eq!(status["last_error"], serde_json::Value::Null);
    assert_eq!(s.orders("success").await, 1.0);
    assert_eq!(s.orders("failure").await, 0.0);

    // Served for both names, verified against pebble's root, and forwarded.
    let first = s.served(NAMES[0]).await;
    assert_eq!(s.served(NAMES[1]).await, first);
    let mut open = keep_alive(s.client(&[b"http/1.1"]).await, s.https, NAMES[0]).await;
    assert_eq!(get_on(&mut open, NAMES[0]).await, (200, "app".to_owned()));
    let expiry =
        s.lb.metric(&format!(
            "edgelb_certificate_expiry_timestamp_seconds{{certificate=\"{}\",listener=\"secure\"}}",
            NAMES[0]
        ))
        .await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        expiry > now,
        "expiry {expiry} now {now}: {}",
        get(s.lb.admin, "/metrics")
            .await
            .text()
            .lines()
            .filter(|l| l.contains("certificate"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // Other paths under the challenge prefix go through the rules.
    let other = get(s.http, "/.well-known/acme-challenge/not-a-token").await;
    assert_eq!(
        (other.status.as_u16(), other.text()),
        (200, "app".to_owned())
    );

    // Stored owner-only.
    let storage = s.lb.dir.path().join("acme");
    use std::os::unix::fs::PermissionsExt;
    for f in std::fs::read_dir(&storage).unwrap() {
        let mode = f.unwrap().metadata().unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
    }
    let account = std::fs::read(storage.join("account.json")).unwrap();

    // Renewed on demand: a new certificate for new handshakes, and the open
    // connection goes on.
    s.renew().await;
    s.wait_orders("success", 2.0).await;
    let renewed = s.served(NAMES[0]).await;
    assert_ne!(renewed, first);
    assert_eq!(get_on(&mut open, NAMES[0]).await, (200, "app".to_owned()));

    // A restart serves the stored certificate with the stored account: no order.
    s.lb.restart().await;
    s.wait_state("valid").await;
    assert_eq!(s.served(NAMES[0]).await, renewed);
    assert_eq!(s.orders("success").await, 0.0);
    assert_eq!(
        std::fs::read(storage.join("account.json")).unwrap(),
        account
    );
    // …and the next renewal uses that account (no new one).
    s.renew().await;
    s.wait_orders("success", 1.0).await;
    assert_eq!(
        std::fs::read(storage.join("account.json")).unwrap(),
        account
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn01_orders_without_changing_what_clients_negotiate() {
    if !pebble_available() {
        return;
    }
    let s = Setup::start("tls-alpn-01").await;
    s.wait_state("valid").await;
    let cert = s.served(NAMES[1]).await;
    assert!(!cert.is_empty());
    // Clients still negotiate h2 and http/1.1 as before.
    let tls = common::tls::tls_connect(s.client(&[b"h2"]).await, s.https, NAMES[0])
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut open = keep_alive(s.client(&[b"http/1.1"]).await, s.https, NAMES[0]).await;
    assert_eq!(get_on(&mut open, NAMES[0]).await, (200, "app".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_validation_is_counted_keeps_the_old_certificate_and_a_retry_succeeds() {
    if !pebble_available() {
        return;
    }
    let s = Setup::start("http-01").await;
    s.wait_state("valid").await;
    let first = s.served(NAMES[0]).await;

    // The names now resolve where edgelb does not listen: validation fails.
    s.dns.set_hosts(NAMES[1], &["127.0.0.9"]);
    s.renew().await;
    s.wait_orders("failure", 1.0).await;
    s.wait_state("failed").await;
    let status = s.acme_status().await;
    let error = status["last_error"].as_str().unwrap_or_default().to_owned();
    assert!(error.contains("validation"), "{status}");
    // The old certificate keeps serving.
    assert_eq!(s.served(NAMES[0]).await, first);
    assert!(s.lb.log().contains("ACME order failed"));

    // DNS fixed: the retry (asked for at once here instead of after the
    // one-minute back-off) succeeds.
    s.dns.set_hosts(NAMES[1], &["127.0.0.1"]);
    s.renew().await;
    s.wait_orders("success", 2.0).await;
    s.wait_state("valid").await;
    assert_ne!(s.served(NAMES[0]).await, first);
    assert_eq!(s.acme_status().await["last_error"], serde_json::Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_cluster_nodes_order_once_and_answer_each_others_challenges() {
    if !pebble_available() {
        return;
    }
    let have_etcd = common::etcd::have_etcd();
    assert!(
        have_etcd || std::env::var_os("EDGELB_PEBBLE").is_none(),
        "EDGELB_PEBBLE=1 but etcd is not installed (apt-get install etcd-server)"
    );
    if !have_etcd {
        eprintln!("skipped: etcd is not installed");
        return;
    }
    let target = TestTarget::start("app").await;
    let etcd = common::etcd::EtcdCluster::start(1).await;
    // Each name on another node: whichever node orders, the other answers
    // one of the challenges from what the first shared through etcd.
    let dns = DnsServer::start(1).await;
    dns.set_hosts(NAMES[0], &["127.0.0.2"]);
    dns.set_hosts(NAMES[1], &["127.0.0.3"]);
    let (http_port, https_port) = (free_port(), free_port());
    let pebble = Pebble::start(http_port, https_port, dns.addr).await;
    let token = pebble.dir.path().join("admin.token");
    std::fs::write(&token, TOKEN).unwrap();
    let mut nodes = Vec::new();
    for i in 0..2 {
        nodes.push(
            Edgelb::start(&format!(
                "[admin]\nbind = \"ADMIN\"\ntoken_file = \"{}\"\n\n[cluster]\netcd = {}\nprefix = \"/lb\"\nnode_name = \"n{i}\"\nbind_ip = \"127.0.0.{}\"\n",
                token.display(),
                etcd.endpoints_toml(&[0]),
                i + 2
            ))
            .await,
        );
    }
    let shared = format!(
        r#"[acme]
directory = "{directory}"
terms_of_service_agreed = true
ca_file = "{ca}"

{listeners}"#,
        listeners = listeners(
            &format!("127.0.0.1:{http_port}"),
            &format!("127.0.0.1:{https_port}"),
            target.addr
        ),
        directory = pebble.directory,
        ca = pebble.ca_file.display(),
    );
    let (status, answer) =
        common::admin_call(nodes[0].admin, TOKEN, "PUT", "/cluster/config", &shared).await;
    assert_eq!(status, 200, "{answer}");

    for n in &nodes {
        let admin = n.admin;
        wait_for(
            Duration::from_secs(60),
            "the certificate on every node",
            || async move {
                let doc: serde_json::Value =
                    serde_json::from_str(&get(admin, "/status").await.text()).unwrap_or_default();
                doc["acme"][0]["state"] == "valid"
            },
        )
        .await;
    }
    // Ordered once, by one node (its count follows the certificate's
    // arrival on the nodes); both serve it.
    let admins: Vec<SocketAddr> = nodes.iter().map(|n| n.admin).collect();
    let count = |result: &'static str| {
        let admins = admins.clone();
        async move {
            let mut sum = 0.0;
            for a in admins {
                let text = get(a, "/metrics").await.text();
                let series = format!("edgelb_acme_orders_total{{result=\"{result}\"}} ");
                sum += text
                    .lines()
                    .find_map(|l| l.strip_prefix(series.as_str()))
                    .map_or(0.0, |v| v.trim().parse::<f64>().unwrap());
            }
            sum
        }
    };
    wait_for(Duration::from_secs(10), "the one order counted", || async {
        count("success").await >= 1.0
    })
    .await;
    assert_eq!(count("success").await, 1.0);
    assert_eq!(count("failure").await, 0.0);
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pebble.root().await).unwrap();
    let client = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    let mut served = Vec::new();
    for ip in ["127.0.0.2", "127.0.0.3"] {
        let addr: SocketAddr = format!("{ip}:{https_port}").parse().unwrap();
        let tls = common::tls::tls_connect(client.clone(), addr, NAMES[0])
            .await
            .unwrap();
        served.push(common::tls::presented(&tls));
    }
    assert_eq!(served[0], served[1]);
    // The account and the certificate live in etcd, not in local files.
    let certs = etcd
        .post(
            0,
            "/v3/kv/range",
            r#"{"key":"L2xiL2FjbWUv","range_end":"L2xiL2FjbWUw","keys_only":true}"#,
        )
        .await
        .unwrap();
    let keys: Vec<String> = certs["kvs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kv| {
            use base64::Engine;
            String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(kv["key"].as_str().unwrap())
                    .unwrap(),
            )
            .unwrap()
        })
        .collect();
    assert!(keys.contains(&"/lb/acme/account".to_owned()), "{keys:?}");
    assert!(
        keys.iter()
            .any(|k| k.starts_with("/lb/acme/certs/shop.example.com-")),
        "{keys:?}"
    );
    // The challenges were withdrawn once the order was done.
    assert!(!keys.iter().any(|k| k.contains("/acme/http/")), "{keys:?}");
}
