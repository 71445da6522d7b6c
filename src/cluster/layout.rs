//! Where a load balancer's shared state lives under its prefix (SPEC §11):
//!
//! | key | value |
//! | --- | --- |
//! | `{prefix}/config` | the shared TOML text (listeners, rules, groups) |
//! | `{prefix}/targets/{group}/{address}` | a registration: `{"weight": N}` |
//! | `{prefix}/deregistered/{group}/{address}` | a config target taken out through the API, until the next push |
//! | `{prefix}/keys/stickiness` | the shared stickiness key (base64), created once |
//! | `{prefix}/keys/oidc` | the shared key signing `x-amzn-oidc-data` (PKCS#8, base64), created once |
//! | `{prefix}/nodes/{node}` | a node's record, bound to its 10 s lease |
//! | `{prefix}/acme/account` | the ACME account's credentials (SPEC §10) |
//! | `{prefix}/acme/certs/{id}` | an ACME certificate: `{"chain_pem", "key_pem"}` |
//! | `{prefix}/acme/http/{token}` | an http-01 key authorization every node answers |
//! | `{prefix}/acme/alpn/{name}` | a tls-alpn-01 digest (base64) every node answers |
//! | `{prefix}/acme/lock` | the node ordering now, bound to its lease |

/// The keys of one load balancer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// `{prefix}/`.
    root: String,
}

/// What a key under the prefix is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Config,
    Target { group: String, address: String },
    Deregistered { group: String, address: String },
    StickinessKey,
    OidcKey,
    Node(String),
    AcmeAccount,
    AcmeCert(String),
    AcmeHttp(String),
    AcmeAlpn(String),
    AcmeLock,
}

impl Layout {
    /// The layout under `prefix` (no trailing `/`).
    pub fn new(prefix: &str) -> Layout {
        Layout {
            root: format!("{}/", prefix.trim_end_matches('/')),
        }
    }

    /// Every key of this load balancer starts with it.
    pub fn root(&self) -> &str {
        &self.root
    }

    pub fn config(&self) -> String {
        format!("{}config", self.root)
    }

    pub fn target(&self, group: &str, address: &str) -> String {
        format!("{}targets/{group}/{address}", self.root)
    }

    pub fn deregistered(&self, group: &str, address: &str) -> String {
        format!("{}deregistered/{group}/{address}", self.root)
    }

    /// The prefix of every deregistration (a push clears them).
    pub fn all_deregistered(&self) -> String {
        format!("{}deregistered/", self.root)
    }

    pub fn stickiness_key(&self) -> String {
        format!("{}keys/stickiness", self.root)
    }

    pub fn oidc_key(&self) -> String {
        format!("{}keys/oidc", self.root)
    }

    pub fn node(&self, name: &str) -> String {
        format!("{}nodes/{name}", self.root)
    }

    pub fn acme_account(&self) -> String {
        format!("{}acme/account", self.root)
    }

    pub fn acme_cert(&self, id: &str) -> String {
        format!("{}acme/certs/{id}", self.root)
    }

    pub fn acme_http(&self, token: &str) -> String {
        format!("{}acme/http/{token}", self.root)
    }

    pub fn acme_alpn(&self, name: &str) -> String {
        format!("{}acme/alpn/{name}", self.root)
    }

    pub fn acme_lock(&self) -> String {
        format!("{}acme/lock", self.root)
    }

    /// What `key` is, if it is one of ours.
    pub fn entry(&self, key: &str) -> Option<Entry> {
        let rest = key.strip_prefix(&self.root)?;
        if rest == "config" {
            return Some(Entry::Config);
        }
        if rest == "keys/stickiness" {
            return Some(Entry::StickinessKey);
        }
        if rest == "keys/oidc" {
            return Some(Entry::OidcKey);
        }
        if let Some(acme) = rest.strip_prefix("acme/") {
            let named = |p: &str| {
                acme.strip_prefix(p)
                    .filter(|n| !n.is_empty() && !n.contains('/'))
                    .map(str::to_owned)
            };
            return match acme {
                "account" => Some(Entry::AcmeAccount),
                "lock" => Some(Entry::AcmeLock),
                _ => named("certs/")
                    .map(Entry::AcmeCert)
                    .or_else(|| named("http/").map(Entry::AcmeHttp))
                    .or_else(|| named("alpn/").map(Entry::AcmeAlpn)),
            };
        }
        if let Some(name) = rest.strip_prefix("nodes/") {
            return (!name.is_empty()).then(|| Entry::Node(name.to_owned()));
        }
        let pair = |s: &str| {
            let (group, address) = s.split_once('/')?;
            (!group.is_empty() && !address.is_empty())
                .then(|| (group.to_owned(), address.to_owned()))
        };
        if let Some(s) = rest.strip_prefix("targets/") {
            let (group, address) = pair(s)?;
            return Some(Entry::Target { group, address });
        }
        if let Some(s) = rest.strip_prefix("deregistered/") {
            let (group, address) = pair(s)?;
            return Some(Entry::Deregistered { group, address });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let l = Layout::new("/edgelb/prod/");
        assert_eq!(l.config(), "/edgelb/prod/config");
        assert_eq!(l.entry(&l.config()), Some(Entry::Config));
        let t = l.target("web", "[::1]:8080");
        assert_eq!(
            l.entry(&t),
            Some(Entry::Target {
                group: "web".into(),
                address: "[::1]:8080".into()
            })
        );
        assert_eq!(
            l.entry(&l.deregistered("web", "10.0.0.1:80")),
            Some(Entry::Deregistered {
                group: "web".into(),
                address: "10.0.0.1:80".into()
            })
        );
        assert_eq!(l.entry(&l.node("lb-1")), Some(Entry::Node("lb-1".into())));
        assert_eq!(l.entry(&l.stickiness_key()), Some(Entry::StickinessKey));
        assert_eq!(
            l.entry(&l.acme_cert("a.example.com-1f2e")),
            Some(Entry::AcmeCert("a.example.com-1f2e".into()))
        );
        assert_eq!(
            l.entry(&l.acme_http("tok")),
            Some(Entry::AcmeHttp("tok".into()))
        );
        assert_eq!(
            l.entry(&l.acme_alpn("a.example.com")),
            Some(Entry::AcmeAlpn("a.example.com".into()))
        );
        assert_eq!(l.entry(&l.acme_lock()), Some(Entry::AcmeLock));
        assert_eq!(l.entry(&l.acme_account()), Some(Entry::AcmeAccount));
        assert_eq!(l.entry("/edgelb/prodx/config"), None);
        assert_eq!(l.entry("/edgelb/prod/targets/web"), None);
    }
}
