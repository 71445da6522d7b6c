//! What a login leaves in the browser: the session (who the user is, their
//! claims and access token, until when), and the short-lived login state
//! (state, nonce, PKCE verifier, where to go back to). Both are sealed with
//! the stickiness key set (AES-256-GCM, `balance::cookie`): every node that
//! shares the keys honours them, and no one else can read or forge them. A
//! session above 4 KB is split into `NAME-0`, `NAME-1`, … (as ALB's).

use crate::balance::cookie::{CookieKeys, find_cookie};
use http::HeaderValue;
use serde::{Deserialize, Serialize};

/// The largest cookie value written; above it a session is split.
pub const CHUNK: usize = 4000;
/// The most chunks read back (64 KB of session).
pub const MAX_CHUNKS: usize = 16;
/// The login state's cookie.
pub const LOGIN_COOKIE: &str = "EDGELBAUTHSTATE";
/// How long a login may take.
pub const LOGIN_SECONDS: u64 = 600;

/// A logged-in user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// The provider's `sub`.
    pub sub: String,
    /// The ID token's and userinfo's claims.
    pub claims: serde_json::Map<String, serde_json::Value>,
    pub access_token: String,
    /// Unix seconds.
    pub expires: u64,
}

/// A login on its way through the provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Login {
    pub state: String,
    pub nonce: String,
    pub verifier: String,
    /// The same-origin path first asked for.
    pub target: String,
}

/// The cookie scope of `provider` on `listener`: a session or a login made
/// for one is worth nothing on another.
pub fn scope(listener: &str, provider: &str) -> Vec<u8> {
    format!("{listener}\0{provider}").into_bytes()
}

/// The `Set-Cookie` values that store `session` under `name`.
pub fn set_session(
    keys: &CookieKeys,
    name: &str,
    scope: &[u8],
    session: &Session,
) -> Vec<HeaderValue> {
    let payload = serde_json::to_vec(session).expect("a session serializes");
    let sealed = keys.seal(name, scope, &payload, session.expires);
    let now = crate::wire::time::unix_now();
    let max_age = session.expires.saturating_sub(now);
    let attrs = format!("; Path=/; Max-Age={max_age}; Secure; HttpOnly; SameSite=Lax");
    let cookie = |n: &str, v: &str| {
        HeaderValue::from_str(&format!("{n}={v}{attrs}")).expect("base64url and a plain name")
    };
    if sealed.len() <= CHUNK {
        return vec![cookie(name, &sealed)];
    }
    sealed
        .as_bytes()
        .chunks(CHUNK)
        .enumerate()
        .map(|(i, part)| {
            cookie(
                &format!("{name}-{i}"),
                std::str::from_utf8(part).expect("ASCII"),
            )
        })
        .collect()
}

/// The session in a request's cookies, if there is a valid one.
pub fn read_session(
    keys: &CookieKeys,
    name: &str,
    scope: &[u8],
    headers: &http::HeaderMap,
    now: u64,
) -> Option<Session> {
    let sealed: Vec<u8> = match find_cookie(headers, name) {
        Some(v) => v.to_vec(),
        None => {
            let mut joined = Vec::new();
            for i in 0..MAX_CHUNKS {
                match find_cookie(headers, &format!("{name}-{i}")) {
                    Some(part) => joined.extend_from_slice(part),
                    None => break,
                }
            }
            joined
        }
    };
    if sealed.is_empty() {
        return None;
    }
    let payload = keys.open_at_most(name, scope, &sealed, now, CHUNK * MAX_CHUNKS)?;
    serde_json::from_slice(&payload).ok()
}

/// The `Set-Cookie` value that holds `login` while the user logs in.
pub fn set_login(keys: &CookieKeys, scope: &[u8], login: &Login) -> HeaderValue {
    let payload = serde_json::to_vec(login).expect("a login serializes");
    let expires = crate::wire::time::unix_now() + LOGIN_SECONDS;
    let sealed = keys.seal(LOGIN_COOKIE, scope, &payload, expires);
    HeaderValue::from_str(&format!(
        "{LOGIN_COOKIE}={sealed}; Path=/oauth2/idpresponse; Max-Age={LOGIN_SECONDS}; Secure; HttpOnly; SameSite=Lax"
    ))
    .expect("base64url")
}

