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
    /// Unix seconds, when it could be read.
    pub not_before: Option<i64>,
}

/// Reads `cert` (a PEM chain, leaf first) and `key` (a PEM private key), and
/// checks that the key belongs to the certificate.
pub fn load(cert: &Path, key: &Path) -> Result<LoadedCert, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("cannot read certificates from {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: invalid PEM: {e}", cert.display()))?;
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read a private key from {}: {e}", key.display()))?;
    checked(
        chain,
        &private,
        &cert.display().to_string(),
        &key.display().to_string(),
    )
}

/// A certificate chain and key given as PEM text (an ACME certificate as
/// stored); `what` names it in errors.
pub fn from_pem(chain: &str, key: &str, what: &str) -> Result<LoadedCert, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{what}: invalid PEM: {e}"))?;
    let private = PrivateKeyDer::from_pem_slice(key.as_bytes())
        .map_err(|e| format!("{what}: cannot read its private key: {e}"))?;
    checked(chain, &private, what, &format!("{what}'s key"))
}

fn checked(
    chain: Vec<CertificateDer<'static>>,
    private: &PrivateKeyDer<'_>,
    cert: &str,
    key: &str,
) -> Result<LoadedCert, String> {
    let Some(leaf) = chain.first() else {
        return Err(format!("{cert} holds no certificate"));
    };
    let signing = rustls::crypto::ring::sign::any_supported_type(private)
        .map_err(|e| format!("{key}: unsupported private key: {e}"))?;
    let names = der::dns_names(leaf);
    let not_after = der::not_after(leaf);
    let not_before = der::not_before(leaf);
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|_| format!("{key} does not match the certificate in {cert}"))?;
    Ok(LoadedCert {
        key: Arc::new(certified),
        names,
        not_after,
        not_before,
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
