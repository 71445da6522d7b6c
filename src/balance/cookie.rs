//! Sealed stickiness cookies (`EDGELB`, `EDGELBAPP`, `EDGELBTG`).
//!
//! A value is AES-256-GCM over {expiry, payload}, with the cookie's name and its
//! scope (a group, or a rule) as associated data: it reveals nothing, cannot be
//! forged, expires, and cannot be replayed under another name or scope. Every
//! node that shares the key material opens every other node's cookies. Several
//! keys may be held for rotation: the first seals, all open.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};
use std::sync::atomic::{AtomicU64, Ordering};

const TAG_LEN: usize = 16;
const EXPIRY_LEN: usize = 8;
/// Longest cookie value opened (a payload names a group or a target).
const MAX_VALUE_LEN: usize = 1024;

/// The AEAD keys cookies are sealed and opened with.
pub struct CookieKeys {
    keys: Vec<LessSafeKey>,
    /// Nonces are a random per-process prefix and a counter: unique without a
    /// random draw per cookie, and across nodes that share a key.
    nonce_prefix: u32,
    counter: AtomicU64,
}

impl std::fmt::Debug for CookieKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CookieKeys")
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

struct KeyLen;
impl hkdf::KeyType for KeyLen {
    fn len(&self) -> usize {
        32
    }
}

fn derive(secret: &[u8]) -> LessSafeKey {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"edgelb stickiness cookie").extract(secret);
    let okm = prk
        .expand(&[b"aes-256-gcm v1"], KeyLen)
        .expect("32 bytes is a valid HKDF length");
    let mut key = [0u8; 32];
    okm.fill(&mut key).expect("length matches");
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).expect("32-byte AES key"))
}

impl CookieKeys {
    /// Keys derived from shared secrets (each ≥ 32 bytes): the first seals.
    pub fn from_secrets(secrets: &[Vec<u8>]) -> Self {
        assert!(!secrets.is_empty(), "at least one secret");
        let mut prefix = [0u8; 4];
        SystemRandom::new()
            .fill(&mut prefix)
            .expect("the OS random generator works");
        CookieKeys {
            keys: secrets.iter().map(|s| derive(s)).collect(),
            nonce_prefix: u32::from_be_bytes(prefix),
            counter: AtomicU64::new(0),
        }
    }

    /// A random key for this process only.
    pub fn random() -> Self {
        Self::from_secrets(&[Self::random_secret()])
    }

    /// 32 random bytes: a secret for [`CookieKeys::from_secrets`] (a
    /// cluster's shared key is made of one).
    pub fn random_secret() -> Vec<u8> {
        let mut secret = vec![0u8; 32];
        SystemRandom::new()
            .fill(&mut secret)
            .expect("the OS random generator works");
        secret
    }

    fn aad(name: &str, scope: &[u8], out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.extend_from_slice(scope);
    }

    /// Seals `payload` for cookie `name` in `scope`, valid until `expires` (Unix seconds).
    pub fn seal(&self, name: &str, scope: &[u8], payload: &[u8], expires: u64) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..4].copy_from_slice(&self.nonce_prefix.to_be_bytes());
        nonce[4..].copy_from_slice(&n.to_be_bytes());
        let mut buf = Vec::with_capacity(NONCE_LEN + EXPIRY_LEN + payload.len() + TAG_LEN);
        buf.extend_from_slice(&nonce);
        buf.extend_from_slice(&expires.to_be_bytes());
        buf.extend_from_slice(payload);
        let mut aad = Vec::with_capacity(name.len() + 1 + scope.len());
        Self::aad(name, scope, &mut aad);
        let tag = self.keys[0]
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&aad[..]),
                &mut buf[NONCE_LEN..],
            )
            .expect("sealing cannot fail for these sizes");
        buf.extend_from_slice(tag.as_ref());
        URL_SAFE_NO_PAD.encode(&buf)
    }

    /// Opens a value sealed for cookie `name` in `scope`; `None` if it was
    /// tampered with, sealed for something else, by an unknown key, or expired
    /// at `now` (Unix seconds).
    pub fn open(&self, name: &str, scope: &[u8], value: &[u8], now: u64) -> Option<Vec<u8>> {
        self.open_at_most(name, scope, value, now, MAX_VALUE_LEN)
    }

    /// [`CookieKeys::open`] for values up to `max_len` bytes (a login
    /// session's cookie is larger than a stickiness cookie).
    pub fn open_at_most(
        &self,
        name: &str,
        scope: &[u8],
        value: &[u8],
        now: u64,
        max_len: usize,
    ) -> Option<Vec<u8>> {
        if value.len() > max_len {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(value).ok()?;
        if raw.len() < NONCE_LEN + EXPIRY_LEN + TAG_LEN {
            return None;
        }
        let mut aad = Vec::with_capacity(name.len() + 1 + scope.len());
        Self::aad(name, scope, &mut aad);
        for key in &self.keys {
            let mut buf = raw[NONCE_LEN..].to_vec();
            let nonce = Nonce::try_assume_unique_for_key(&raw[..NONCE_LEN]).ok()?;
            if let Ok(plain) = key.open_in_place(nonce, Aad::from(&aad[..]), &mut buf) {
                let expires = u64::from_be_bytes(plain[..EXPIRY_LEN].try_into().ok()?);
                if expires < now {
                    return None;
                }
                return Some(plain[EXPIRY_LEN..].to_vec());
            }
        }
        None
    }
}

