//! The active checkers: one task per target of every group a listener uses,
//! started with a snapshot and stopped when the next one replaces it.

use crate::config::{GroupProtocol, HealthPort};
use crate::health::Outcome;
use crate::health::probe::{HttpProbe, ProbeSpec, probe};
use crate::runtime::target::GroupRuntime;
use http::HeaderValue;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::task::AbortHandle;

/// The running checkers of one snapshot; dropping this stops them.
#[derive(Default)]
pub struct Checkers {
    tasks: Vec<AbortHandle>,
}

impl Drop for Checkers {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Checkers {
    /// Starts a checker for every target of every group in `groups`.
    pub fn start<'a>(groups: impl IntoIterator<Item = &'a Arc<GroupRuntime>>) -> Self {
        let mut tasks = Vec::new();
        for group in groups {
            for index in 0..group.targets.len() {
                tasks.push(tokio::spawn(check_loop(group.clone(), index)).abort_handle());
            }
        }
        Checkers { tasks }
    }

    /// How many checkers run.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether none runs.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
}

fn spec(group: &GroupRuntime, index: usize) -> ProbeSpec {
    let target = &group.targets[index];
    let hc = &group.health_check;
    let port = match hc.port {
        HealthPort::TrafficPort => target.addr.port(),
        HealthPort::Port(p) => p,
    };
    let http = match hc.protocol {
        GroupProtocol::Tcp => None,
        GroupProtocol::Http | GroupProtocol::Https => Some(HttpProbe {
            path: hc.path.clone(),
            host: HeaderValue::from_str(&target.address)
                .unwrap_or(HeaderValue::from_static("localhost")),
            matcher: hc.matcher.clone(),
            grpc_service: hc.grpc_service.clone(),
            h2: group.protocol_version.is_h2(),
        }),
    };
    ProbeSpec {
        addr: SocketAddr::new(target.addr.ip(), port),
        http,
        tls: (hc.protocol == GroupProtocol::Https)
            .then(|| target.tls.clone())
            .flatten(),
        timeout: hc.timeout,
    }
}

/// A small per-task random source for jitter.
fn seed() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x9e37_79b9_7f4a_7c15);
    h.finish() | 1
}

fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

async fn check_loop(group: Arc<GroupRuntime>, index: usize) {
    let spec = spec(&group, index);
    let interval = group.health_check.interval;
    let mut random = seed();
    loop {
        let started = Instant::now();
        let outcome = probe(&spec).await;
        let latency_us = started.elapsed().as_micros().min(u32::MAX as u128) as u32;
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let ok = outcome == Outcome::Success;
        group.targets[index]
            .shared
            .health
            .note_check(now_ms, ok, latency_us);
        if ok {
            &group.metrics.checks_success
        } else {
            &group.metrics.checks_failure
        }
        .inc();
        group.record(index, outcome);
        // Up to 10% jitter so that checks of many targets do not fire in lockstep.
        let jitter = interval.mul_f64((next_random(&mut random) % 1000) as f64 / 10_000.0);
        tokio::time::sleep(
            interval
                .saturating_sub(jitter)
                .max(Duration::from_millis(10)),
        )
        .await;
    }
}