/// The login state a callback carries back, if valid.
pub fn read_login(
    keys: &CookieKeys,
    scope: &[u8],
    headers: &http::HeaderMap,
    now: u64,
) -> Option<Login> {
    let sealed = find_cookie(headers, LOGIN_COOKIE)?;
    let payload = keys.open_at_most(LOGIN_COOKIE, scope, sealed, now, CHUNK)?;
    serde_json::from_slice(&payload).ok()
}

/// The `Set-Cookie` value that removes the login state.
pub fn clear_login() -> HeaderValue {
    HeaderValue::from_static(
        "EDGELBAUTHSTATE=; Path=/oauth2/idpresponse; Max-Age=0; Secure; HttpOnly; SameSite=Lax",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cookies(set: &[HeaderValue]) -> http::HeaderMap {
        let pairs: Vec<String> = set
            .iter()
            .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
            .collect();
        let mut h = http::HeaderMap::new();
        h.insert(http::header::COOKIE, pairs.join("; ").parse().unwrap());
        h
    }

    fn session(claims: usize) -> Session {
        let mut map = serde_json::Map::new();
        for i in 0..claims {
            map.insert(
                format!("claim{i}"),
                serde_json::Value::String("x".repeat(40)),
            );
        }
        Session {
            sub: "alice".into(),
            claims: map,
            access_token: "at".into(),
            expires: crate::wire::time::unix_now() + 3600,
        }
    }

    #[test]
    fn a_session_round_trips_whole_or_split_and_only_in_its_scope() {
        let keys = CookieKeys::random();
        let now = crate::wire::time::unix_now();
        let small = session(2);
        let set = set_session(&keys, "AUTH", b"l\0p", &small);
        assert_eq!(set.len(), 1);
        assert!(set[0].to_str().unwrap().contains("Secure; HttpOnly"));
        assert_eq!(
            read_session(&keys, "AUTH", b"l\0p", &cookies(&set), now),
            Some(small.clone())
        );
        // Another listener or provider: nothing.
        assert_eq!(
            read_session(&keys, "AUTH", b"l2\0p", &cookies(&set), now),
            None
        );
        // Above 4 KB: AUTH-0, AUTH-1, …
        let big = session(200);
        let set = set_session(&keys, "AUTH", b"l\0p", &big);
        assert!(set.len() >= 2);
        assert!(set[1].to_str().unwrap().starts_with("AUTH-1="));
        assert_eq!(
            read_session(&keys, "AUTH", b"l\0p", &cookies(&set), now),
            Some(big)
        );
        // Tampered: nothing; another key set: nothing.
        let set = set_session(&keys, "AUTH", b"l\0p", &small);
        let value = set[0]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let mid = value.len() / 2;
        let flipped = if &value[mid..=mid] == "A" { "B" } else { "A" };
        let tampered = format!("{}{flipped}{}", &value[..mid], &value[mid + 1..]);
        let mut h = http::HeaderMap::new();
        h.insert(http::header::COOKIE, tampered.parse().unwrap());
        assert_eq!(read_session(&keys, "AUTH", b"l\0p", &h, now), None);
        let other = CookieKeys::random();
        assert_eq!(
            read_session(&other, "AUTH", b"l\0p", &cookies(&set), now),
            None
        );
    }

    #[test]
    fn a_login_round_trips() {
        let keys = CookieKeys::random();
        let login = Login {
            state: "s".into(),
            nonce: "n".into(),
            verifier: "v".into(),
            target: "/admin".into(),
        };
        let set = set_login(&keys, b"l\0p", &login);
        let now = crate::wire::time::unix_now();
        assert_eq!(
            read_login(&keys, b"l\0p", &cookies(std::slice::from_ref(&set)), now),
            Some(login)
        );
        assert_eq!(
            read_login(&keys, b"l\0p", &cookies(&[set]), now + LOGIN_SECONDS + 1),
            None
        );
    }
}
