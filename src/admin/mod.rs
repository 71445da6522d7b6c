//! The admin side: the HTTP API on `admin.bind`, the metrics registry, and the
//! JSON views of the running state.

pub mod access_log;
pub mod metrics;
mod server;
mod status;
mod time;

pub use server::{AdminApi, serve};
pub use time::rfc3339;
