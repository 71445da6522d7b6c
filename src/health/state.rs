//! A target's health as everyone else reads it: atomics, so a balancer's check
//! is one load and a state change is visible to the next request.

use super::machine::{Outcome, Reason, Record, Thresholds};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};

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

/// The last check, as `/status` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastCheck {
    /// Unix milliseconds.
    pub at_ms: u64,
    pub ok: bool,
    pub latency_us: u32,
}

/// A change of state, for the caller to log and publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    pub from: HealthState,
    pub to: HealthState,
    pub reason: Reason,
}

/// Changes of any target's state so far: what cached balancing state is
/// keyed on ([`changes`]).
static CHANGES: AtomicU64 = AtomicU64::new(0);

/// A count that grows whenever any target's state changes: a balancer that
/// caches what it derived from the states (its weights) asks again when it has
/// moved. Read before the states it derives from.
#[inline]
pub fn changes() -> u64 {
    CHANGES.load(Ordering::Acquire)
}

/// A target's health: written rarely (a check, a passive failure, a reload),
/// read on every pick.
#[derive(Debug)]
pub struct TargetHealth {
    state: AtomicU8,
    reason: AtomicU8,
    successes: AtomicU32,
    failures: AtomicU32,
    last_at_ms: AtomicU64,
    last_latency_us: AtomicU32,
    last_ok: AtomicU8,
    /// When the target last became healthy and starts a slow-start ramp
    /// (milliseconds on the process clock; 0 = not ramping).
    ramp_start_ms: AtomicU64,
    /// Serialises read-modify-write updates (checker and passive signal).
    update: Mutex<()>,
}

impl Default for TargetHealth {
    fn default() -> Self {
        TargetHealth::new(HealthState::Initial)
    }
}

impl TargetHealth {
    /// A target in `state` (`initial` for a new one).
    pub fn new(state: HealthState) -> Self {
        let reason = if state == HealthState::Initial {
            Reason::InitialHealthChecking
        } else {
            Reason::None
        };
        TargetHealth {
            state: AtomicU8::new(state as u8),
            reason: AtomicU8::new(reason as u8),
            successes: AtomicU32::new(0),
            failures: AtomicU32::new(0),
            last_at_ms: AtomicU64::new(0),
            last_latency_us: AtomicU32::new(0),
            last_ok: AtomicU8::new(0),
            ramp_start_ms: AtomicU64::new(0),
            update: Mutex::new(()),
        }
    }

    /// The current state.
    #[inline]
    pub fn state(&self) -> HealthState {
        HealthState::from_u8(self.state.load(Ordering::Relaxed))
    }

    /// The ELB reason code of the current state, if any.
    pub fn reason(&self) -> Option<&'static str> {
        Reason::from_u8(self.reason.load(Ordering::Relaxed)).code()
    }

    /// Consecutive (successes, failures).
    pub fn counts(&self) -> (u32, u32) {
        (
            self.successes.load(Ordering::Relaxed),
            self.failures.load(Ordering::Relaxed),
        )
    }

    /// The last active check, if there was one.
    pub fn last_check(&self) -> Option<LastCheck> {
        let at_ms = self.last_at_ms.load(Ordering::Relaxed);
        (at_ms != 0).then(|| LastCheck {
            at_ms,
            ok: self.last_ok.load(Ordering::Relaxed) == 1,
            latency_us: self.last_latency_us.load(Ordering::Relaxed),
        })
    }

    /// When the current slow-start ramp began (process-clock ms), if any.
    #[inline]
    pub fn ramp_start_ms(&self) -> u64 {
        self.ramp_start_ms.load(Ordering::Relaxed)
    }

    /// Ends a ramp (slow start passed).
    pub fn end_ramp(&self) {
        self.ramp_start_ms.store(0, Ordering::Relaxed);
    }

    fn record(&self) -> Record {
        Record {
            state: self.state(),
            reason: Reason::from_u8(self.reason.load(Ordering::Relaxed)),
            successes: self.successes.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
        }
    }

    fn store(&self, r: Record) {
        self.successes.store(r.successes, Ordering::Relaxed);
        self.failures.store(r.failures, Ordering::Relaxed);
        self.reason.store(r.reason as u8, Ordering::Relaxed);
        let before = self.state.swap(r.state as u8, Ordering::AcqRel);
        if before != r.state as u8 {
            CHANGES.fetch_add(1, Ordering::Release);
        }
    }

    /// Applies a check's outcome; `ramp_from_ms` starts a slow-start ramp if the
    /// target becomes healthy now. Returns the change of state, if any.
    pub fn apply(
        &self,
        outcome: Outcome,
        t: Thresholds,
        ramp_from_ms: Option<u64>,
    ) -> Option<Change> {
        let _guard = self.update.lock().unwrap_or_else(|e| e.into_inner());
        let before = self.record();
        let after = before.apply(outcome, t);
        if before == after {
            return None;
        }
        if after.state == HealthState::Healthy && before.state != HealthState::Healthy {
            self.ramp_start_ms
                .store(ramp_from_ms.unwrap_or(0), Ordering::Relaxed);
        }
        self.store(after);
        (before.state != after.state).then_some(Change {
            from: before.state,
            to: after.state,
            reason: after.reason,
        })
    }

    /// Records when an active check ran, whether it passed and how long it took.
    pub fn note_check(&self, at_ms: u64, ok: bool, latency_us: u32) {
        self.last_latency_us.store(latency_us, Ordering::Relaxed);
        self.last_ok.store(ok as u8, Ordering::Relaxed);
        self.last_at_ms.store(at_ms, Ordering::Relaxed);
    }

    /// Forces a state (draining, unused, back to initial) with its reason.
    pub fn force(&self, state: HealthState) -> Option<Change> {
        let _guard = self.update.lock().unwrap_or_else(|e| e.into_inner());
        let before = self.state();
        if before == state {
            return None;
        }
        let reason = match state {
            HealthState::Initial => Reason::InitialHealthChecking,
            HealthState::Draining => Reason::DeregistrationInProgress,
            _ => Reason::None,
        };
        self.store(Record {
            state,
            reason,
            successes: 0,
            failures: 0,
        });
        Some(Change {
            from: before,
            to: state,
            reason,
        })
    }
}
