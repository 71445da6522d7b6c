//! The values of one login: PKCE (S256), `state` and `nonce`, and the
//! provider's authorization URL asking for them.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use ring::rand::{SecureRandom, SystemRandom};

/// 32 random bytes, base64url (43 characters: a PKCE verifier, a state, a nonce).
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the OS random generator works");
    B64URL.encode(bytes)
}

/// The S256 challenge of a PKCE `verifier` (RFC 7636 §4.2).
pub fn challenge(verifier: &str) -> String {
    B64URL.encode(ring::digest::digest(
        &ring::digest::SHA256,
        verifier.as_bytes(),
    ))
}

/// The URL a user is sent to for logging in.
pub struct AuthorizationRequest<'a> {
    pub endpoint: &'a str,
    pub client_id: &'a str,
    pub redirect_uri: &'a str,
    pub scope: &'a str,
    pub state: &'a str,
    pub nonce: &'a str,
    pub verifier: &'a str,
}

impl AuthorizationRequest<'_> {
    pub fn url(&self) -> String {
        let q = |v: &str| {
            percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC).to_string()
        };
        let sep = if self.endpoint.contains('?') {
            '&'
        } else {
            '?'
        };
        format!(
            "{}{sep}response_type=code&client_id={}&redirect_uri={}&scope={}&state={}&nonce={}&code_challenge={}&code_challenge_method=S256",
            self.endpoint,
            q(self.client_id),
            q(self.redirect_uri),
            q(self.scope),
            q(self.state),
            q(self.nonce),
            q(&challenge(self.verifier)),
        )
    }
}

/// Whether `target` is a path on this origin (the only place a login may
/// send the user back to: no open redirect).
pub fn same_origin_path(target: &str) -> bool {
    target.starts_with('/')
        && !target.starts_with("//")
        && !target.starts_with("/\\")
        && !target.bytes().any(|b| b.is_ascii_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_matches_rfc_7636_appendix_b() {
        assert_eq!(
            challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let t = random_token();
        assert_eq!(t.len(), 43);
        assert_ne!(t, random_token());
    }

    #[test]
    fn the_authorization_url_carries_every_parameter_encoded() {
        let url = AuthorizationRequest {
            endpoint: "https://idp.test/auth",
            client_id: "edge lb",
            redirect_uri: "https://app.test:8443/oauth2/idpresponse",
            scope: "openid email",
            state: "s",
            nonce: "n",
            verifier: "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
        }
        .url();
        assert!(url.starts_with("https://idp.test/auth?response_type=code&client_id=edge%20lb&"));
        assert!(
            url.contains("redirect_uri=https%3A%2F%2Fapp%2Etest%3A8443%2Foauth2%2Fidpresponse")
        );
        assert!(url.contains("scope=openid%20email"));
        assert!(url.contains("code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw%2DcM&code_challenge_method=S256"));
    }

    #[test]
    fn only_same_origin_paths_are_returned_to() {
        assert!(same_origin_path("/admin/x?y=1"));
        for bad in [
            "//evil.test/",
            "/\\evil.test",
            "https://evil.test/",
            "evil",
            "/a\r\nb",
        ] {
            assert!(!same_origin_path(bad), "{bad}");
        }
    }
}
