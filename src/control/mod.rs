//! The control plane of one process: starting, the serialised reloads (read,
//! validate, resolve, bind new listeners, build a snapshot, swap, retire the
//! old), target registration through the admin API, the draining of removed
//! targets, shutdown. It drives the listeners (`listener/`) and publishes
//! runtime snapshots (`runtime/`); the admin API and the daemon call it.

pub mod acme;
pub mod cluster;
mod dns;
mod server;

pub use server::{ReloadStatus, Server, StartError};
