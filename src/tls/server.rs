//! The server side of TLS: a certificate resolver choosing by SNI, and the
//! rustls configuration of an https or tls listener.

use super::acme::{ACME_TLS_ALPN, AlpnChallenges};
use crate::config::TlsPolicy;
use crate::config::certs::{LoadedCert, covers};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ClientHello, ProducesTickets, ResolvesServerCert, StoresServerSessions};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, version};
use std::sync::Arc;

/// Picks a listener's certificate by SNI: an exact name first, then a wildcard;
/// no SNI or no match → the default certificate.
#[derive(Debug)]
pub struct SniResolver {
    certs: Vec<LoadedCert>,
    /// Index of the certificate for handshakes no name matches.
    default: usize,
}

impl SniResolver {
    /// A resolver over `certs` (the first is the default).
    pub fn new(certs: Vec<LoadedCert>) -> Self {
        SniResolver { certs, default: 0 }
    }

    /// The certificate for `server_name`.
    pub fn choose(&self, server_name: Option<&str>) -> Option<&LoadedCert> {
        if let Some(name) = server_name {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            for wildcard in [false, true] {
                if let Some(c) = self
                    .certs
                    .iter()
                    .find(|c| covers(&c.names, &name, wildcard))
                {
                    return Some(c);
                }
            }
        }
        self.certs.get(self.default)
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.choose(hello.server_name()).map(|c| c.key.clone())
    }
}

/// A listener's certificates: the files and the ACME certificates issued so far.
pub struct ListenerCerts {
    pub files: Vec<LoadedCert>,
    /// Chosen before the files for their names; the default only when the
    /// listener has no file certificate.
    pub acme: Vec<LoadedCert>,
}

/// Resolves the tls-alpn-01 challenge certificate of a handshake's name.
#[derive(Debug)]
struct ChallengeResolver(Arc<AlpnChallenges>);

impl ResolvesServerCert for ChallengeResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.get(hello.server_name())
    }
}

/// The configuration a listener answers a tls-alpn-01 validation with (a
/// ClientHello offering ALPN `acme-tls/1`, SPEC §10): ALPN `acme-tls/1`
/// only, the challenge certificate of the name, TLS 1.2 and 1.3. Kept apart
/// from the listener's own configuration, whose ALPN list it would
/// otherwise change for every client.
pub fn challenge_config(challenges: Arc<AlpnChallenges>) -> Result<Arc<ServerConfig>, String> {
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&version::TLS13, &version::TLS12])
            .map_err(|e| format!("TLS configuration: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(ChallengeResolver(challenges)));
    config.alpn_protocols = vec![ACME_TLS_ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// What TLS listeners share across reloads, so sessions resume after one.
#[derive(Debug, Clone)]
pub struct SessionState {
    pub storage: Arc<dyn StoresServerSessions>,
    pub ticketer: Arc<dyn ProducesTickets>,
}

impl SessionState {
    /// A session cache and a ticket key for this process.
    pub fn new() -> Result<Self, String> {
        Ok(SessionState {
            storage: rustls::server::ServerSessionMemoryCache::new(16 * 1024),
            ticketer: rustls::crypto::ring::Ticketer::new()
                .map_err(|e| format!("TLS ticket key: {e}"))?,
        })
    }
}

/// The rustls configuration of a listener: versions by `policy` (never below
/// TLS 1.2), ring's AEAD forward-secret suites, ALPN `h2` + `http/1.1` (only
/// `http/1.1` without `http2`, nothing for `tls` listeners), and client
/// certificates asked for by `clients` (`tls::client_auth`).
///
/// A listener that asks for client certificates does not resume sessions:
/// a resumed session skips certificate verification, so a certificate
/// revoked, or a trust store changed, by a reload would still get in on a
/// ticket or a cached session from before. Every connection verifies.
pub fn server_config(
    certs: ListenerCerts,
    policy: TlsPolicy,
    alpn: &[&[u8]],
    sessions: &SessionState,
    clients: Option<Arc<dyn ClientCertVerifier>>,
) -> Result<Arc<ServerConfig>, String> {
    let versions: &[&rustls::SupportedProtocolVersion] = match policy {
        TlsPolicy::Tls13Only => &[&version::TLS13],
        TlsPolicy::Tls13Tls12 => &[&version::TLS13, &version::TLS12],
    };
    let builder =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(versions)
            .map_err(|e| format!("TLS configuration: {e}"))?;
    let default = if certs.files.is_empty() {
        0
    } else {
        certs.acme.len()
    };
    let resolver = Arc::new(SniResolver {
        certs: certs.acme.into_iter().chain(certs.files).collect(),
        default,
    });
    let mut config = match &clients {
        None => builder.with_no_client_auth().with_cert_resolver(resolver),
        Some(verifier) => builder
            .with_client_cert_verifier(verifier.clone())
            .with_cert_resolver(resolver),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    if clients.is_none() {
        config.session_storage = sessions.storage.clone();
        config.ticketer = sessions.ticketer.clone();
    } else {
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
    }
    Ok(Arc::new(config))
}
