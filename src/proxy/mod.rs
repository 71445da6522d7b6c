//! Forwarding: L7 (HTTP requests to targets, pooled) and its pieces.

pub mod body;
pub mod headers;
pub mod http;
pub mod pool;
pub mod respond;
