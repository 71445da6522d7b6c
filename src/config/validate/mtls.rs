//! `mutual_authentication` of a listener (SPEC §8): the mode, and in `verify`
//! mode the trust store and revocation lists read and checked as the listener
//! will use them.

use super::{Validator, key};
use crate::config::model::{ListenerProtocol, MutualAuthentication, TrustSettings};
use crate::config::schema::{RawListener, RawMutualAuthentication};
use crate::config::span::Seg;
use crate::config::trust::{read_crls, read_trust_store};

pub(super) fn mutual_authentication(
    v: &mut Validator,
    l: &RawListener,
    protocol: ListenerProtocol,
    at: &[Seg],
) -> MutualAuthentication {
    let Some(raw) = &l.mutual_authentication else {
        return MutualAuthentication::Off;
    };
    let at = key(at, "mutual_authentication");
    let tls = matches!(protocol, ListenerProtocol::Https | ListenerProtocol::Tls);
    let mode = raw.mode.as_deref().unwrap_or("off");
    if !tls && mode != "off" {
        v.err(
            key(&at, "mode"),
            format!(
                "mutual_authentication applies to https and tls listeners only, not {}",
                protocol.as_str()
            ),
        );
        return MutualAuthentication::Off;
    }
    match mode {
        "off" | "passthrough" => {
            only_for_verify(v, raw, &at, mode);
            if mode == "off" {
                MutualAuthentication::Off
            } else {
                MutualAuthentication::Passthrough
            }
        }
        "verify" => verify(v, raw, &at),
        other => {
            v.err(
                key(&at, "mode"),
                format!("unknown mode {other:?}: expected \"off\", \"verify\" or \"passthrough\""),
            );
            MutualAuthentication::Off
        }
    }
}

/// The trust settings apply in `verify` mode only: set elsewhere, they are
/// a mistake worth naming (they would silently do nothing).
fn only_for_verify(v: &mut Validator, raw: &RawMutualAuthentication, at: &[Seg], mode: &str) {
    let set = [
        ("trust_store", raw.trust_store.is_some()),
        ("crls", raw.crls.is_some()),
        (
            "ignore_client_certificate_expiry",
            raw.ignore_client_certificate_expiry.is_some(),
        ),
        (
            "advertise_trust_store_ca_names",
            raw.advertise_trust_store_ca_names.is_some(),
        ),
    ];
    for (name, _) in set.iter().filter(|(_, is_set)| *is_set) {
        v.err(
            key(at, name),
            format!("{name} applies to mode = \"verify\" only, not {mode:?}"),
        );
    }
}

fn verify(v: &mut Validator, raw: &RawMutualAuthentication, at: &[Seg]) -> MutualAuthentication {
    let Some(trust_store) = v.required(&raw.trust_store, at, "trust_store").cloned() else {
        return MutualAuthentication::Off;
    };
    let trust_store = v.path(&trust_store);
    let crl_paths: Vec<_> = raw.crls.iter().flatten().map(|p| v.path(p)).collect();
    match read_trust_store(&trust_store) {
        Err(e) => v.err(key(at, "trust_store"), e),
        Ok(store) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            let crls_at = key(at, "crls");
            for (i, path) in crl_paths.iter().enumerate() {
                let at = super::idx(&crls_at, i);
                match read_crls(path, &store) {
                    Err(e) => v.err(at, e),
                    Ok(lists) => {
                        for list in lists.iter().filter(|l| l.expired(now)) {
                            let date = crate::wire::time::rfc3339(
                                std::time::UNIX_EPOCH
                                    + std::time::Duration::from_secs(
                                        list.next_update.unwrap_or(0).max(0) as u64,
                                    ),
                            );
                            v.warn(
                                at.clone(),
                                format!(
                                    "revocation list {} expired on {date} (its nextUpdate); \
                                     it still revokes what it names",
                                    path.display()
                                ),
                            );
                        }
                    }
                }
            }
        }
    }
    MutualAuthentication::Verify(TrustSettings {
        trust_store,
        crls: crl_paths,
        ignore_client_certificate_expiry: raw.ignore_client_certificate_expiry.unwrap_or(false),
        advertise_trust_store_ca_names: raw.advertise_trust_store_ca_names.unwrap_or(false),
    })
}
