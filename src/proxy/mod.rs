//! Forwarding: L7 (HTTP requests to targets, pooled) and L4 (byte streams).

pub mod attempt;
pub mod body;
pub mod client;
pub mod copy;
pub mod desync;
pub mod grpc;
pub mod h2;
pub mod headers;
pub mod http;
pub mod pool;
pub mod proxy_protocol;
pub mod raw;
pub mod record;
pub mod respond;
pub mod tcp;
