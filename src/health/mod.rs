//! Target health: the ELB states and reasons, the pure state machine, the
//! shared atomics balancers read, and one check of one target (the tasks
//! that run them per snapshot are `runtime::checker`'s).

pub mod machine;
pub mod probe;
mod state;

pub use machine::{Outcome, Reason, Thresholds};
pub use state::{Change, HealthState, LastCheck, TargetHealth, changes};
