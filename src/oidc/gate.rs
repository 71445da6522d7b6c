//! The `authenticate` in front of an action (SPEC §9), and the callback at
//! `/oauth2/idpresponse`: what a request without a session gets (a login,
//! 401, or through without identity), what one with a session carries to
//! the target, and how a login ends in a session — or in 401, never in a
//! session, when anything about it is wrong.

use super::claims::DataSigner;
use super::flow::{AuthorizationRequest, random_token, same_origin_path};
use super::provider::Provider;
use super::session::{self, Login, Session};
use crate::balance::cookie::CookieKeys;
use crate::config::OnUnauthenticated;
use http::{HeaderName, HeaderValue, StatusCode, header};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The path of the provider's redirect back (as ALB's).
pub const CALLBACK_PATH: &str = "/oauth2/idpresponse";

/// The headers an authenticated request carries to its target.
pub const ACCESS_TOKEN: HeaderName = HeaderName::from_static("x-amzn-oidc-accesstoken");
pub const IDENTITY: HeaderName = HeaderName::from_static("x-amzn-oidc-identity");
pub const DATA: HeaderName = HeaderName::from_static("x-amzn-oidc-data");

/// One `authenticate` of a listener.
pub struct Gate {
    pub provider: Arc<Provider>,
    pub on_unauthenticated: OnUnauthenticated,
    /// The listener's name: sessions and logins are good on it alone.
    pub listener: Arc<str>,
    pub signer: Arc<DataSigner>,
    /// Logins already ended here (a replayed callback gets 401).
    pub used: Arc<UsedStates>,
}

/// A request's identity from its session, carried to the forward as a
/// request extension and written after the client's headers were cleaned.
#[derive(Debug, Clone)]
pub struct Identity(pub Vec<(HeaderName, HeaderValue)>);

/// What the gate decided.
pub enum Outcome {
    /// Go on to the action, with these headers for the target (none: no identity).
    Pass(Vec<(HeaderName, HeaderValue)>),
    /// Answer now.
    Answer(StatusCode, Vec<(HeaderName, HeaderValue)>),
}

/// What a login's metrics say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    Success,
    Failure,
    Denied,
}

impl Gate {
    fn scope(&self) -> Vec<u8> {
        session::scope(&self.listener, &self.provider.config.name)
    }

    /// The decision for a request with `headers` asking for `target` (its
    /// path and query) on `host`.
    pub async fn check(
        &self,
        keys: &CookieKeys,
        headers: &http::HeaderMap,
        host: &str,
        target: &str,
    ) -> (Outcome, Option<Counted>) {
        let now = crate::wire::time::unix_now();
        let config = &self.provider.config;
        if let Some(s) =
            session::read_session(keys, &config.session_cookie, &self.scope(), headers, now)
        {
            return (Outcome::Pass(self.identity(&s)), None);
        }
        match self.on_unauthenticated {
            OnUnauthenticated::Allow => (Outcome::Pass(Vec::new()), None),
            OnUnauthenticated::Deny => (
                Outcome::Answer(StatusCode::UNAUTHORIZED, Vec::new()),
                Some(Counted::Denied),
            ),
            OnUnauthenticated::Authenticate => {
                // An unreachable provider lets nobody through.
                let metadata = match self.provider.metadata().await {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(oidc = %config.name, "provider unavailable: {e}");
                        return (
                            Outcome::Answer(StatusCode::SERVICE_UNAVAILABLE, Vec::new()),
                            Some(Counted::Failure),
                        );
                    }
                };
                let login = Login {
                    state: random_token(),
                    nonce: random_token(),
                    verifier: random_token(),
                    target: if same_origin_path(target) {
                        target.to_owned()
                    } else {
                        "/".to_owned()
                    },
                };
                let redirect_uri = format!("https://{host}{CALLBACK_PATH}");
                let url = AuthorizationRequest {
                    endpoint: &metadata.authorization_endpoint,
                    client_id: &config.client_id,
                    redirect_uri: &redirect_uri,
                    scope: &config.scope,
                    state: &login.state,
                    nonce: &login.nonce,
                    verifier: &login.verifier,
                }
                .url();
                let Ok(location) = HeaderValue::from_str(&url) else {
                    return (
                        Outcome::Answer(StatusCode::BAD_REQUEST, Vec::new()),
                        Some(Counted::Failure),
                    );
                };
                (
                    Outcome::Answer(
                        StatusCode::FOUND,
                        vec![
                            (header::LOCATION, location),
                            (
                                header::SET_COOKIE,
                                session::set_login(keys, &self.scope(), &login),
                            ),
                        ],
                    ),
                    None,
                )
            }
        }
    }

    /// The identity headers of session `s`.
    fn identity(&self, s: &Session) -> Vec<(HeaderName, HeaderValue)> {
        let mut claims = s.claims.clone();
        claims.insert("sub".into(), serde_json::Value::String(s.sub.clone()));
        let data = self
            .signer
            .sign(&claims, &self.provider.config.issuer, s.expires);
        let value = |v: &str| HeaderValue::from_str(v).ok();
        [
            (ACCESS_TOKEN, value(&s.access_token)),
            (IDENTITY, value(&s.sub)),
            (DATA, value(&data)),
        ]
        .into_iter()
        .filter_map(|(n, v)| Some((n, v?)))
        .collect()
    }

    /// Ends a login at the callback: `query` is the callback's query, `host`
    /// the Host it came to. `None` when no login of this gate is in the
    /// request's cookies (another gate of the listener may own it).
    pub async fn callback(
        &self,
        keys: &CookieKeys,
        headers: &http::HeaderMap,
        host: &str,
        query: &str,
    ) -> Option<(Outcome, Counted)> {
        let now = crate::wire::time::unix_now();
        let login = session::read_login(keys, &self.scope(), headers, now)?;
        let refuse = |why: String| {
            tracing::info!(oidc = %self.provider.config.name, "login refused: {why}");
            Some((
                Outcome::Answer(
                    StatusCode::UNAUTHORIZED,
                    vec![(header::SET_COOKIE, session::clear_login())],
                ),
                Counted::Failure,
            ))
        };
        let params = parse_query(query);
        if params.get("state").map(String::as_str) != Some(login.state.as_str()) {
            return refuse("the state is not the login's".into());
        }
        if !self.used.first_use(&login.state, now) {
            return refuse("the login was already used".into());
        }
        if let Some(e) = params.get("error") {
            return refuse(format!("the provider answered {e}"));
        }
        let Some(code) = params.get("code") else {
            return refuse("no code".into());
        };
        let redirect_uri = format!("https://{host}{CALLBACK_PATH}");
        let tokens = match self
            .provider
            .exchange(code, &login.verifier, &redirect_uri)
            .await
        {
            Ok(t) => t,
            Err(e) => return refuse(e),
        };
        let mut claims = match self
            .provider
            .check_id_token(&tokens.id_token, &login.nonce)
            .await
        {
            Ok(c) => c,
            Err(e) => return refuse(e),
        };
        match self.provider.userinfo(&tokens.access_token).await {
            Ok(info) => {
                if info
                    .get("sub")
                    .is_some_and(|s| Some(s) != claims.get("sub"))
                {
                    return refuse("userinfo is about another user".into());
                }
                claims.extend(info);
            }
            Err(e) => return refuse(e),
        }
        let Some(sub) = claims
            .get("sub")
            .and_then(|s| s.as_str())
            .map(str::to_owned)
        else {
            return refuse("no sub".into());
        };
        // The session lasts session_timeout, or less when the ID token says so.
        let timeout = now + self.provider.config.session_timeout.as_secs();
        let expires = claims
            .get("exp")
            .and_then(|e| e.as_u64())
            .map_or(timeout, |exp| exp.min(timeout));
        for k in [
            "exp",
            "iat",
            "nbf",
            "nonce",
            "aud",
            "iss",
            "at_hash",
            "c_hash",
            "auth_time",
            "azp",
            "sid",
        ] {
            claims.remove(k);
        }
        let s = Session {
            sub,
            claims,
            access_token: tokens.access_token,
            expires,
        };
        let mut set: Vec<(HeaderName, HeaderValue)> = session::set_session(
            keys,
            &self.provider.config.session_cookie,
            &self.scope(),
            &s,
        )
        .into_iter()
        .map(|v| (header::SET_COOKIE, v))
        .collect();
        set.push((header::SET_COOKIE, session::clear_login()));
        let target = HeaderValue::from_str(&login.target).unwrap_or(HeaderValue::from_static("/"));
        set.push((header::LOCATION, target));
        Some((Outcome::Answer(StatusCode::FOUND, set), Counted::Success))
    }
}

