//! The ELB target states and a target's health as balancers read it.

use std::sync::atomic::{AtomicU8, Ordering};

/// ELB target states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum HealthState {
    /// Registered, not yet checked.
    Initial = 0,
    /// InService.
    Healthy = 1,
    /// OutOfService.
    Unhealthy = 2,
    /// Removed or deregistered: no new requests.
    Draining = 3,
    /// In a group no listener uses.
    Unused = 4,
}

impl HealthState {
    /// The spelling of the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Initial => "initial",
            HealthState::Healthy => "healthy",
            HealthState::Unhealthy => "unhealthy",
            HealthState::Draining => "draining",
            HealthState::Unused => "unused",
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            0 => HealthState::Initial,
            1 => HealthState::Healthy,
            2 => HealthState::Unhealthy,
            3 => HealthState::Draining,
            _ => HealthState::Unused,
        }
    }
}

/// A target's health, read on every pick with one atomic load and written by
/// whoever learns something about the target.
#[derive(Debug)]
pub struct TargetHealth {
    state: AtomicU8,
}

impl TargetHealth {
    /// A target whose health is not checked (this build has no active checker
    /// yet): it is taken as healthy.
    pub fn unchecked() -> Self {
        TargetHealth {
            state: AtomicU8::new(HealthState::Healthy as u8),
        }
    }

    /// The current state.
    #[inline]
    pub fn state(&self) -> HealthState {
        HealthState::from_u8(self.state.load(Ordering::Relaxed))
    }

    /// Moves to `state`.
    pub fn set(&self, state: HealthState) {
        self.state.store(state as u8, Ordering::Relaxed);
    }

    /// The ELB reason code of the current state, if any.
    pub fn reason(&self) -> Option<&'static str> {
        match self.state() {
            HealthState::Initial => Some("Elb.InitialHealthChecking"),
            HealthState::Draining => Some("Target.DeregistrationInProgress"),
            HealthState::Unhealthy => Some("Target.FailedHealthChecks"),
            HealthState::Healthy | HealthState::Unused => None,
        }
    }
}

impl Default for TargetHealth {
    fn default() -> Self {
        TargetHealth::unchecked()
    }
}
