//! One OpenID Provider as edgelb's client sees it: its discovery document,
//! its JWKS (fetched again when an ID token names a key it lacks), the code
//! exchange (client_secret_basic, PKCE verifier) and userinfo. Spoken over
//! hyper's HTTP/1.1 client and rustls, trusting `ca_file` or the system.

use super::claims::{IdTokenError, validate_id_token};
use crate::config::OidcProvider;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use http::{Method, Request, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::JwkSet;
use rustls::pki_types::ServerName;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;

/// How long one call to the provider may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a discovery document is trusted before a login asks again: a
/// provider that went away is noticed (503) within this, not never.
const METADATA_TTL: Duration = Duration::from_secs(60);

/// What discovery says (the parts edgelb uses).
#[derive(Debug, Clone, Deserialize)]
pub struct Metadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub userinfo_endpoint: Option<String>,
    pub jwks_uri: String,
}

/// The token endpoint's answer.
#[derive(Debug, Clone, Deserialize)]
pub struct Tokens {
    pub id_token: String,
    pub access_token: String,
    pub expires_in: Option<u64>,
}

/// A provider and what was learned of it.
pub struct Provider {
    pub config: OidcProvider,
    tls: Arc<rustls::ClientConfig>,
    metadata: Mutex<Option<(Metadata, std::time::Instant)>>,
    jwks: Mutex<JwkSet>,
}

impl Provider {
    pub fn new(config: OidcProvider) -> Result<Provider, String> {
        Ok(Provider {
            tls: tls_config(&config)?,
            config,
            metadata: Mutex::new(None),
            jwks: Mutex::new(JwkSet { keys: Vec::new() }),
        })
    }

    /// The discovery document, fetched again once it is [`METADATA_TTL`] old.
    pub async fn metadata(&self) -> Result<Metadata, String> {
        if let Some((m, at)) = self
            .metadata
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            && at.elapsed() < METADATA_TTL
        {
            return Ok(m);
        }
        let url = format!("{}/.well-known/openid-configuration", self.config.issuer);
        let (status, body) = self.call(Method::GET, &url, None, None).await?;
        if status != 200 {
            return Err(format!("{url}: HTTP {status}"));
        }
        let m: Metadata = serde_json::from_slice(&body).map_err(|e| format!("{url}: {e}"))?;
        if m.issuer.trim_end_matches('/') != self.config.issuer {
            return Err(format!(
                "{url}: issuer {:?} is not {:?}",
                m.issuer, self.config.issuer
            ));
        }
        *self.metadata.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((m.clone(), std::time::Instant::now()));
        Ok(m)
    }

    async fn fetch_jwks(&self, m: &Metadata) -> Result<(), String> {
        let (status, body) = self.call(Method::GET, &m.jwks_uri, None, None).await?;
        if status != 200 {
            return Err(format!("{}: HTTP {status}", m.jwks_uri));
        }
        let set: JwkSet =
            serde_json::from_slice(&body).map_err(|e| format!("{}: {e}", m.jwks_uri))?;
        *self.jwks.lock().unwrap_or_else(|e| e.into_inner()) = set;
        Ok(())
    }

    /// The claims of a valid `id_token` for `nonce`; the JWKS is fetched
    /// again once when the token names a key not held (a rotation).
    pub async fn check_id_token(
        &self,
        id_token: &str,
        nonce: &str,
    ) -> Result<Map<String, Value>, String> {
        let m = self.metadata().await?;
        for fetched in [false, true] {
            let held = self.jwks.lock().unwrap_or_else(|e| e.into_inner()).clone();
            match validate_id_token(
                id_token,
                &held,
                &self.config.issuer,
                &self.config.client_id,
                nonce,
            ) {
                Ok(claims) => return Ok(claims),
                Err(IdTokenError::UnknownKey) if !fetched => self.fetch_jwks(&m).await?,
                Err(e) => return Err(e.to_string()),
            }
        }
        Err(IdTokenError::UnknownKey.to_string())
    }

