//! TLS with rustls (ring provider): SNI selection (certificates are read from
//! PEM files by `config::certs`),
//! listener configurations, client certificates (`client_auth`, `identity`),
//! and the client side towards https targets.

pub mod acme;
pub mod client;
pub mod client_auth;
pub mod identity;
pub mod server;
pub mod stream;

pub use crate::config::certs::{LoadedCert, load};
pub use stream::{TargetStream, TargetTls};
