//! edgelb: a load-balancer daemon with the semantics of AWS Elastic Load
//! Balancing. See `docs/architecture.md` for how the modules fit together.

pub mod acme;
pub mod admin;
pub mod balance;
pub mod cluster;
pub mod config;
pub mod control;
pub mod daemon;
pub mod files;
#[doc(hidden)]
pub mod fuzzing;
pub mod health;
pub mod listener;
pub mod oidc;
pub mod proxy;
pub mod route;
pub mod runtime;
pub mod telemetry;
pub mod tls;
pub mod trim;
pub mod upstream;
pub mod wire;
pub mod workers;
