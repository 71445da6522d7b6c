//! `[[oidc]]` providers and the `authenticate` beside an action (SPEC §9).

use super::{Validator, idx, key};
use crate::config::model::{Authenticate, ListenerProtocol, OidcProvider, OnUnauthenticated};
use crate::config::schema::{RawAuthenticate, RawOidc};
use crate::config::span::{DocPath, Seg};
use std::time::Duration;

/// The session cookie's name when none is given.
pub const DEFAULT_SESSION_COOKIE: &str = "EDGELBAUTH";
/// How long a session lasts when `session_timeout` is not given.
const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(7 * 86_400);

pub(super) fn providers(v: &mut Validator, raw: &[RawOidc]) -> Vec<OidcProvider> {
    let at = vec![Seg::Key("oidc".into())];
    let mut out: Vec<OidcProvider> = Vec::new();
    for (i, p) in raw.iter().enumerate() {
        let at = idx(&at, i);
        let name = v
            .required(&p.name, &at, "name")
            .cloned()
            .unwrap_or_default();
        if out.iter().any(|o| o.name == name) {
            v.err(
                key(&at, "name"),
                format!("a second [[oidc]] named {name:?}"),
            );
        }
        let issuer = v
            .required(&p.issuer, &at, "issuer")
            .cloned()
            .unwrap_or_default();
        if !issuer.is_empty() && !issuer.starts_with("https://") {
            v.err(
                key(&at, "issuer"),
                format!("issuer {issuer:?} must be an https:// URL"),
            );
        }
        let client_id = v
            .required(&p.client_id, &at, "client_id")
            .cloned()
            .unwrap_or_default();
        let client_secret = match v.required(&p.client_secret_file, &at, "client_secret_file") {
            None => String::new(),
            Some(file) => {
                let path = v.path(file);
                match std::fs::read_to_string(&path) {
                    Ok(s) if !s.trim().is_empty() => s.trim().to_owned(),
                    Ok(_) => {
                        v.err(
                            key(&at, "client_secret_file"),
                            format!("{} is empty", path.display()),
                        );
                        String::new()
                    }
                    Err(e) => {
                        v.err(
                            key(&at, "client_secret_file"),
                            format!("cannot read {}: {e}", path.display()),
                        );
                        String::new()
                    }
                }
            }
        };
        let scope = p.scope.clone().unwrap_or_else(|| "openid".to_owned());
        if !scope.split_whitespace().any(|s| s == "openid") {
            v.err(
                key(&at, "scope"),
                format!("scope {scope:?} must contain openid"),
            );
        }
        let session_cookie = p
            .session_cookie
            .clone()
            .unwrap_or_else(|| DEFAULT_SESSION_COOKIE.to_owned());
        if session_cookie.is_empty()
            || !session_cookie
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            v.err(
                key(&at, "session_cookie"),
                format!("session_cookie {session_cookie:?}: use letters, digits, `_` and `-`"),
            );
        }
        let session_timeout = v.duration(
            &p.session_timeout,
            key(&at, "session_timeout"),
            DEFAULT_SESSION_TIMEOUT,
        );
        let ca_file = p
            .ca_file
            .as_deref()
            .map(|f| v.readable_file(f, key(&at, "ca_file")));
        out.push(OidcProvider {
            name,
            issuer: issuer.trim_end_matches('/').to_owned(),
            client_id,
            client_secret,
            scope,
            session_cookie,
            session_timeout,
            ca_file,
        });
    }
    out
}

/// The `authenticate` of an action at `at` on a `protocol` listener.
pub(super) fn authenticate(
    v: &mut Validator,
    raw: Option<&RawAuthenticate>,
    at: DocPath,
    protocol: ListenerProtocol,
    providers: &[String],
) -> Option<Authenticate> {
    let raw = raw?;
    let at = key(&at, "authenticate");
    if protocol != ListenerProtocol::Https {
        v.err(
            at.clone(),
            format!(
                "authenticate needs an https listener (the session cookie and the login are never sent in clear), not {}",
                protocol.as_str()
            ),
        );
    }
    let oidc = v
        .required(&raw.oidc, &at, "oidc")
        .cloned()
        .unwrap_or_default();
    if !oidc.is_empty() && !providers.contains(&oidc) {
        v.err(key(&at, "oidc"), format!("no [[oidc]] named {oidc:?}"));
    }
    let on_unauthenticated = match raw.on_unauthenticated.as_deref() {
        None | Some("authenticate") => OnUnauthenticated::Authenticate,
        Some("deny") => OnUnauthenticated::Deny,
        Some("allow") => OnUnauthenticated::Allow,
        Some(other) => {
            v.err(
                key(&at, "on_unauthenticated"),
                format!("unknown on_unauthenticated {other:?}: expected \"authenticate\", \"deny\" or \"allow\""),
            );
            OnUnauthenticated::Authenticate
        }
    };
    Some(Authenticate {
        oidc,
        on_unauthenticated,
    })
}
