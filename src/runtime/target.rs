//! Targets and target groups as one snapshot sees them.

use crate::balance::cookie::CookieKeys;
use crate::balance::sticky::TargetStickiness;
use crate::balance::{Balancer, Pick};
use crate::config::{self, GroupProtocol};
use crate::health::{Change, HealthState, Outcome, TargetHealth, Thresholds};
use crate::telemetry::metrics::GroupMetrics;
use crate::tls::TargetTls;
use crate::upstream::pool::ConnPool;
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
    /// HTTP/2 connections (`http2` and `grpc` groups).
    pub h2: crate::upstream::h2::H2Pool,
    /// Requests (or TCP connections) in flight to this target.
    pub outstanding: AtomicU32,
    /// Registered after the process started (by a reload or the API): its first
    /// success ramps it up under slow start, as for a recovered target.
    pub late: bool,
    /// Told when the target's deregistration delay ends: its remaining TCP
    /// connections are closed then.
    pub gone: tokio::sync::Notify,
}

impl TargetShared {
    /// State for a target that appears in a reload (not at start).
    pub fn late() -> Self {
        TargetShared {
            late: true,
            ..Default::default()
        }
    }
}

/// Milliseconds on a monotonic clock private to this process (never 0).
pub fn process_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
        + 1
}

/// Weights are scaled by this in groups with slow start, so that a ramp from
/// 10% of a weight of 1 still has integer steps.
const SLOW_START_SCALE: u32 = 100;

/// A target in one snapshot.
pub struct Target {
    /// The address as configured: the target's identity and its metric label.
    pub address: Arc<str>,
    /// Where to connect (host names resolved when the snapshot was built).
    pub addr: SocketAddr,
    pub weight: u32,
    /// Failover tier (an SRV priority): see [`GroupRuntime::pick`].
    pub tier: u16,
    /// Where the target comes from (`/status`).
    pub origin: config::Origin,
    pub shared: Arc<TargetShared>,
    /// `edgelb_target_up` of this target.
    pub up: IntGauge,
    /// TLS towards this target (https groups and https health checks).
    pub tls: Option<TargetTls>,
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
    pub protocol_version: config::ProtocolVersion,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub fail_open: bool,
    /// 0 = off.
    pub slow_start: Duration,
    pub health_check: config::HealthCheck,
    thresholds: Thresholds,
    /// Target stickiness, if the group has it.
    pub stickiness: Option<TargetStickiness>,
    /// Keys of the stickiness cookies.
    pub cookie_keys: Arc<CookieKeys>,
    pub targets: Vec<Target>,
    /// Targets sit in more than one tier (SRV priorities).
    tiered: bool,
    balancer: Balancer,
    pub metrics: GroupMetrics,
}

impl GroupRuntime {
    /// A group over `targets` with a fresh balancer.
    pub fn new(
        config: &config::TargetGroup,
        targets: Vec<Target>,
        metrics: GroupMetrics,
        cookie_keys: Arc<CookieKeys>,
    ) -> Self {
        GroupRuntime {
            name: Arc::from(config.name.as_str()),
            protocol: config.protocol,
            protocol_version: config.protocol_version,
            connect_timeout: config.connect_timeout,
            request_timeout: config.request_timeout,
            fail_open: config.fail_open,
            slow_start: config.slow_start,
            health_check: config.health_check.clone(),
            stickiness: config.stickiness.as_ref().map(TargetStickiness::new),
            cookie_keys,
            thresholds: Thresholds {
                healthy: config.health_check.healthy_threshold,
                unhealthy: config.health_check.unhealthy_threshold,
            },
            balancer: Balancer::new(config.algorithm, targets.len()),
            tiered: targets.windows(2).any(|w| w[0].tier != w[1].tier),
            targets,
            metrics,
        }
    }

    /// The tier that takes traffic: the lowest with a healthy target that
    /// has a weight (SRV: the lowest priority value while one of its records
    /// is healthy, the next when none is). `None` when nothing is healthy.
    fn active_tier(&self, exclude: Option<usize>) -> Option<u16> {
        self.targets
            .iter()
            .enumerate()
            .filter(|(i, t)| {
                Some(*i) != exclude
                    && t.weight > 0
                    && t.shared.health.state() == HealthState::Healthy
            })
            .map(|(_, t)| t.tier)
            .min()
    }

