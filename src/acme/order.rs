//! One order: the names' authorizations, each answered by the challenge the
//! configuration chose, then the key and CSR (made by instant-acme with
//! rcgen) and the certificate.

use super::store::Issued;
use crate::config::AcmeChallenge;
use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, Identifier, NewOrder, OrderStatus, RetryPolicy,
};
use std::time::Duration;

/// A challenge to answer while an order is validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// `GET /.well-known/acme-challenge/{token}` answers `key_authorization`.
    Http {
        token: String,
        key_authorization: String,
    },
    /// A TLS handshake for `domain` with ALPN `acme-tls/1` presents a
    /// certificate carrying `digest` (RFC 8737).
    TlsAlpn { domain: String, digest: Vec<u8> },
}

/// Who answers the challenges: the listeners, through the control plane.
pub trait Responder {
    /// Starts answering `challenges` (returns once they are answered).
    fn publish(&self, challenges: &[Challenge]) -> impl std::future::Future<Output = ()> + Send;
    /// Stops answering them.
    fn withdraw(&self, challenges: &[Challenge]) -> impl std::future::Future<Output = ()> + Send;
}

/// How long the server may take to validate and to issue.
const POLL: RetryPolicy = RetryPolicy::new()
    .initial_delay(Duration::from_millis(250))
    .backoff(1.5)
    .timeout(Duration::from_secs(90));

/// Orders a certificate for `names`, answering each authorization's
/// `kind` challenge through `responder`.
pub async fn order(
    account: &Account,
    names: &[String],
    kind: AcmeChallenge,
    responder: &impl Responder,
) -> Result<Issued, String> {
    let identifiers: Vec<Identifier> = names.iter().map(|n| Identifier::Dns(n.clone())).collect();
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(|e| format!("new order: {e}"))?;
    let challenge_type = match kind {
        AcmeChallenge::Http01 => ChallengeType::Http01,
        AcmeChallenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
    };
    let mut published = Vec::new();
    {
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.map_err(|e| format!("authorization: {e}"))?;
            match authz.status {
                AuthorizationStatus::Valid => continue,
                AuthorizationStatus::Pending => {}
                other => return Err(format!("authorization is {other:?}")),
            }
            let Some(challenge) = authz.challenge(challenge_type.clone()) else {
                return Err(format!("the server offers no {challenge_type:?} challenge"));
            };
            let key_authorization = challenge.key_authorization();
            let domain = challenge.identifier().to_string();
            published.push(match kind {
                AcmeChallenge::Http01 => Challenge::Http {
                    token: challenge.token.clone(),
                    key_authorization: key_authorization.as_str().to_owned(),
                },
                AcmeChallenge::TlsAlpn01 => Challenge::TlsAlpn {
                    domain,
                    digest: key_authorization.digest().as_ref().to_vec(),
                },
            });
        }
    }
    responder.publish(&published).await;
    let result = validate_and_issue(&mut order, challenge_type, published.len()).await;
    responder.withdraw(&published).await;
    result
}

async fn validate_and_issue(
    order: &mut instant_acme::Order,
    kind: ChallengeType,
    pending: usize,
) -> Result<Issued, String> {
    if pending > 0 {
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.map_err(|e| format!("authorization: {e}"))?;
            if authz.status != AuthorizationStatus::Pending {
                continue;
            }
            if let Some(mut c) = authz.challenge(kind.clone()) {
                c.set_ready().await.map_err(|e| format!("challenge: {e}"))?;
            }
        }
    }
    let status = order
        .poll_ready(&POLL)
        .await
        .map_err(|e| format!("validation: {e}"))?;
    if status != OrderStatus::Ready {
        return Err(format!("validation failed: {}", why(order).await));
    }
    let key_pem = order
        .finalize()
        .await
        .map_err(|e| format!("finalize: {e}"))?;
    let chain_pem = order
        .poll_certificate(&POLL)
        .await
        .map_err(|e| format!("certificate: {e}"))?;
    Ok(Issued { chain_pem, key_pem })
}

/// What the server said about a failed validation.
async fn why(order: &mut instant_acme::Order) -> String {
    let mut reasons = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(Ok(authz)) = authorizations.next().await {
        for c in &authz.challenges {
            if let Some(problem) = &c.error {
                reasons.push(format!("{}: {}", authz.identifier(), problem));
            }
        }
    }
    if reasons.is_empty() {
        "the order is not ready".to_owned()
    } else {
        reasons.join("; ")
    }
}
