//! Certificates and keys from PEM files, checked and ready for rustls.

use super::der;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

/// A certificate chain with its key, the names it serves and when it expires.
#[derive(Debug, Clone)]
pub struct LoadedCert {
    pub key: Arc<CertifiedKey>,
    /// subjectAltName DNS names, lower-case (wildcards as `*.example.com`).
    pub names: Vec<String>,
    /// Unix seconds, when it could be read.
    pub not_after: Option<i64>,
}

/// Reads `cert` (a PEM chain, leaf first) and `key` (a PEM private key), and
/// checks that the key belongs to the certificate.
pub fn load(cert: &Path, key: &Path) -> Result<LoadedCert, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("cannot read certificates from {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: invalid PEM: {e}", cert.display()))?;
    let Some(leaf) = chain.first() else {
        return Err(format!("{} holds no certificate", cert.display()));
    };
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read a private key from {}: {e}", key.display()))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&private)
        .map_err(|e| format!("{}: unsupported private key: {e}", key.display()))?;
    let names = der::dns_names(leaf);
    let not_after = der::not_after(leaf);
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|_| {
        format!(
            "{} does not match the certificate in {}",
            key.display(),
            cert.display()
        )
    })?;
    Ok(LoadedCert {
        key: Arc::new(certified),
        names,
        not_after,
    })
}

/// Whether certificate `names` cover `host` (lower-case): exactly, or by a
/// wildcard for exactly one leading label.
pub fn covers(names: &[String], host: &str, wildcard: bool) -> bool {
    names
        .iter()
        .any(|n| match (wildcard, n.strip_prefix("*.")) {
            (false, _) => n == host,
            (true, Some(suffix)) => host
                .split_once('.')
                .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
            (true, None) => false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_cover_one_label() {
        let names = vec!["example.com".to_owned(), "*.api.example.com".to_owned()];
        assert!(covers(&names, "example.com", false));
        assert!(!covers(&names, "v1.api.example.com", false));
        assert!(covers(&names, "v1.api.example.com", true));
        assert!(!covers(&names, "a.b.api.example.com", true));
        assert!(!covers(&names, "api.example.com", true));
    }
}
