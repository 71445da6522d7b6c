//! What the running load balancer tells about itself: the metric handles the
//! request path touches (resolved once per snapshot, atomics only), the access
//! log writer, and RFC 3339 time. Below everything that serves traffic; the
//! admin API (`admin/`) only reads it.

pub mod access_log;
pub mod metrics;
pub use crate::wire::time::rfc3339;
