//! Targets and target groups as one snapshot sees them.

use crate::admin::metrics::GroupMetrics;
use crate::balance::{Balancer, Pick};
use crate::config::{self, GroupProtocol};
use crate::health::{HealthState, TargetHealth};
use crate::proxy::pool::ConnPool;
use prometheus::IntGauge;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// What outlives snapshot swaps for one target, keyed by (group, address):
/// its health, its pool of idle connections, its in-flight count.
#[derive(Default)]
pub struct TargetShared {
    pub health: TargetHealth,
    pub pool: ConnPool,
    /// Requests (or TCP connections) in flight to this target.
    pub outstanding: AtomicU32,
}

/// A target in one snapshot.
pub struct Target {
    /// The address as configured: the target's identity and its metric label.
    pub address: Arc<str>,
    /// Where to connect (host names resolved when the snapshot was built).
    pub addr: SocketAddr,
    pub weight: u32,
    pub shared: Arc<TargetShared>,
    /// `edgelb_target_up` of this target.
    pub up: IntGauge,
}

impl Target {
    /// Marks one more request in flight; the guard unmarks it when dropped.
    pub fn start_request(&self) -> OutstandingGuard {
        self.shared.outstanding.fetch_add(1, Ordering::Relaxed);
        OutstandingGuard(self.shared.clone())
    }
}

/// Holds one unit of a target's outstanding count.
pub struct OutstandingGuard(Arc<TargetShared>);

impl OutstandingGuard {
    /// The target's shared state (its pool, for giving a connection back).
    pub fn shared(&self) -> &TargetShared {
        &self.0
    }
}

impl Drop for OutstandingGuard {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A target group in one snapshot: its targets, its balancer, its settings.
pub struct GroupRuntime {
    pub name: Arc<str>,
    pub protocol: GroupProtocol,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub fail_open: bool,
    pub targets: Vec<Target>,
    balancer: Balancer,
    pub metrics: GroupMetrics,
}

impl GroupRuntime {
    /// A group over `targets` with a fresh balancer.
    pub fn new(config: &config::TargetGroup, targets: Vec<Target>, metrics: GroupMetrics) -> Self {
        GroupRuntime {
            name: Arc::from(config.name.as_str()),
            protocol: config.protocol,
            connect_timeout: config.connect_timeout,
            request_timeout: config.request_timeout,
            fail_open: config.fail_open,
            balancer: Balancer::new(config.algorithm, targets.len()),
            targets,
            metrics,
        }
    }

    /// Picks a target for a new request or connection, never `exclude` (a target
    /// that just failed). Healthy targets first; when none is healthy and the
    /// group fails open, every target that is not draining.
    pub fn pick(&self, exclude: Option<usize>) -> Option<usize> {
        let n = self.targets.len();
        let outstanding = |i: usize| self.targets[i].shared.outstanding.load(Ordering::Relaxed);
        let mut any_healthy = false;
        let healthy = |i: usize| {
            let t = &self.targets[i];
            if t.shared.health.state() == HealthState::Healthy && Some(i) != exclude {
                t.weight
            } else {
                0
            }
        };
        if let Some(i) = self.balancer.pick(n, healthy, outstanding) {
            return Some(i);
        }
        for t in &self.targets {
            any_healthy |= t.shared.health.state() == HealthState::Healthy && t.weight > 0;
        }
        if any_healthy || !self.fail_open {
            return None;
        }
        let open = |i: usize| {
            let t = &self.targets[i];
            let state = t.shared.health.state();
            if state != HealthState::Draining && state != HealthState::Unused && Some(i) != exclude
            {
                t.weight
            } else {
                0
            }
        };
        self.balancer.pick(n, open, outstanding)
    }

    /// Counts of (healthy, unhealthy) targets.
    pub fn health_counts(&self) -> (usize, usize) {
        let healthy = self
            .targets
            .iter()
            .filter(|t| t.shared.health.state() == HealthState::Healthy)
            .count();
        let unhealthy = self
            .targets
            .iter()
            .filter(|t| t.shared.health.state() == HealthState::Unhealthy)
            .count();
        (healthy, unhealthy)
    }
}
