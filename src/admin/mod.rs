//! The admin side: the HTTP API on `admin.bind` and the JSON views of the
//! running state. The metrics and the access log it serves are
//! [`crate::telemetry`]'s (re-exported here under their old paths).

mod server;
mod status;

pub use crate::telemetry::{access_log, metrics, rfc3339};
pub use server::{AdminApi, serve};
