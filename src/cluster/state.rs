//! What a node has read of its load balancer's shared state: the shared
//! configuration, the registrations, the shared stickiness key and the other
//! nodes' records, at a store revision. It is built from a full read, kept up
//! by the watch's events, and saved as the `cache_file` a node starts from
//! when etcd is down.

use super::etcd::{Event, Kv};
use super::layout::{Entry, Layout};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The shared configuration as pushed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedConfig {
    pub text: String,
    /// The store revision that wrote it (what `push` answered).
    pub revision: i64,
}

/// A node's record at `{prefix}/nodes/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
    pub generation: u64,
    pub config_revision: i64,
    pub last_reload_ok: bool,
    /// When the node last wrote it (RFC 3339).
    pub seen: String,
    /// The store revision the node had applied then.
    #[serde(default)]
    pub applied_revision: i64,
}

/// The shared state at a revision.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedState {
    /// The store revision this state has seen everything up to.
    pub revision: i64,
    pub config: Option<SharedConfig>,
    /// group → address → weight.
    pub registered: BTreeMap<String, BTreeMap<String, u32>>,
    /// (group, address) of config targets taken out until the next push.
    pub deregistered: BTreeSet<(String, String)>,
    /// The shared stickiness key (base64 of its secret).
    pub stickiness_key: Option<String>,
    /// The shared key signing `x-amzn-oidc-data` (base64 of its PKCS#8).
    #[serde(default)]
    pub oidc_key: Option<String>,
    /// ACME (SPEC §10): the account's credentials (JSON).
    #[serde(default)]
    pub acme_account: Option<String>,
    /// ACME certificates by entry id: `{"chain_pem", "key_pem"}` (JSON).
    #[serde(default)]
    pub acme_certs: BTreeMap<String, String>,
    /// http-01 challenges every node answers: token → key authorization.
    #[serde(default)]
    pub acme_http: BTreeMap<String, String>,
    /// tls-alpn-01 challenges every node answers: name → digest (base64).
    #[serde(default)]
    pub acme_alpn: BTreeMap<String, String>,
    /// The nodes' records (not cached: they live only with their leases).
    #[serde(skip)]
    pub members: BTreeMap<String, Member>,
}

/// Which parts of the state a change touched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changes {
    pub config: bool,
    pub targets: bool,
    pub keys: bool,
    pub members: bool,
    /// ACME certificates or challenges.
    pub acme: bool,
}

impl Changes {
    /// Whether what the node serves must be rebuilt.
    pub fn served(&self) -> bool {
        self.config || self.targets || self.keys || self.acme
    }

    fn or(self, o: Changes) -> Changes {
        Changes {
            config: self.config || o.config,
            targets: self.targets || o.targets,
            keys: self.keys || o.keys,
            members: self.members || o.members,
            acme: self.acme || o.acme,
        }
    }
}

/// A registration's value.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Registration {
    pub weight: u32,
}

impl SharedState {
    /// The state of a full read at `revision`.
    pub fn read(layout: &Layout, revision: i64, kvs: &[Kv]) -> SharedState {
        let mut state = SharedState {
            revision,
            ..SharedState::default()
        };
        for kv in kvs {
            state.set(layout, &kv.key, Some((&kv.value, kv.mod_revision)));
        }
        state
    }

    /// Applies a watch's events: what they changed.
    pub fn apply(&mut self, layout: &Layout, events: &[Event]) -> Changes {
        let mut changes = Changes::default();
        for e in events {
            let c = match e {
                Event::Put(kv) => self.set(layout, &kv.key, Some((&kv.value, kv.mod_revision))),
                Event::Delete { key, .. } => self.set(layout, key, None),
            };
            changes = changes.or(c);
            self.revision = self.revision.max(e.revision());
        }
        changes
    }

    /// What differs between `self` and `newer` in what a node serves.
    pub fn changes_to(&self, newer: &SharedState) -> Changes {
        Changes {
            // A push of the same text is a reload too (as SIGHUP is).
            config: self.config != newer.config,
            targets: self.registered != newer.registered || self.deregistered != newer.deregistered,
            keys: self.stickiness_key != newer.stickiness_key || self.oidc_key != newer.oidc_key,
            members: self.members != newer.members,
            acme: self.acme_certs != newer.acme_certs
                || self.acme_http != newer.acme_http
                || self.acme_alpn != newer.acme_alpn,
        }
    }

