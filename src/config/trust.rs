//! Client-certificate trust (SPEC §8): a listener's trust store and its
//! revocation lists, read and checked. Validation (`edgelb check`, every
//! reload) reports what is wrong with a position; the TLS configuration of a
//! listener is built from the same reading, so what was checked is what runs.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};
use std::path::Path;
use x509_cert::Certificate;
use x509_cert::crl::CertificateList;
use x509_cert::der::{Decode, Encode};
use x509_cert::ext::pkix::BasicConstraints;

/// The OID of the basicConstraints extension.
const BASIC_CONSTRAINTS: x509_cert::der::oid::ObjectIdentifier =
    x509_cert::der::oid::ObjectIdentifier::new_unwrap("2.5.29.19");

/// The certificates of a trust store, and what a CRL's signature is checked with.
#[derive(Debug, Clone)]
pub struct TrustStore {
    /// Every certificate of the bundle (the roots rustls is given).
    pub certs: Vec<CertificateDer<'static>>,
    /// The CA certificates, for the signatures of revocation lists.
    issuers: Vec<Issuer>,
}

#[derive(Debug, Clone)]
struct Issuer {
    /// DER of the subject name.
    subject: Vec<u8>,
    /// The public key's AlgorithmIdentifier contents, as rustls names them.
    key_algorithm: Vec<u8>,
    /// The subjectPublicKey bits.
    key: Vec<u8>,
}

/// One revocation list, as rustls takes it.
#[derive(Debug, Clone)]
pub struct RevocationList {
    pub der: CertificateRevocationListDer<'static>,
    /// Its nextUpdate (Unix seconds), when it has one.
    pub next_update: Option<i64>,
}

impl RevocationList {
    /// Whether its nextUpdate has passed at `now` (Unix seconds): a warning,
    /// not an error (the list still revokes what it names).
    pub fn expired(&self, now: i64) -> bool {
        self.next_update.is_some_and(|t| t < now)
    }
}

/// Reads a trust store: a PEM bundle with at least one CA certificate.
pub fn read_trust_store(path: &Path) -> Result<TrustStore, String> {
    let text = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not a PEM bundle of certificates: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{}: not a PEM bundle of certificates (no CERTIFICATE block)",
            path.display()
        ));
    }
    let mut issuers = Vec::new();
    for (i, der) in certs.iter().enumerate() {
        let cert = Certificate::from_der(der).map_err(|e| {
            format!(
                "{}: certificate {} is not a valid X.509 certificate: {e}",
                path.display(),
                i + 1
            )
        })?;
        if is_ca(&cert) {
            let tbs = &cert.tbs_certificate;
            let spki = &tbs.subject_public_key_info;
            issuers.push(Issuer {
                subject: tbs.subject.to_der().map_err(|e| e.to_string())?,
                key_algorithm: contents(&spki.algorithm.to_der().map_err(|e| e.to_string())?),
                key: spki.subject_public_key.raw_bytes().to_vec(),
            });
        }
    }
    if issuers.is_empty() {
        return Err(format!(
            "{}: no CA certificate (none has basicConstraints cA=TRUE)",
            path.display()
        ));
    }
    Ok(TrustStore { certs, issuers })
}

/// Reads the revocation lists of one file (PEM, one or more; or DER), each
/// signed by a CA of `store`.
pub fn read_crls(path: &Path, store: &TrustStore) -> Result<Vec<RevocationList>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let ders: Vec<CertificateRevocationListDer<'static>> =
        if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
            CertificateRevocationListDer::pem_slice_iter(&bytes)
                .collect::<Result<_, _>>()
                .map_err(|e| format!("{}: not a PEM revocation list: {e}", path.display()))?
        } else {
            vec![CertificateRevocationListDer::from(bytes)]
        };
    if ders.is_empty() {
        return Err(format!(
            "{}: no X509 CRL block in the PEM file",
            path.display()
        ));
    }
    ders.into_iter()
        .map(|der| {
            let crl = CertificateList::from_der(&der)
                .map_err(|e| format!("{}: not a revocation list (CRL): {e}", path.display()))?;
            if !signed_by_store(&crl, store) {
                return Err(format!(
                    "{}: the revocation list of {} is not signed by a CA of the trust store",
                    path.display(),
                    crl.tbs_cert_list.issuer
                ));
            }
            let next_update = crl
                .tbs_cert_list
                .next_update
                .map(|t| t.to_unix_duration().as_secs() as i64);
            Ok(RevocationList { der, next_update })
        })
        .collect()
}

fn is_ca(cert: &Certificate) -> bool {
    let Some(extensions) = &cert.tbs_certificate.extensions else {
        return false;
    };
    extensions
        .iter()
        .filter(|e| e.extn_id == BASIC_CONSTRAINTS)
        .filter_map(|e| BasicConstraints::from_der(e.extn_value.as_bytes()).ok())
        .any(|b| b.ca)
}

/// Whether a CA of `store` with the CRL's issuer name signed it (checked
/// with the algorithms rustls verifies certificates with).
fn signed_by_store(crl: &CertificateList, store: &TrustStore) -> bool {
    let (Ok(issuer), Ok(tbs), Ok(alg)) = (
        crl.tbs_cert_list.issuer.to_der(),
        crl.tbs_cert_list.to_der(),
        crl.signature_algorithm.to_der(),
    ) else {
        return false;
    };
    let signature_algorithm = contents(&alg);
    let Some(signature) = crl.signature.as_bytes() else {
        return false;
    };
    let algorithms = rustls::crypto::ring::default_provider().signature_verification_algorithms;
    store
        .issuers
        .iter()
        .filter(|ca| ca.subject == issuer)
        .any(|ca| {
            algorithms.all.iter().any(|a| {
                a.signature_alg_id().as_ref() == signature_algorithm.as_slice()
                    && a.public_key_alg_id().as_ref() == ca.key_algorithm.as_slice()
                    && a.verify_signature(&ca.key, &tbs, signature).is_ok()
            })
        })
}

/// The contents of a DER SEQUENCE (AlgorithmIdentifier as rustls and webpki
/// compare them: without its tag and length).
fn contents(der: &[u8]) -> Vec<u8> {
    match der.get(1) {
        Some(&len) if len < 0x80 => der.get(2..).unwrap_or_default().to_vec(),
        Some(&len) => {
            let n = (len & 0x7f) as usize;
            der.get(2 + n..).unwrap_or_default().to_vec()
        }
        None => Vec::new(),
    }
}
