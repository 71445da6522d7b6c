//! Targets registered and deregistered through the admin API: an overlay on
//! the file's targets. Registered targets survive reloads and restarts (the
//! state file, written atomically); a file target that was deregistered stays
//! out until the next reload or restart (the file is the truth for its own).

use crate::config::{Config, Origin, TargetSpec, split_host_port};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

/// Why an API change was refused: (HTTP status, message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub u16, pub String);

/// What the state file holds.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    /// group name → registered targets
    targets: BTreeMap<String, Vec<Registered>>,
}

/// One registered target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registered {
    pub address: String,
    pub weight: u32,
}

/// The overlay.
#[derive(Debug, Default)]
pub struct Registry {
    registered: BTreeMap<String, Vec<Registered>>,
    /// (group, address) of file targets taken out through the API.
    deregistered: HashSet<(String, String)>,
    state_file: Option<PathBuf>,
}

impl Registry {
    /// The registry persisted in `state_file` (none yet is an empty one).
    pub fn load(state_file: Option<&Path>) -> Result<Self, String> {
        let mut registry = Registry {
            state_file: state_file.map(Path::to_path_buf),
            ..Default::default()
        };
        if let Some(path) = state_file {
            match std::fs::read(path) {
                Ok(bytes) => {
                    let state: StateFile = serde_json::from_slice(&bytes)
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                    registry.registered = state.targets;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
            }
        }
        Ok(registry)
    }

    /// A cluster node's registry: the registrations and deregistrations read
    /// from etcd (SPEC §11), replacing what it had; never persisted here.
    pub fn replace(
        &mut self,
        registered: &BTreeMap<String, BTreeMap<String, u32>>,
        deregistered: &std::collections::BTreeSet<(String, String)>,
    ) {
        self.state_file = None;
        self.registered = registered
            .iter()
            .map(|(group, targets)| {
                let list = targets
                    .iter()
                    .map(|(address, &weight)| Registered {
                        address: address.clone(),
                        weight,
                    })
                    .collect();
                (group.clone(), list)
            })
            .collect();
        self.deregistered = deregistered.iter().cloned().collect();
    }

    /// Whether the registrations hold `address` in `group`.
    pub fn is_registered(&self, group: &str, address: &str) -> bool {
        self.registered
            .get(group)
            .is_some_and(|l| l.iter().any(|r| r.address == address))
    }

    /// A reload: the file is the truth again for its own targets.
    pub fn file_reloaded(&mut self) {
        self.deregistered.clear();
    }

    /// The configuration requests are served by: the file's targets, less the
    /// deregistered ones (unless `file_reloaded`), plus the registered ones (of
    /// groups the file has).
    pub fn apply(&self, file: &Config, keep_deregistered: bool) -> Config {
        let mut effective = file.clone();
        for g in &mut effective.target_groups {
            if keep_deregistered {
                g.targets.retain(|t| {
                    !self
                        .deregistered
                        .contains(&(g.name.clone(), t.address.clone()))
                });
            }
            // A set, not a scan per registration: 10,000 registered targets
            // would cost 50 million comparisons per change.
            let mut present: HashSet<String> =
                g.targets.iter().map(|t| t.address.clone()).collect();
            for r in self.registered.get(&g.name).into_iter().flatten() {
                if let Ok((host, port)) = split_host_port(&r.address)
                    && present.insert(r.address.clone())
                {
                    g.targets.push(TargetSpec {
                        origin: Origin::Api,
                        ..TargetSpec::configured(r.address.clone(), host, port, r.weight)
                    });
                }
            }
        }
        effective
    }

    /// RegisterTargets. `effective` is what is served now.
    pub fn register(
        &mut self,
        effective: &Config,
        group: &str,
        address: &str,
        weight: u32,
    ) -> Result<(), Refusal> {
        let Some(g) = effective.target_groups.iter().find(|g| g.name == group) else {
            return Err(Refusal(404, format!("no target group {group:?}")));
        };
        split_host_port(address).map_err(|e| Refusal(400, e))?;
        if weight > 1000 {
            return Err(Refusal(
                400,
                format!("weight {weight} is out of range 0..=1000"),
            ));
        }
        if g.targets.iter().any(|t| t.address == address) {
            return Err(Refusal(
                409,
                format!("target {address} is already registered in {group:?}"),
            ));
        }
        let key = (group.to_owned(), address.to_owned());
        if self.deregistered.remove(&key) {
            // A file target coming back: the file's own entry (and weight) again.
            return self.persist().map_err(|e| {
                self.deregistered.insert(key);
                Refusal(500, e)
            });
        }
        self.registered
            .entry(group.to_owned())
            .or_default()
            .push(Registered {
                address: address.to_owned(),
                weight,
            });
        self.persist().map_err(|e| {
            if let Some(list) = self.registered.get_mut(group) {
                list.retain(|r| r.address != address);
            }
            Refusal(500, e)
        })
    }

    /// DeregisterTargets.
    pub fn deregister(
        &mut self,
        effective: &Config,
        group: &str,
        address: &str,
    ) -> Result<(), Refusal> {
        let Some(g) = effective.target_groups.iter().find(|g| g.name == group) else {
            return Err(Refusal(404, format!("no target group {group:?}")));
        };
        if !g.targets.iter().any(|t| t.address == address) {
            return Err(Refusal(404, format!("no target {address} in {group:?}")));
        }
        let list = self.registered.entry(group.to_owned()).or_default();
        if let Some(i) = list.iter().position(|r| r.address == address) {
            let removed = list.remove(i);
            return self.persist().map_err(|e| {
                self.registered
                    .entry(group.to_owned())
                    .or_default()
                    .insert(i, removed);
                Refusal(500, e)
            });
        }
        self.deregistered
            .insert((group.to_owned(), address.to_owned()));
        Ok(())
    }

    /// Writes the registered targets: temp file, fsync, rename, so a crash
    /// leaves the old state or the new one, never half of one.
    fn persist(&self) -> Result<(), String> {
        let Some(path) = &self.state_file else {
            return Ok(());
        };
        let state = StateFile {
            targets: self
                .registered
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        let bytes = serde_json::to_vec_pretty(&state).map_err(|e| e.to_string())?;
        crate::files::write_private(path, &bytes)
            .map_err(|e| format!("cannot write the state file {}: {e}", path.display()))
    }
}
