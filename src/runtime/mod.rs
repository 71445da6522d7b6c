//! The runtime snapshot: everything a request needs, immutable, swapped whole
//! on reload, with the state that outlives a swap (targets' health, pools).
//! `control::Server` builds, publishes and retires snapshots.

pub mod checker;
pub mod dns;
pub mod listener;
pub mod registry;
pub(crate) mod resolve;
pub(crate) mod snapshot;
pub mod target;

pub use snapshot::{Snapshot, used_groups};

/// The live snapshot: loaded once per request or connection, stored once per reload.
pub type Live = arc_swap::ArcSwap<Snapshot>;
