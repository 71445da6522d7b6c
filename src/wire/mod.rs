//! The HTTP/1 wire layer under both stacks: request and response heads read
//! in place (httparse), the target's head written from a client's, chunked
//! framing followed byte by byte and a response body followed to its end, the `Date` value, the identity headers
//! edgelb writes (X-Forwarded-*, X-Request-Id) and the names that never cross
//! the proxy. Pure code on bytes: no sockets, no runtime, no imports from the
//! layers above. The fast path (`listener::fast`) and hyper's path with its raw target
//! sockets (`proxy::raw`) both use it.

pub mod body;
pub mod chunked;
pub mod connection;
pub mod date;
pub mod forwarded;
pub mod grpc;
pub mod request;
pub mod response;
pub mod rewrite;
pub mod time;
