//! Test certificates made at test time (rcgen) and a real TLS client.

use rustls::pki_types::{CertificateDer, ServerName};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A development CA.
pub struct TestCa {
    ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

/// A leaf certificate written to PEM files.
pub struct TestCert {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub der: CertificateDer<'static>,
}

impl TestCa {
    pub fn new() -> Self {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "edgelb test CA");
        TestCa {
            ca: rcgen::CertifiedIssuer::self_signed(params, key).unwrap(),
        }
    }

    pub fn der(&self) -> CertificateDer<'static> {
        self.ca.der().clone()
    }

    /// Writes the CA certificate as PEM.
    pub fn write_pem(&self, path: &Path) {
        std::fs::write(path, self.ca.pem()).unwrap();
    }

    /// Issues a certificate for `names`, written as `<dir>/<file>.pem` and `.key`.
    pub fn issue(&self, dir: &Path, file: &str, names: &[&str]) -> TestCert {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        let cert_path = dir.join(format!("{file}.pem"));
        let key_path = dir.join(format!("{file}.key"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        TestCert {
            cert_path,
            key_path,
            der: cert.der().clone(),
        }
    }

    /// A client configuration trusting this CA, with the given versions and ALPN.
    pub fn client_config(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
        alpn: &[&[u8]],
    ) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der()).unwrap();
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

/// Connects with TLS to `addr` presenting `sni`.
pub async fn tls_connect(
    config: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    sni: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}

/// The certificate the server presented.
pub fn presented(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}
