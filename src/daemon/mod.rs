//! The process: command line, the client commands of the admin API, the `run` loop with signals and systemd
//! notifications, and the built-in demo.

pub mod cli;
mod client;
mod demo;
mod notify;
mod run;
mod watch;

pub use cli::main;
pub use run::{AdminBind, serve};