/// The states of logins that ended (kept until their login could not be
/// valid anyway): a callback replayed with its cookie gets 401.
#[derive(Debug, Default)]
pub struct UsedStates(Mutex<HashMap<String, u64>>);

impl UsedStates {
    /// Records `state` at `now`; `false` if it was recorded already.
    fn first_use(&self, state: &str, now: u64) -> bool {
        let mut used = self.0.lock().unwrap_or_else(|e| e.into_inner());
        used.retain(|_, at| *at + session::LOGIN_SECONDS >= now);
        match used.entry(state.to_owned()) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(now);
                true
            }
        }
    }
}

/// `a=1&b=x%20y` → {a: "1", b: "x y"}.
fn parse_query(query: &str) -> HashMap<String, String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| {
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (decode(k), decode(v))
        })
        .collect()
}

/// What a build needs to make gates: the providers of the configuration,
/// edgelb's signing key and the logins ended (both kept for the process).
pub struct Logins {
    pub providers: HashMap<String, Arc<Provider>>,
    pub signer: Arc<DataSigner>,
    pub used: Arc<UsedStates>,
}

impl Logins {
    /// The providers of `config` (unusable ones left out, logged), with the
    /// process's key and used states.
    pub fn new(
        config: &crate::config::Config,
        signer: Arc<DataSigner>,
        used: Arc<UsedStates>,
    ) -> Logins {
        let providers = config
            .oidc
            .iter()
            .filter_map(|p| match Provider::new(p.clone()) {
                Ok(provider) => Some((p.name.clone(), Arc::new(provider))),
                Err(e) => {
                    tracing::error!(oidc = %p.name, "{e}");
                    None
                }
            })
            .collect();
        Logins {
            providers,
            signer,
            used,
        }
    }

    /// The gate of `authenticate` on `listener`, if its provider is usable.
    pub fn gate(&self, a: &crate::config::Authenticate, listener: &Arc<str>) -> Option<Arc<Gate>> {
        Some(Arc::new(Gate {
            provider: self.providers.get(&a.oidc)?.clone(),
            on_unauthenticated: a.on_unauthenticated,
            listener: listener.clone(),
            signer: self.signer.clone(),
            used: self.used.clone(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_ends_one_login_only() {
        let used = UsedStates::default();
        assert!(used.first_use("s", 100));
        assert!(!used.first_use("s", 101));
        assert!(used.first_use("t", 101));
        // Forgotten once no login could still carry it.
        assert!(used.first_use("s", 100 + session::LOGIN_SECONDS + 1));
    }

    #[test]
    fn queries_decode() {
        let q = parse_query("code=a%2Fb&state=x+y&error");
        assert_eq!(q["code"], "a/b");
        assert_eq!(q["state"], "x y");
        assert!(!q.contains_key("error"));
    }
}
