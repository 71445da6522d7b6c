//! Target health: the ELB states, shared with the balancers through atomics.

mod state;

pub use state::{HealthState, TargetHealth};
