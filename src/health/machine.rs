//! The ELB target-health state machine, pure: counts and state in, outcome and
//! thresholds applied, new counts and state out. Time never enters it.

use super::state::HealthState;

/// Why a target is not (yet) healthy: ELB's reason codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Reason {
    None = 0,
    InitialHealthChecking = 1,
    Timeout = 2,
    ResponseCodeMismatch = 3,
    FailedHealthChecks = 4,
    DeregistrationInProgress = 5,
}

impl Reason {
    /// ELB's spelling, or `None` for no reason.
    pub fn code(self) -> Option<&'static str> {
        match self {
            Reason::None => None,
            Reason::InitialHealthChecking => Some("Elb.InitialHealthChecking"),
            Reason::Timeout => Some("Target.Timeout"),
            Reason::ResponseCodeMismatch => Some("Target.ResponseCodeMismatch"),
            Reason::FailedHealthChecks => Some("Target.FailedHealthChecks"),
            Reason::DeregistrationInProgress => Some("Target.DeregistrationInProgress"),
        }
    }

    pub(crate) fn from_u8(v: u8) -> Self {
        match v {
            1 => Reason::InitialHealthChecking,
            2 => Reason::Timeout,
            3 => Reason::ResponseCodeMismatch,
            4 => Reason::FailedHealthChecks,
            5 => Reason::DeregistrationInProgress,
            _ => Reason::None,
        }
    }
}

/// The result of one check (active, or a passive failure seen by a request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure(Reason),
}

/// Consecutive results needed to change state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Successes: unhealthy → healthy.
    pub healthy: u32,
    /// Failures: healthy/initial → unhealthy.
    pub unhealthy: u32,
}

/// A target's health record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pub state: HealthState,
    pub reason: Reason,
    pub successes: u32,
    pub failures: u32,
}

impl Record {
    /// A newly registered target.
    pub fn initial() -> Self {
        Record {
            state: HealthState::Initial,
            reason: Reason::InitialHealthChecking,
            successes: 0,
            failures: 0,
        }
    }

    /// The record after `outcome`. Draining and unused targets do not change.
    pub fn apply(self, outcome: Outcome, t: Thresholds) -> Record {
        if matches!(self.state, HealthState::Draining | HealthState::Unused) {
            return self;
        }
        match outcome {
            Outcome::Success => {
                let successes = self.successes.saturating_add(1);
                let healthy = match self.state {
                    // A new target is in service on its first success.
                    HealthState::Initial | HealthState::Healthy => true,
                    _ => successes >= t.healthy,
                };
                if healthy {
                    Record {
                        state: HealthState::Healthy,
                        reason: Reason::None,
                        successes,
                        failures: 0,
                    }
                } else {
                    Record {
                        successes,
                        failures: 0,
                        ..self
                    }
                }
            }
            Outcome::Failure(reason) => {
                let failures = self.failures.saturating_add(1);
                let state = if failures >= t.unhealthy {
                    HealthState::Unhealthy
                } else {
                    self.state
                };
                let reason = match state {
                    HealthState::Unhealthy => reason,
                    _ => self.reason,
                };
                Record {
                    state,
                    reason,
                    successes: 0,
                    failures,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds = Thresholds {
        healthy: 3,
        unhealthy: 2,
    };
    const FAIL: Outcome = Outcome::Failure(Reason::FailedHealthChecks);

    fn run(mut r: Record, outcomes: &[Outcome]) -> Record {
        for o in outcomes {
            r = r.apply(*o, T);
        }
        r
    }

    #[test]
    fn new_target_is_healthy_on_first_success() {
        let r = Record::initial().apply(Outcome::Success, T);
        assert_eq!((r.state, r.reason), (HealthState::Healthy, Reason::None));
    }

    #[test]
    fn unhealthy_after_threshold_failures_from_initial_or_healthy() {
        let r = Record::initial().apply(FAIL, T);
        assert_eq!(
            (r.state, r.reason),
            (HealthState::Initial, Reason::InitialHealthChecking)
        );
        let r = r.apply(Outcome::Failure(Reason::Timeout), T);
        assert_eq!(
            (r.state, r.reason),
            (HealthState::Unhealthy, Reason::Timeout)
        );

        let healthy = Record::initial().apply(Outcome::Success, T);
        let r = run(healthy, &[FAIL]);
        assert_eq!(r.state, HealthState::Healthy);
        let r = run(
            healthy,
            &[FAIL, Outcome::Failure(Reason::ResponseCodeMismatch)],
        );
        assert_eq!(
            (r.state, r.reason),
            (HealthState::Unhealthy, Reason::ResponseCodeMismatch)
        );
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let healthy = Record::initial().apply(Outcome::Success, T);
        let r = run(healthy, &[FAIL, Outcome::Success, FAIL]);
        assert_eq!((r.state, r.failures), (HealthState::Healthy, 1));
    }

    #[test]
    fn recovery_needs_healthy_threshold_successes() {
        let down = run(Record::initial(), &[FAIL, FAIL]);
        assert_eq!(down.state, HealthState::Unhealthy);
        let r = run(down, &[Outcome::Success, Outcome::Success]);
        assert_eq!((r.state, r.successes), (HealthState::Unhealthy, 2));
        assert_eq!(r.reason, Reason::FailedHealthChecks);
        let r = run(
            down,
            &[
                Outcome::Success,
                Outcome::Success,
                FAIL,
                Outcome::Success,
                Outcome::Success,
            ],
        );
        assert_eq!(
            r.state,
            HealthState::Unhealthy,
            "a failure restarts the count"
        );
        let r = run(down, &[Outcome::Success; 3]);
        assert_eq!((r.state, r.reason), (HealthState::Healthy, Reason::None));
    }

    #[test]
    fn draining_and_unused_ignore_checks() {
        for state in [HealthState::Draining, HealthState::Unused] {
            let r = Record {
                state,
                reason: Reason::None,
                successes: 0,
                failures: 0,
            };
            assert_eq!(run(r, &[FAIL, FAIL, FAIL]), r);
            assert_eq!(run(r, &[Outcome::Success]), r);
        }
    }

    #[test]
    fn thresholds_of_one() {
        let t = Thresholds {
            healthy: 1,
            unhealthy: 1,
        };
        let r = Record::initial().apply(FAIL, t);
        assert_eq!(r.state, HealthState::Unhealthy);
        assert_eq!(r.apply(Outcome::Success, t).state, HealthState::Healthy);
    }
}