    /// Picks a target for a new request or connection, never `exclude` (a target
    /// that just failed). Healthy targets of the active tier first; when none
    /// is healthy and the group fails open, every target that is not draining.
    pub fn pick(&self, exclude: Option<usize>) -> Option<usize> {
        let n = self.targets.len();
        // Weights that only a change of state can change: kept by the balancer
        // until one happens (a failover from a tiered group's target may move
        // the active tier: that pick is made the long way).
        if !(self.tiered && exclude.is_some()) {
            let key = crate::health::changes();
            if let Some(picked) = self
                .balancer
                .pick_cached(key, n, exclude, || self.settled_weights())
            {
                return picked;
            }
        }
        // Only groups with several tiers pay for finding the active one.
        let tier = if self.tiered {
            self.active_tier(exclude)
        } else {
            None
        };
        let outstanding = |i: usize| self.targets[i].shared.outstanding.load(Ordering::Relaxed);
        let now_ms = if self.slow_start.is_zero() {
            0
        } else {
            process_ms()
        };
        let healthy = |i: usize| {
            let t = &self.targets[i];
            if t.shared.health.state() == HealthState::Healthy
                && Some(i) != exclude
                && tier.is_none_or(|tier| t.tier == tier)
            {
                self.effective_weight(t, now_ms)
            } else {
                0
            }
        };
        if let Some(i) = self.balancer.pick(n, healthy, outstanding) {
            return Some(i);
        }
        let any_healthy = self
            .targets
            .iter()
            .any(|t| t.shared.health.state() == HealthState::Healthy && t.weight > 0);
        if any_healthy || !self.fail_open {
            return None;
        }
        let open = |i: usize| {
            let t = &self.targets[i];
            let state = t.shared.health.state();
            if state != HealthState::Draining && state != HealthState::Unused && Some(i) != exclude
            {
                self.effective_weight(t, now_ms)
            } else {
                0
            }
        };
        self.balancer.pick(n, open, outstanding)
    }

    /// Every target's weight for [`Self::pick`] as long as no state changes:
    /// the healthy targets' of the active tier or, when nothing is healthy and
    /// the group fails open, every target's that is not draining. `None` while
    /// a slow-start ramp runs (the weights change by themselves then).
    fn settled_weights(&self) -> Option<Vec<u32>> {
        let now_ms = if self.slow_start.is_zero() {
            0
        } else {
            let now_ms = process_ms();
            let ramp = self.slow_start.as_millis() as u64;
            let ramping = |t: &Target| {
                let start = t.shared.health.ramp_start_ms();
                start != 0 && now_ms.saturating_sub(start) < ramp
            };
            if self.targets.iter().any(ramping) {
                return None;
            }
            now_ms
        };
        let tier = if self.tiered {
            self.active_tier(None)
        } else {
            None
        };
        let healthy: Vec<u32> = self
            .targets
            .iter()
            .map(|t| {
                if t.shared.health.state() == HealthState::Healthy
                    && tier.is_none_or(|tier| t.tier == tier)
                {
                    self.effective_weight(t, now_ms)
                } else {
                    0
                }
            })
            .collect();
        let any_healthy = self
            .targets
            .iter()
            .any(|t| t.shared.health.state() == HealthState::Healthy && t.weight > 0);
        if any_healthy || !self.fail_open {
            return Some(healthy);
        }
        Some(
            self.targets
                .iter()
                .map(|t| match t.shared.health.state() {
                    HealthState::Draining | HealthState::Unused => 0,
                    _ => self.effective_weight(t, now_ms),
                })
                .collect(),
        )
    }

    /// Whether target `index` may take a new request now: healthy with a
    /// weight, or — when the group fails open with nothing healthy — not draining.
    pub fn can_take(&self, index: usize) -> bool {
        let t = &self.targets[index];
        if t.weight == 0 {
            return false;
        }
        match t.shared.health.state() {
            HealthState::Healthy if self.tiered => self.active_tier(None) == Some(t.tier),
            HealthState::Healthy => true,
            HealthState::Draining | HealthState::Unused => false,
            HealthState::Initial | HealthState::Unhealthy => {
                self.fail_open && self.health_counts().0 == 0
            }
        }
    }

