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

/// Time between the first checks of two targets (10,000 a second): a group of
/// a hundred targets is checked within 10 ms of a start, 10,000 within a second.
pub const FIRST_CHECK_SPACING: Duration = Duration::from_micros(100);

/// What one probe's connection holds while it runs (hyper's buffers), roughly.
const PROBE_KIB: u64 = 20;

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
    /// Starts a checker for every target of every group in `groups`. The
    /// first checks are spread [`FIRST_CHECK_SPACING`] apart (within each
    /// group's interval) rather than all sent at once: 10,000 targets would
    /// otherwise hold 10,000 probe connections and their buffers at the same
    /// moment, at every start and reload.
    pub fn start<'a>(groups: impl IntoIterator<Item = &'a Arc<GroupRuntime>>) -> Self {
        let mut tasks = Vec::new();
        for group in groups {
            let interval = group.health_check.interval;
            for index in 0..group.targets.len() {
                let first = first_check_delay(tasks.len(), interval);
                tasks.push(tokio::spawn(check_loop(group.clone(), index, first)).abort_handle());
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

/// When the `k`-th checker of a start sends its first check: `k` spacings
/// later, wrapped within the group's `interval`.
fn first_check_delay(k: usize, interval: Duration) -> Duration {
    let interval = interval.as_nanos().max(1);
    Duration::from_nanos((FIRST_CHECK_SPACING.as_nanos() * k as u128 % interval) as u64)
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

async fn check_loop(group: Arc<GroupRuntime>, index: usize, first: Duration) {
    let spec = spec(&group, index);
    let interval = group.health_check.interval;
    let mut random = seed();
    if !first.is_zero() {
        tokio::time::sleep(first).await;
    }
    let mut first_round = true;
    loop {
        let started = Instant::now();
        // Boxed: a probe's state (connection, client, TLS) is held only while
        // it runs, not by every sleeping checker.
        let outcome = Box::pin(probe(&spec)).await;
        if first_round {
            // The first checks of a start or reload come as a burst: what
            // their connections held goes back to the system once it settles.
            crate::trim::freed(PROBE_KIB);
            first_round = false;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_checks_are_spread_within_the_interval() {
        let second = Duration::from_secs(1);
        assert_eq!(first_check_delay(0, second), Duration::ZERO);
        assert_eq!(first_check_delay(100, second), Duration::from_millis(10));
        assert_eq!(
            first_check_delay(9_999, second),
            Duration::from_micros(999_900)
        );
        // Past the interval the delays wrap: no check waits longer than one.
        assert_eq!(
            first_check_delay(10_001, second),
            Duration::from_micros(100)
        );
        assert_eq!(
            first_check_delay(30, Duration::from_millis(1)),
            Duration::ZERO
        );
    }
}
