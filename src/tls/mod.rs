//! TLS with rustls (ring provider): certificates from PEM files, SNI selection,
//! listener configurations, and the client side towards https targets.

pub mod certs;
pub mod client;
mod der;
pub mod server;
pub mod stream;

pub use certs::{LoadedCert, load};
pub use stream::{TargetStream, TargetTls};
