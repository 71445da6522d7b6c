//! A real ACME server on loopback: Debian's `pebble` (Let's Encrypt's ACME
//! test server), with its HTTPS certificate made at test time, its
//! validation ports pointed at edgelb's listeners and its names resolved
//! through the tests' DNS server.

use super::free_port;
use super::tls::TestCa;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running pebble; killed when dropped.
pub struct Pebble {
    child: Child,
    pub dir: tempfile::TempDir,
    /// The ACME directory URL.
    pub directory: String,
    /// The CA of pebble's own HTTPS certificate (for `[acme] ca_file`).
    pub ca_file: PathBuf,
    ca: TestCa,
    management: SocketAddr,
}

/// Whether the `pebble` binary is on this machine.
pub fn have_pebble() -> bool {
    Command::new("pebble")
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

impl Pebble {
    /// Starts pebble validating http-01 on `http_port` and tls-alpn-01 on
    /// `tls_port` of the addresses `dns` gives; returns once it answers.
    pub async fn start(http_port: u16, tls_port: u16, dns: SocketAddr) -> Pebble {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new();
        let ca_file = dir.path().join("pebble-ca.pem");
        ca.write_pem(&ca_file);
        let cert = ca.issue(dir.path(), "pebble", &["127.0.0.1", "localhost"]);
        let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let management: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let config = serde_json::json!({ "pebble": {
            "listenAddress": listen.to_string(),
            "managementListenAddress": management.to_string(),
            "certificate": cert.cert_path,
            "privateKey": cert.key_path,
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        let config_path = dir.path().join("pebble.json");
        std::fs::write(&config_path, config.to_string()).unwrap();
        let log = std::fs::File::create(dir.path().join("pebble.log")).unwrap();
        let child = Command::new("pebble")
            .arg("-config")
            .arg(&config_path)
            .arg("-dnsserver")
            .arg(dns.to_string())
            // Validate at once, never reject a nonce at random, and check
            // every order afresh (a renewal validates again).
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("pebble starts");
        let mut p = Pebble {
            child,
            dir,
            directory: format!("https://{listen}/dir"),
            ca_file,
            ca,
            management,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while p.get("/roots/0").await.is_none() {
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!("pebble exited with {status}:\n{}", p.log());
            }
            assert!(
                Instant::now() < deadline,
                "pebble did not start:\n{}",
                p.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        p
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }

    /// The root certificate pebble issues under (DER).
    pub async fn root(&self) -> rustls::pki_types::CertificateDer<'static> {
        use rustls::pki_types::pem::PemObject;
        let pem = self.get("/roots/0").await.expect("pebble's root");
        rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }

    /// GET on pebble's management interface.
    async fn get(&self, path: &str) -> Option<String> {
        use http_body_util::{BodyExt, Empty};
        let config = self
            .ca
            .client_config(&[&rustls::version::TLS13], &[b"http/1.1"]);
        let exchange = async {
            let tls = super::tls::tls_connect(config, self.management, "127.0.0.1")
                .await
                .ok()?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                    .await
                    .ok()?;
            tokio::spawn(conn);
            let req = http::Request::get(path)
                .header("host", self.management.to_string())
                .body(Empty::<bytes::Bytes>::new())
                .unwrap();
            let resp = sender.send_request(req).await.ok()?;
            if !resp.status().is_success() {
                return None;
            }
            let body = resp.into_body().collect().await.ok()?.to_bytes();
            Some(String::from_utf8_lossy(&body).into_owned())
        };
        tokio::time::timeout(Duration::from_secs(2), exchange)
            .await
            .ok()
            .flatten()
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
