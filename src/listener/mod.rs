//! Listeners: accept loops, the per-connection HTTP service, the set of running
//! listeners and how it changes on reload.

pub(crate) mod accept;
pub mod budget;
pub mod coalesce;
pub mod dispatch;
pub mod fast;
pub mod framing;
pub mod h2_watch;
pub(crate) mod http;
pub(crate) mod io;
pub(crate) mod park;

mod set;
mod spread;

pub use crate::runtime::listener::{http_builder, http1_builder};
pub use accept::bind;
pub use set::{ListenerSet, Prepared, drain};

pub use crate::proxy::client::ClientConn;