    /// A target's weight now: its configured weight, ramped linearly from 10%
    /// during slow start (SPEC: weight × max(0.1, elapsed / slow_start)).
    fn effective_weight(&self, t: &Target, now_ms: u64) -> u32 {
        if self.slow_start.is_zero() {
            return t.weight;
        }
        let full = t.weight * SLOW_START_SCALE;
        let start = t.shared.health.ramp_start_ms();
        if start == 0 || full == 0 {
            return full;
        }
        let ramp = self.slow_start.as_millis() as u64;
        let elapsed = now_ms.saturating_sub(start);
        if elapsed >= ramp {
            t.shared.health.end_ramp();
            return full;
        }
        slow_start_weight(full, elapsed, ramp)
    }

    /// Applies a check's outcome (active or passive) to target `index`; a change
    /// of state is logged once and published to the gauges.
    pub fn record(&self, index: usize, outcome: Outcome) {
        let t = &self.targets[index];
        let before = t.shared.health.state();
        // Only a group with slow start looks at the other targets (a pass over
        // all of them, on every check of a large group otherwise).
        let ramps = !self.slow_start.is_zero()
            && (before == HealthState::Unhealthy || t.shared.late)
            && self
                .targets
                .iter()
                .enumerate()
                .any(|(i, o)| i != index && o.shared.health.state() == HealthState::Healthy);
        if let Some(change) =
            t.shared
                .health
                .apply(outcome, self.thresholds, ramps.then(process_ms))
        {
            self.log_change(t, change);
            self.publish_counts();
            t.up.set((change.to == HealthState::Healthy) as i64);
        }
    }

    /// Logs a change of a target's state, with its reason.
    pub fn log_change(&self, t: &Target, change: Change) {
        let reason = change.reason.code().unwrap_or("-");
        if change.to == HealthState::Unhealthy {
            tracing::warn!(target_group = %self.name, target = %t.address, from = change.from.as_str(), to = change.to.as_str(), reason, "target health changed");
        } else {
            tracing::info!(target_group = %self.name, target = %t.address, from = change.from.as_str(), to = change.to.as_str(), reason, "target health changed");
        }
    }

    /// Sets the group's health gauges and every target's `edgelb_target_up`.
    pub fn publish_health(&self) {
        self.publish_counts();
        for t in &self.targets {
            t.up.set((t.shared.health.state() == HealthState::Healthy) as i64);
        }
    }

    /// Sets the group's healthy and unhealthy gauges.
    fn publish_counts(&self) {
        let (healthy, unhealthy) = self.health_counts();
        self.metrics.healthy_targets.set(healthy as i64);
        self.metrics.unhealthy_targets.set(unhealthy as i64);
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

/// `full` ramped linearly from 10% over `ramp` ms, at least 1.
pub fn slow_start_weight(full: u32, elapsed_ms: u64, ramp_ms: u64) -> u32 {
    let share = (elapsed_ms as f64 / ramp_ms as f64).max(0.1);
    ((full as f64 * share) as u32).clamp(1, full)
}

impl crate::route::NamedGroup for GroupRuntime {
    fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_start_ramp_values() {
        // weight 3 (scaled ×100), 60 s ramp
        assert_eq!(slow_start_weight(300, 0, 60_000), 30);
        assert_eq!(slow_start_weight(300, 3_000, 60_000), 30);
        assert_eq!(slow_start_weight(300, 6_000, 60_000), 30);
        assert_eq!(slow_start_weight(300, 15_000, 60_000), 75);
        assert_eq!(slow_start_weight(300, 30_000, 60_000), 150);
        assert_eq!(slow_start_weight(300, 59_999, 60_000), 299);
        assert_eq!(slow_start_weight(100, 0, 30_000), 10);
        assert_eq!(slow_start_weight(1, 0, 30_000), 1);
    }
}
