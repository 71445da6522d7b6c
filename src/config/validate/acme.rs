//! `[acme]` and the `{ acme = [names] }` certificate entries (SPEC §10).

use super::{Validator, idx, key};
use crate::config::model::{Acme, AcmeChallenge};
use crate::config::schema::RawAcme;
use crate::config::span::Seg;
use std::time::Duration;

/// Renewal lead when `renew_before` is not given.
const DEFAULT_RENEW_BEFORE: Duration = Duration::from_secs(30 * 86_400);

/// `[acme]`; `clustered` when the account and certificates live in etcd
/// (SPEC §11): then `storage` is not needed.
pub(super) fn acme(v: &mut Validator, raw: Option<&RawAcme>, clustered: bool) -> Option<Acme> {
    let raw = raw?;
    let at = vec![Seg::Key("acme".into())];
    let directory = v
        .required(&raw.directory, &at, "directory")
        .cloned()
        .unwrap_or_default();
    if !directory.is_empty()
        && !directory.starts_with("https://")
        && !directory.starts_with("http://")
    {
        v.err(
            key(&at, "directory"),
            format!("directory {directory:?} must be an http(s):// URL"),
        );
    }
    if raw.terms_of_service_agreed != Some(true) {
        let at = match raw.terms_of_service_agreed {
            Some(_) => key(&at, "terms_of_service_agreed"),
            None => at.clone(),
        };
        v.err(
            at,
            "terms_of_service_agreed must be true: ordering certificates means agreeing to the ACME server's terms",
        );
    }
    let contact = raw.contact.clone().unwrap_or_default();
    for (i, c) in contact.iter().enumerate() {
        if !c.starts_with("mailto:") {
            v.err(
                idx(&key(&at, "contact"), i),
                format!("contact {c:?} must be a mailto: URL"),
            );
        }
    }
    let storage = if clustered {
        raw.storage
            .as_deref()
            .map(|s| v.path(s))
            .unwrap_or_default()
    } else {
        v.required(&raw.storage, &at, "storage")
            .map(|s| v.path(s))
            .unwrap_or_default()
    };
    let challenge = match raw.challenge.as_deref() {
        None | Some("http-01") => AcmeChallenge::Http01,
        Some("tls-alpn-01") => AcmeChallenge::TlsAlpn01,
        Some(other) => {
            v.err(
                key(&at, "challenge"),
                format!("unknown challenge {other:?}: expected \"http-01\" or \"tls-alpn-01\""),
            );
            AcmeChallenge::Http01
        }
    };
    let renew_before = v.duration(
        &raw.renew_before,
        key(&at, "renew_before"),
        DEFAULT_RENEW_BEFORE,
    );
    let ca_file = raw
        .ca_file
        .as_deref()
        .map(|p| v.readable_file(p, key(&at, "ca_file")));
    Some(Acme {
        directory,
        contact,
        storage,
        challenge,
        renew_before,
        ca_file,
    })
}

/// The names of one `{ acme = [names] }` entry, lower-case, if they are usable.
pub(super) fn entry(v: &mut Validator, names: &[String], at: &[Seg]) -> Option<Vec<String>> {
    if !v.acme_configured {
        v.err(
            at.to_vec(),
            "an ACME certificate needs an [acme] section (directory, storage, terms_of_service_agreed)",
        );
    }
    if names.is_empty() {
        v.err(at.to_vec(), "an ACME certificate needs at least one name");
        return None;
    }
    let before = v.errors.len();
    let mut out = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let lower = name.trim_end_matches('.').to_ascii_lowercase();
        if lower.starts_with("*.") {
            v.err(
                idx(at, i),
                format!("{name:?}: wildcard names need the dns-01 challenge, which edgelb does not answer"),
            );
        } else if !dns_name(&lower) {
            v.err(idx(at, i), format!("{name:?} is not a DNS name"));
        } else if out.contains(&lower) {
            v.err(idx(at, i), format!("{name:?} is listed twice"));
        } else {
            out.push(lower);
        }
    }
    (v.errors.len() == before).then_some(out)
}

/// A host name of at least two labels (letters, digits, hyphens), not an IP.
fn dns_name(name: &str) -> bool {
    let labels: Vec<&str> = name.split('.').collect();
    name.len() <= 253
        && labels.len() >= 2
        && name.parse::<std::net::IpAddr>().is_err()
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::dns_name;

    #[test]
    fn dns_names() {
        assert!(dns_name("example.com"));
        assert!(dns_name("a-b.example.co.uk"));
        assert!(!dns_name("localhost"));
        assert!(!dns_name("10.0.0.1"));
        assert!(!dns_name("-a.example.com"));
        assert!(!dns_name("a..example.com"));
        assert!(!dns_name("a_b.example.com"));
    }
}