    fn set(&mut self, layout: &Layout, key: &str, value: Option<(&[u8], i64)>) -> Changes {
        let mut changes = Changes::default();
        match layout.entry(key) {
            Some(Entry::Config) => {
                self.config = value.and_then(|(v, revision)| {
                    Some(SharedConfig {
                        text: String::from_utf8(v.to_vec()).ok()?,
                        revision,
                    })
                });
                changes.config = true;
            }
            Some(Entry::Target { group, address }) => {
                let weight =
                    value.and_then(|(v, _)| serde_json::from_slice::<Registration>(v).ok());
                match weight {
                    Some(r) => {
                        self.registered
                            .entry(group)
                            .or_default()
                            .insert(address, r.weight);
                    }
                    None => {
                        if let Some(g) = self.registered.get_mut(&group) {
                            g.remove(&address);
                            if g.is_empty() {
                                self.registered.remove(&group);
                            }
                        }
                    }
                }
                changes.targets = true;
            }
            Some(Entry::Deregistered { group, address }) => {
                if value.is_some() {
                    self.deregistered.insert((group, address));
                } else {
                    self.deregistered.remove(&(group, address));
                }
                changes.targets = true;
            }
            Some(Entry::OidcKey) => {
                self.oidc_key = value.and_then(|(v, _)| String::from_utf8(v.to_vec()).ok());
                changes.keys = true;
            }
            Some(Entry::StickinessKey) => {
                self.stickiness_key = value.and_then(|(v, _)| String::from_utf8(v.to_vec()).ok());
                changes.keys = true;
            }
            Some(Entry::AcmeAccount) => {
                self.acme_account = value.and_then(|(v, _)| String::from_utf8(v.to_vec()).ok());
            }
            Some(Entry::AcmeCert(id)) => {
                set_text(&mut self.acme_certs, id, value);
                changes.acme = true;
            }
            Some(Entry::AcmeHttp(token)) => {
                set_text(&mut self.acme_http, token, value);
                changes.acme = true;
            }
            Some(Entry::AcmeAlpn(name)) => {
                set_text(&mut self.acme_alpn, name, value);
                changes.acme = true;
            }
            Some(Entry::AcmeLock) => {}
            Some(Entry::Node(name)) => {
                match value.and_then(|(v, _)| serde_json::from_slice::<Member>(v).ok()) {
                    Some(m) => {
                        self.members.insert(name, m);
                    }
                    None => {
                        self.members.remove(&name);
                    }
                }
                changes.members = true;
            }
            None => {}
        }
        changes
    }

    /// Writes the state to `path` atomically, readable by the owner only
    /// (it holds the stickiness key).
    pub fn save(&self, path: &Path) -> Result<(), String> {
        let text = serde_json::to_vec_pretty(self).map_err(|e| e.to_string())?;
        crate::files::write_private(path, &text)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    /// The state saved at `path` (`None` when there is no file yet).
    pub fn load(path: &Path) -> Result<Option<SharedState>, String> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }
}

/// Sets (or with no value removes) `key` of `map` to a UTF-8 value.
fn set_text(map: &mut BTreeMap<String, String>, key: String, value: Option<(&[u8], i64)>) {
    match value.and_then(|(v, _)| String::from_utf8(v.to_vec()).ok()) {
        Some(text) => {
            map.insert(key, text);
        }
        None => {
            map.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, value: &str, rev: i64) -> Event {
        Event::Put(Kv {
            key: key.into(),
            value: value.as_bytes().to_vec(),
            mod_revision: rev,
        })
    }

    #[test]
    fn events_change_what_they_touch() {
        let l = Layout::new("/lb");
        let mut s = SharedState::default();
        let c = s.apply(&l, &[put("/lb/config", "x = 1", 3)]);
        assert!(c.config && !c.targets);
        assert_eq!(s.config.as_ref().map(|c| c.revision), Some(3));
        let c = s.apply(
            &l,
            &[put("/lb/targets/web/127.0.0.1:81", r#"{"weight":2}"#, 4)],
        );
        assert!(c.targets && !c.config);
        assert_eq!(s.registered["web"]["127.0.0.1:81"], 2);
        let c = s.apply(&l, &[put("/lb/nodes/a", r#"{"name":"a","generation":1,"config_revision":3,"last_reload_ok":true,"seen":"t"}"#, 5)]);
        assert!(c.members && !c.served());
        let c = s.apply(
            &l,
            &[Event::Delete {
                key: "/lb/targets/web/127.0.0.1:81".into(),
                mod_revision: 6,
            }],
        );
        assert!(c.targets);
        assert!(s.registered.is_empty());
        assert_eq!(s.revision, 6);
        let again = s.clone();
        assert!(!s.changes_to(&again).served());
    }

    #[test]
    fn the_cache_round_trips_without_members() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.json");
        let l = Layout::new("/lb");
        let mut s = SharedState::default();
        s.apply(
            &l,
            &[
                put("/lb/config", "x", 2),
                put("/lb/keys/stickiness", "a2V5", 3),
            ],
        );
        s.apply(&l, &[put("/lb/nodes/a", r#"{"name":"a","generation":1,"config_revision":3,"last_reload_ok":true,"seen":"t"}"#, 4)]);
        s.save(&path).unwrap();
        let back = SharedState::load(&path).unwrap().unwrap();
        assert!(back.members.is_empty());
        assert_eq!(back.config, s.config);
        assert_eq!(back.stickiness_key, s.stickiness_key);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0);
        assert_eq!(SharedState::load(&dir.path().join("none")).unwrap(), None);
    }
}
