//! TLS with rustls (ring provider): certificates from PEM files, SNI selection,
//! listener configurations, and the client side towards https targets.

pub mod certs;
mod der;
pub mod server;

pub use certs::{LoadedCert, load};
