//! The client's certificate as the target learns it (SPEC §8), made once per
//! connection right after the handshake: on `verify` listeners ALB's five
//! `X-Amzn-Mtls-Clientcert-*` headers of the verified leaf, on `passthrough`
//! listeners the whole presented chain in `X-Amzn-Mtls-Clientcert`. Both
//! stacks write them from here: the fast path and the raw sockets from
//! [`ClientIdentity::lines`], hyper's client from [`ClientIdentity::headers`].

use crate::wire::forwarded::client_cert;
use base64::Engine;
use http::{HeaderName, HeaderValue};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use rustls::pki_types::CertificateDer;
use std::time::UNIX_EPOCH;
use x509_cert::Certificate;
use x509_cert::der::Decode;

/// What is URL-encoded in a PEM header value: everything but RFC 3986's
/// unreserved characters (ALB's encoding: `-----BEGIN%20CERTIFICATE-----%0A…`).
const URL_ENCODED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// One client connection's certificate, ready for every request on it.
#[derive(Debug, Clone, Default)]
pub struct ClientIdentity {
    /// The headers as lines (`name: value` CRLF each).
    pub lines: Vec<u8>,
    /// The same headers, for a header map.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The leaf's subject (RFC 2253) and serial (hex), for the access log.
    pub subject: Option<String>,
    pub serial: Option<String>,
    /// The leaf's subject CN (PROXY v2 `PP2_SUBTYPE_SSL_CN`).
    pub common_name: Option<String>,
    /// The chain was verified against the trust store.
    pub verified: bool,
}

impl ClientIdentity {
    /// The identity of a client that presented `chain` (leaf first):
    /// `verified` (a `verify` listener) gives the leaf's five headers,
    /// otherwise the chain goes whole. `None` without a certificate.
    pub fn of(chain: &[CertificateDer<'_>], verified: bool) -> Option<Self> {
        let leaf_der = chain.first()?;
        let leaf = Certificate::from_der(leaf_der).ok();
        let tbs = leaf.as_ref().map(|c| &c.tbs_certificate);
        // x509-cert writes names as RFC 4514 (RFC 2253's successor): the
        // last RDN first.
        let subject = tbs.map(|t| t.subject.to_string());
        let serial = tbs.map(|t| serial_hex(t.serial_number.as_bytes()));
        let common_name = tbs.and_then(|t| {
            t.subject
                .0
                .iter()
                .flat_map(|rdn| rdn.0.iter())
                .filter(|atv| atv.oid == COMMON_NAME)
                .find_map(|atv| atv.to_string().strip_prefix("CN=").map(str::to_owned))
        });
        let mut identity = ClientIdentity {
            subject: subject.clone(),
            serial: serial.clone(),
            common_name,
            verified,
            ..Default::default()
        };
        if verified {
            let Some(tbs) = tbs else {
                return Some(identity);
            };
            let time = |t: &x509_cert::time::Time| {
                crate::wire::time::rfc3339(UNIX_EPOCH + t.to_unix_duration())
            };
            let validity = format!(
                "NotBefore={};NotAfter={}",
                time(&tbs.validity.not_before),
                time(&tbs.validity.not_after)
            );
            identity.add(client_cert::SERIAL_NUMBER, serial.unwrap_or_default());
            identity.add(client_cert::ISSUER, tbs.issuer.to_string());
            identity.add(client_cert::SUBJECT, subject.unwrap_or_default());
            identity.add(client_cert::VALIDITY, validity);
            identity.add(client_cert::LEAF, url_encoded_pem(&chain[..1]));
        } else {
            identity.add(client_cert::CHAIN, url_encoded_pem(chain));
        }
        Some(identity)
    }

    /// Adds one header (a value that is not a valid header value, which an
    /// RFC 2253 name with control characters could be, is left out).
    fn add(&mut self, name: &'static str, value: String) {
        let Ok(value) = HeaderValue::from_str(&value) else {
            return;
        };
        self.lines.extend_from_slice(name.as_bytes());
        self.lines.extend_from_slice(b": ");
        self.lines.extend_from_slice(value.as_bytes());
        self.lines.extend_from_slice(b"\r\n");
        self.headers.push((HeaderName::from_static(name), value));
    }
}

/// The OID of the commonName attribute.
const COMMON_NAME: x509_cert::der::oid::ObjectIdentifier =
    x509_cert::der::oid::ObjectIdentifier::new_unwrap("2.5.4.3");

/// A serial number in upper-case hex, without the sign byte DER adds.
fn serial_hex(bytes: &[u8]) -> String {
    let bytes = match bytes {
        [0, rest @ ..] if !rest.is_empty() => rest,
        b => b,
    };
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// The certificates as PEM, URL-encoded.
fn url_encoded_pem(chain: &[CertificateDer<'_>]) -> String {
    let mut pem = String::new();
    for cert in chain {
        let b64 = base64::engine::general_purpose::STANDARD.encode(cert);
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    utf8_percent_encode(&pem, URL_ENCODED).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_drop_the_sign_byte() {
        assert_eq!(serial_hex(&[0x00, 0xA5, 0x01]), "A501");
        assert_eq!(serial_hex(&[0x00]), "00");
        assert_eq!(serial_hex(&[0x7F]), "7F");
    }

    #[test]
    fn pem_is_url_encoded_as_alb_sends_it() {
        let encoded = url_encoded_pem(&[CertificateDer::from(vec![0xfb; 3])]);
        assert_eq!(
            encoded,
            "-----BEGIN%20CERTIFICATE-----%0A%2B%2Fv7%0A-----END%20CERTIFICATE-----%0A"
        );
    }
}
