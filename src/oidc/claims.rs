//! Tokens: the provider's ID token checked (signature against its JWKS,
//! `iss`, `aud`, `exp` with a minute of clock skew, `nonce`), and the
//! user's claims passed to targets as `x-amzn-oidc-data`, a JWT edgelb signs
//! with ES256 (its public key at `GET /oidc/jwks`). JOSE is `jsonwebtoken`'s.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Map, Value, json};

/// Clock skew allowed between the provider and edgelb.
pub const LEEWAY_SECONDS: u64 = 60;

/// Why an ID token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdTokenError {
    /// Its `kid` is not in the JWKS held: fetch the JWKS again, then retry once.
    UnknownKey,
    Invalid(String),
}

impl std::fmt::Display for IdTokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IdTokenError::UnknownKey => {
                f.write_str("the ID token's key is not in the provider's JWKS")
            }
            IdTokenError::Invalid(e) => write!(f, "invalid ID token: {e}"),
        }
    }
}

/// The claims of `token` if it is a valid ID token of `issuer` for
/// `client_id` with `nonce`, signed by a key of `jwks` (an asymmetric
/// algorithm only: `none` and HMAC are refused).
pub fn validate_id_token(
    token: &str,
    jwks: &JwkSet,
    issuer: &str,
    client_id: &str,
    nonce: &str,
) -> Result<Map<String, Value>, IdTokenError> {
    let invalid = |e: &dyn std::fmt::Display| IdTokenError::Invalid(e.to_string());
    let header = jsonwebtoken::decode_header(token).map_err(|e| invalid(&e))?;
    if matches!(
        header.alg,
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
    ) {
        return Err(IdTokenError::Invalid(format!(
            "{:?} is not accepted",
            header.alg
        )));
    }
    let jwk = match &header.kid {
        Some(kid) => jwks.find(kid).ok_or(IdTokenError::UnknownKey)?,
        None if jwks.keys.len() == 1 => &jwks.keys[0],
        None => return Err(IdTokenError::Invalid("no kid and several keys".into())),
    };
    let key = DecodingKey::from_jwk(jwk).map_err(|e| invalid(&e))?;
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[client_id]);
    validation.leeway = LEEWAY_SECONDS;
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
        .map_err(|e| invalid(&e))?;
    if data.claims.get("nonce").and_then(Value::as_str) != Some(nonce) {
        return Err(IdTokenError::Invalid("the nonce is not the login's".into()));
    }
    Ok(data.claims)
}

/// edgelb's signing key for `x-amzn-oidc-data`, made at start.
pub struct DataSigner {
    key: EncodingKey,
    kid: String,
    /// The public point's coordinates, base64url.
    x: String,
    y: String,
}

impl DataSigner {
    /// A new P-256 key.
    pub fn generate() -> DataSigner {
        Self::from_pkcs8(&Self::new_pkcs8()).expect("a key just made")
    }

    /// A new P-256 key as PKCS#8 (a cluster shares one through etcd).
    pub fn new_pkcs8() -> Vec<u8> {
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .expect("the OS random generator works")
            .as_ref()
            .to_vec()
    }

