//! The runtime snapshot (everything a request needs, immutable, swapped whole
//! on reload) and the server that builds, publishes and retires snapshots.

pub mod listener;
pub mod registry;
mod resolve;
mod server;
mod snapshot;
pub mod sticky;
pub mod target;

pub use server::{ReloadStatus, Server, StartError};
pub use snapshot::{Snapshot, used_groups};

/// The live snapshot: loaded once per request or connection, stored once per reload.
pub type Live = arc_swap::ArcSwap<Snapshot>;
