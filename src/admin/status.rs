//! JSON views of the running state: `/status`, target health, `/healthz`.

use crate::admin::rfc3339;
use crate::runtime::target::GroupRuntime;
use crate::runtime::{ReloadStatus, Snapshot};
use serde_json::{Value, json};
use std::collections::HashSet;

/// One group's targets as DescribeTargetHealth shows them.
pub fn targets_json(group: &GroupRuntime) -> Vec<Value> {
    group
        .targets
        .iter()
        .map(|t| {
            json!({
                "address": &*t.address,
                "weight": t.weight,
                "state": t.shared.health.state().as_str(),
                "reason": t.shared.health.reason(),
                "last_check": Value::Null,
            })
        })
        .collect()
}

/// `GET /status`.
pub fn status_json(snapshot: &Snapshot, last_reload: &ReloadStatus) -> Value {
    let listeners: Vec<Value> = snapshot
        .listeners
        .iter()
        .map(|l| {
            json!({
                "name": &*l.name,
                "protocol": l.protocol.as_str(),
                "bind": l.bind.to_string(),
                "active_connections": l.metrics.active_connections.get(),
            })
        })
        .collect();
    let groups: Vec<Value> = snapshot
        .groups
        .iter()
        .map(|g| json!({ "name": &*g.name, "targets": targets_json(g) }))
        .collect();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "generation": snapshot.generation,
        "last_reload": {
            "time": rfc3339(last_reload.time),
            "ok": last_reload.ok,
            "error": last_reload.error,
        },
        "listeners": listeners,
        "target_groups": groups,
    })
}

/// The groups some listener forwards to that have no healthy target.
pub fn unhealthy_groups(snapshot: &Snapshot) -> Vec<String> {
    let used: HashSet<&str> = snapshot
        .config
        .listeners
        .iter()
        .flat_map(|l| std::iter::once(&l.default_action).chain(l.rules.iter().map(|r| &r.action)))
        .filter_map(|a| match a {
            crate::config::Action::Forward(f) => Some(f.groups.iter().map(|(g, _)| g.as_str())),
            _ => None,
        })
        .flatten()
        .collect();
    snapshot
        .groups
        .iter()
        .filter(|g| used.contains(&*g.name) && g.health_counts().0 == 0)
        .map(|g| g.name.to_string())
        .collect()
}
