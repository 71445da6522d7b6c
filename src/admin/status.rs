//! JSON views of the running state: `/status`, target health, `/healthz`.

use crate::control::ReloadStatus;
use crate::runtime::Snapshot;
use crate::runtime::target::GroupRuntime;
use crate::telemetry::rfc3339;
use serde_json::{Value, json};
use std::time::{Duration, UNIX_EPOCH};

/// One group's targets as DescribeTargetHealth shows them.
pub fn targets_json(group: &GroupRuntime) -> Vec<Value> {
    group
        .targets
        .iter()
        .map(|t| {
            let health = &t.shared.health;
            let last = health.last_check();
            let (successes, failures) = health.counts();
            json!({
                "address": &*t.address,
                "origin": t.origin.to_string(),
                "weight": t.weight,
                "state": health.state().as_str(),
                "reason": health.reason(),
                "last_check": last.map(|l| rfc3339(UNIX_EPOCH + Duration::from_millis(l.at_ms))),
                "last_check_result": last.map(|l| if l.ok { "success" } else { "failure" }),
                "last_check_latency_ms": last.map(|l| l.latency_us as f64 / 1000.0),
                "consecutive_successes": successes,
                "consecutive_failures": failures,
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
    let used = crate::runtime::used_groups(&snapshot.config);
    snapshot
        .groups
        .iter()
        .filter(|g| used.contains(&*g.name) && g.health_counts().0 == 0)
        .map(|g| g.name.to_string())
        .collect()
}