    /// Exchanges an authorization `code` (client_secret_basic, PKCE).
    pub async fn exchange(
        &self,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
    ) -> Result<Tokens, String> {
        let m = self.metadata().await?;
        let enc = |v: &str| {
            percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC).to_string()
        };
        let form = format!(
            "grant_type=authorization_code&code={}&redirect_uri={}&code_verifier={}",
            enc(code),
            enc(redirect_uri),
            enc(verifier)
        );
        // RFC 6749 §2.3.1: both parts form-encoded before the basic credentials.
        let basic = B64.encode(format!(
            "{}:{}",
            enc(&self.config.client_id),
            enc(&self.config.client_secret)
        ));
        let (status, body) = self
            .call(
                Method::POST,
                &m.token_endpoint,
                Some(format!("Basic {basic}")),
                Some(form),
            )
            .await?;
        if status != 200 {
            return Err(format!(
                "token endpoint: HTTP {status}: {}",
                String::from_utf8_lossy(&body)
                    .chars()
                    .take(200)
                    .collect::<String>()
            ));
        }
        serde_json::from_slice(&body).map_err(|e| format!("token endpoint: {e}"))
    }

    /// The userinfo claims for `access_token` (none when the provider has no
    /// userinfo endpoint).
    pub async fn userinfo(&self, access_token: &str) -> Result<Map<String, Value>, String> {
        let m = self.metadata().await?;
        let Some(url) = &m.userinfo_endpoint else {
            return Ok(Map::new());
        };
        let (status, body) = self
            .call(
                Method::GET,
                url,
                Some(format!("Bearer {access_token}")),
                None,
            )
            .await?;
        if status != 200 {
            return Err(format!("userinfo: HTTP {status}"));
        }
        serde_json::from_slice(&body).map_err(|e| format!("userinfo: {e}"))
    }

    /// One HTTPS exchange within [`CALL_TIMEOUT`]: (status, body).
    async fn call(
        &self,
        method: Method,
        url: &str,
        authorization: Option<String>,
        form: Option<String>,
    ) -> Result<(u16, Bytes), String> {
        let exchange = async {
            let uri: Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
            if uri.scheme_str() != Some("https") {
                return Err(format!("{url}: only https is spoken to providers"));
            }
            let host = uri
                .host()
                .ok_or_else(|| format!("{url}: no host"))?
                .to_owned();
            let port = uri.port_u16().unwrap_or(443);
            let tcp = TcpStream::connect((host.trim_matches(['[', ']']), port))
                .await
                .map_err(|e| format!("{url}: {e}"))?;
            let name = ServerName::try_from(host.trim_matches(['[', ']']).to_owned())
                .map_err(|e| format!("{url}: {e}"))?;
            let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| format!("{url}: TLS: {e}"))?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .map_err(|e| format!("{url}: {e}"))?;
            tokio::spawn(conn);
            let mut req = Request::builder()
                .method(method)
                .uri(uri.path_and_query().map_or("/", |p| p.as_str()))
                .header(header::HOST, uri.authority().map_or("", |a| a.as_str()))
                .header(header::ACCEPT, "application/json");
            if let Some(a) = &authorization {
                req = req.header(header::AUTHORIZATION, a);
            }
            let body = match form {
                Some(f) => {
                    req = req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                    Bytes::from(f)
                }
                None => Bytes::new(),
            };
            let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| format!("{url}: {e}"))?;
            let status = resp.status().as_u16();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("{url}: {e}"))?
                .to_bytes();
            Ok((status, bytes))
        };
        tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .map_err(|_| format!("{url}: no answer within {CALL_TIMEOUT:?}"))?
    }
}

/// TLS to the provider: `ca_file` or the system roots.
fn tls_config(config: &OidcProvider) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match &config.ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("oidc {:?} ca_file {}: {e}", config.name, path.display()))?;
            roots.add_parsable_certificates(certs);
        }
        None => {
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        }
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(tls))
}