    /// The signer of a P-256 key given as PKCS#8.
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<DataSigner, String> {
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng)
            .map_err(|e| format!("not a P-256 PKCS#8 key: {e}"))?;
        // Uncompressed point: 0x04 || X (32) || Y (32).
        let point = pair.public_key().as_ref();
        let x = B64URL.encode(&point[1..33]);
        let y = B64URL.encode(&point[33..65]);
        let digest = ring::digest::digest(&ring::digest::SHA256, point);
        Ok(DataSigner {
            key: EncodingKey::from_ec_der(pkcs8),
            kid: B64URL.encode(&digest.as_ref()[..12]),
            x,
            y,
        })
    }

    /// `claims` (with `iss` and `exp` set) as an ES256 JWT.
    pub fn sign(&self, claims: &Map<String, Value>, issuer: &str, exp: u64) -> String {
        let mut payload = claims.clone();
        payload.insert("iss".into(), Value::String(issuer.to_owned()));
        payload.insert("exp".into(), json!(exp));
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &payload, &self.key).expect("an ES256 key signs")
    }

    /// The JWKS of the key (`GET /oidc/jwks`).
    pub fn jwks(&self) -> Value {
        json!({ "keys": [{
            "kty": "EC", "crv": "P-256", "x": self.x, "y": self.y,
            "kid": self.kid, "alg": "ES256", "use": "sig",
        }]})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An "IdP" signing with a DataSigner, and its JWKS.
    fn idp() -> (DataSigner, JwkSet) {
        let s = DataSigner::generate();
        let jwks: JwkSet = serde_json::from_value(s.jwks()).unwrap();
        (s, jwks)
    }

    fn id_token(s: &DataSigner, iss: &str, aud: &str, nonce: &str, exp: u64) -> String {
        let mut c = Map::new();
        c.insert("sub".into(), json!("alice"));
        c.insert("aud".into(), json!(aud));
        c.insert("nonce".into(), json!(nonce));
        s.sign(&c, iss, exp)
    }

    #[test]
    fn id_tokens_are_checked_claim_by_claim() {
        let (s, jwks) = idp();
        let now = crate::wire::time::unix_now();
        let good = id_token(&s, "https://idp.test", "edgelb", "n1", now + 300);
        let claims = validate_id_token(&good, &jwks, "https://idp.test", "edgelb", "n1").unwrap();
        assert_eq!(claims["sub"], "alice");
        let refused =
            |t: &str, nonce: &str| validate_id_token(t, &jwks, "https://idp.test", "edgelb", nonce);
        assert!(matches!(
            refused(&good, "n2"),
            Err(IdTokenError::Invalid(_))
        ));
        assert!(
            refused(
                &id_token(&s, "https://evil.test", "edgelb", "n1", now + 300),
                "n1"
            )
            .is_err()
        );
        assert!(
            refused(
                &id_token(&s, "https://idp.test", "other", "n1", now + 300),
                "n1"
            )
            .is_err()
        );
        // Expired beyond the minute of skew; within it still good.
        assert!(
            refused(
                &id_token(&s, "https://idp.test", "edgelb", "n1", now - 120),
                "n1"
            )
            .is_err()
        );
        assert!(
            refused(
                &id_token(&s, "https://idp.test", "edgelb", "n1", now - 30),
                "n1"
            )
            .is_ok()
        );
        // Another key: unknown kid, for the caller to fetch the JWKS again.
        let (other, _) = idp();
        assert_eq!(
            refused(
                &id_token(&other, "https://idp.test", "edgelb", "n1", now + 300),
                "n1"
            ),
            Err(IdTokenError::UnknownKey)
        );
        // A forged signature.
        let mut forged = good.clone();
        forged.pop();
        forged.push(if good.ends_with('A') { 'B' } else { 'A' });
        assert!(refused(&forged, "n1").is_err());
        // HMAC with the public key as secret (the classic confusion): refused.
        let hs = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &json!({"sub":"mallory","aud":"edgelb","iss":"https://idp.test","exp":now+300,"nonce":"n1"}),
            &EncodingKey::from_secret(s.x.as_bytes()),
        )
        .unwrap();
        assert!(refused(&hs, "n1").is_err());
    }

    #[test]
    fn the_data_jwt_verifies_with_the_published_key() {
        let s = DataSigner::generate();
        let mut claims = Map::new();
        claims.insert("sub".into(), json!("alice"));
        claims.insert("email".into(), json!("alice@example.com"));
        let exp = crate::wire::time::unix_now() + 60;
        let jwt = s.sign(&claims, "https://idp.test", exp);
        let jwks: JwkSet = serde_json::from_value(s.jwks()).unwrap();
        let key = DecodingKey::from_jwk(&jwks.keys[0]).unwrap();
        let mut v = Validation::new(Algorithm::ES256);
        v.set_required_spec_claims(&["exp"]);
        v.validate_aud = false;
        let got = jsonwebtoken::decode::<Map<String, Value>>(&jwt, &key, &v).unwrap();
        assert_eq!(got.claims["email"], "alice@example.com");
        assert_eq!(got.header.kid.as_deref(), Some(s.kid.as_str()));
    }
}
