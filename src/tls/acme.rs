//! The tls-alpn-01 challenge (RFC 8737): while an ACME order for a name is
//! validated, a handshake for that name offering ALPN `acme-tls/1` gets a
//! self-signed certificate carrying the challenge's digest. The listeners'
//! resolvers read these as they change, without a snapshot rebuild.

use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// What the ACME certificates of a snapshot are: the certificates issued
/// so far, by their entry's names, and the tls-alpn-01 challenges when that
/// is the challenge.
#[derive(Debug, Clone, Default)]
pub struct AcmeCerts {
    pub issued: HashMap<Vec<String>, crate::config::certs::LoadedCert>,
    pub alpn: Option<Arc<AlpnChallenges>>,
}

/// The ALPN protocol of the challenge.
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The challenge certificates being answered, by name.
#[derive(Debug, Default)]
pub struct AlpnChallenges {
    by_name: Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

impl AlpnChallenges {
    /// Answers `domain` with a certificate carrying `digest`.
    pub fn publish(&self, domain: &str, digest: &[u8]) -> Result<(), String> {
        let key = challenge_certificate(domain, digest)?;
        self.lock()
            .insert(domain.to_ascii_lowercase(), Arc::new(key));
        Ok(())
    }

    /// Stops answering `domain`.
    pub fn withdraw(&self, domain: &str) {
        self.lock().remove(&domain.to_ascii_lowercase());
    }

    /// The challenge certificate for `server_name`, if one is answered.
    pub fn get(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let name = server_name?.trim_end_matches('.').to_ascii_lowercase();
        self.lock().get(&name).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<CertifiedKey>>> {
        self.by_name.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A self-signed certificate for `domain` with the acmeIdentifier extension.
fn challenge_certificate(domain: &str, digest: &[u8]) -> Result<CertifiedKey, String> {
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params =
        rcgen::CertificateParams::new(vec![domain.to_owned()]).map_err(|e| e.to_string())?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signing =
        rustls::crypto::ring::sign::any_supported_type(&private).map_err(|e| e.to_string())?;
    Ok(CertifiedKey::new(vec![cert.der().clone()], signing))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_come_and_go_by_name() {
        let c = AlpnChallenges::default();
        assert!(c.get(Some("a.example.com")).is_none());
        c.publish("A.example.com", &[7u8; 32]).unwrap();
        let key = c.get(Some("a.example.com.")).unwrap();
        // The digest is in the certificate (the extension's OCTET STRING).
        let der = key.cert[0].as_ref();
        assert!(
            der.windows(34)
                .any(|w| w[0] == 0x04 && w[1] == 32 && w[2..] == [7u8; 32])
        );
        c.withdraw("a.example.com");
        assert!(c.get(Some("a.example.com")).is_none());
    }
}
