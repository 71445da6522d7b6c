//! Connections to targets, below the runtime that holds them: each target's
//! pool of keep-alive connections (hyper HTTP/1.1 client connections, the
//! fast path's plain sockets, multiplexed HTTP/2 connections), opening connections, and the request body
//! carried on them. Nothing here knows of groups, balancing or health: the
//! forwarding code above (`proxy/`) decides where a request goes and what a
//! failure means.

pub mod connect;
pub mod h2;
pub mod pool;
pub mod request_body;
pub mod sent;
pub mod stall;
