//! Client certificates on https and tls listeners (SPEC §8): the rustls
//! verifier for a listener's `mutual_authentication` mode, and why a
//! handshake with a client certificate failed.

use crate::config::trust::{read_crls, read_trust_store};
use crate::config::{MutualAuthentication, TrustSettings};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use std::sync::Arc;
use std::time::Duration;
use x509_cert::Certificate;
use x509_cert::der::Decode;

/// Why a client's certificate was refused: the `reason` label of
/// `edgelb_client_certificate_errors_total` and the access log's `mtls_error`.
pub const REASONS: [&str; 4] = ["missing", "untrusted", "expired", "revoked"];

/// A listener's mode, as the connections of the listener need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Off,
    Verify,
    Passthrough,
}

impl Mode {
    /// The mode of a validated setting.
    pub fn of(setting: &MutualAuthentication) -> Self {
        match setting {
            MutualAuthentication::Off => Mode::Off,
            MutualAuthentication::Verify(_) => Mode::Verify,
            MutualAuthentication::Passthrough => Mode::Passthrough,
        }
    }
}

/// The verifier of a listener's mode; `None` when no certificate is asked
/// for. Reads the trust store and revocation lists now (at start and at
/// every reload: an unreadable one fails the reload and changes nothing).
pub fn client_verifier(
    mode: &MutualAuthentication,
) -> Result<Option<Arc<dyn ClientCertVerifier>>, String> {
    match mode {
        MutualAuthentication::Off => Ok(None),
        MutualAuthentication::Passthrough => Ok(Some(Arc::new(Passthrough {
            algorithms: provider_algorithms(),
        }))),
        MutualAuthentication::Verify(trust) => verifying(trust).map(Some),
    }
}

fn provider_algorithms() -> WebPkiSupportedAlgorithms {
    rustls::crypto::ring::default_provider().signature_verification_algorithms
}

fn verifying(trust: &TrustSettings) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let store = read_trust_store(&trust.trust_store)?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in &store.certs {
        roots
            .add(cert.clone())
            .map_err(|e| format!("{}: {e}", trust.trust_store.display()))?;
    }
    let mut crls = Vec::new();
    for path in &trust.crls {
        crls.extend(read_crls(path, &store)?.into_iter().map(|l| l.der));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .with_crls(crls)
        // A certificate whose issuer published no list is not thereby refused
        // (as ALB: revocation is checked where a list is given).
        .allow_unknown_revocation_status();
    if !trust.advertise_trust_store_ca_names {
        builder = builder.clear_root_hint_subjects();
    }
    let inner = builder
        .build()
        .map_err(|e| format!("{}: {e}", trust.trust_store.display()))?;
    Ok(Arc::new(Verifying {
        inner,
        ignore_expiry: trust.ignore_client_certificate_expiry,
    }))
}

/// `verify` mode: webpki's verifier with CRLs, optionally blind to the
/// client certificate's expiry.
#[derive(Debug)]
struct Verifying {
    inner: Arc<dyn ClientCertVerifier>,
    ignore_expiry: bool,
}

impl ClientCertVerifier for Verifying {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        match self
            .inner
            .verify_client_cert(end_entity, intermediates, now)
        {
            Err(Error::InvalidCertificate(
                CertificateError::Expired | CertificateError::ExpiredContext { .. },
            )) if self.ignore_expiry => {
                // Checked again at the last second the leaf was valid: the
                // chain, the signatures and revocation still count.
                let Some(end) = not_after(end_entity) else {
                    return Err(Error::InvalidCertificate(CertificateError::BadEncoding));
                };
                let then = UnixTime::since_unix_epoch(Duration::from_secs(end));
                self.inner
                    .verify_client_cert(end_entity, intermediates, then)
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The leaf's notAfter, in Unix seconds.
fn not_after(cert: &CertificateDer<'_>) -> Option<u64> {
    let cert = Certificate::from_der(cert).ok()?;
    Some(
        cert.tbs_certificate
            .validity
            .not_after
            .to_unix_duration()
            .as_secs(),
    )
}

/// `passthrough` mode: a certificate is asked for and not verified; the
/// client must still prove it holds the key (its handshake signature).
#[derive(Debug)]
struct Passthrough {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for Passthrough {
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Why a handshake of a `verify` listener failed on the client's
/// certificate (one of [`REASONS`]); `None` for other handshake failures.
pub fn failure_reason(error: &std::io::Error) -> Option<&'static str> {
    let error = error.get_ref()?.downcast_ref::<Error>()?;
    match error {
        Error::NoCertificatesPresented => Some("missing"),
        Error::InvalidCertificate(e) => Some(match e {
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => "expired",
            CertificateError::Revoked => "revoked",
            _ => "untrusted",
        }),
        _ => None,
    }
}
