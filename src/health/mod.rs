//! Target health: the ELB states and reasons, the pure state machine, the
//! shared atomics balancers read, and the active checkers.

pub mod checker;
pub mod machine;
mod probe;
mod state;

pub use machine::{Outcome, Reason, Thresholds};
pub use state::{Change, HealthState, LastCheck, TargetHealth};