/// The value of cookie `name` in a request's `Cookie` headers, if present.
pub fn find_cookie<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a [u8]> {
    headers.get_all(http::header::COOKIE).iter().find_map(|v| {
        v.as_bytes().split(|b| *b == b';').find_map(|pair| {
            let pair = pair.trim_ascii();
            let rest = pair.strip_prefix(name.as_bytes())?;
            rest.strip_prefix(b"=")
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(secret: u8) -> CookieKeys {
        CookieKeys::from_secrets(&[vec![secret; 32]])
    }

    #[test]
    fn round_trip() {
        let k = keys(1);
        let v = k.seal("EDGELB", b"web", b"target-7", 1000);
        assert_eq!(
            k.open("EDGELB", b"web", v.as_bytes(), 999).unwrap(),
            b"target-7"
        );
        assert_eq!(
            k.open("EDGELB", b"web", v.as_bytes(), 1000).unwrap(),
            b"target-7"
        );
    }

    #[test]
    fn reveals_nothing_in_plain_or_base64() {
        let k = keys(1);
        let v = k.seal("EDGELB", b"web", b"10.0.0.1:8080", 1000);
        assert!(!v.contains("10.0.0.1"));
        let decoded = URL_SAFE_NO_PAD.decode(&v).unwrap();
        assert!(!decoded.windows(8).any(|w| w == b"10.0.0.1"));
        // Two seals of the same thing differ (unique nonces).
        assert_ne!(v, k.seal("EDGELB", b"web", b"10.0.0.1:8080", 1000));
    }

    #[test]
    fn tampering_is_refused() {
        let k = keys(1);
        let v = k.seal("EDGELB", b"web", b"t", 1000);
        let mut raw = URL_SAFE_NO_PAD.decode(&v).unwrap();
        for i in 0..raw.len() {
            raw[i] ^= 1;
            assert!(
                k.open("EDGELB", b"web", URL_SAFE_NO_PAD.encode(&raw).as_bytes(), 0)
                    .is_none(),
                "byte {i}"
            );
            raw[i] ^= 1;
        }
        assert!(k.open("EDGELB", b"web", b"not base64!", 0).is_none());
        assert!(k.open("EDGELB", b"web", b"", 0).is_none());
    }

    #[test]
    fn wrong_key_name_or_scope_is_refused() {
        let v = keys(1).seal("EDGELB", b"web", b"t", 1000);
        assert!(keys(2).open("EDGELB", b"web", v.as_bytes(), 0).is_none());
        assert!(keys(1).open("EDGELBAPP", b"web", v.as_bytes(), 0).is_none());
        assert!(keys(1).open("EDGELB", b"api", v.as_bytes(), 0).is_none());
    }

    #[test]
    fn expired_is_refused() {
        let k = keys(1);
        let v = k.seal("EDGELB", b"web", b"t", 1000);
        assert!(k.open("EDGELB", b"web", v.as_bytes(), 1001).is_none());
    }

    #[test]
    fn rotation_first_seals_all_open() {
        let old = keys(1);
        let rotated = CookieKeys::from_secrets(&[vec![2; 32], vec![1; 32]]);
        let from_old = old.seal("EDGELB", b"web", b"t", 1000);
        assert_eq!(
            rotated
                .open("EDGELB", b"web", from_old.as_bytes(), 0)
                .unwrap(),
            b"t"
        );
        let from_new = rotated.seal("EDGELB", b"web", b"t", 1000);
        assert!(old.open("EDGELB", b"web", from_new.as_bytes(), 0).is_none());
        assert_eq!(
            keys(2)
                .open("EDGELB", b"web", from_new.as_bytes(), 0)
                .unwrap(),
            b"t"
        );
    }

    #[test]
    fn finds_cookies_among_others() {
        let mut h = http::HeaderMap::new();
        h.append("cookie", "a=1; EDGELBTG=xyz; EDGELB=abc".parse().unwrap());
        h.append("cookie", "other=2".parse().unwrap());
        assert_eq!(find_cookie(&h, "EDGELB"), Some(&b"abc"[..]));
        assert_eq!(find_cookie(&h, "EDGELBTG"), Some(&b"xyz"[..]));
        assert_eq!(find_cookie(&h, "other"), Some(&b"2"[..]));
        assert_eq!(find_cookie(&h, "missing"), None);
    }
}
