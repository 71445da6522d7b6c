//! The command line (SPEC §1).

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// The default configuration file.
pub const DEFAULT_CONFIG: &str = "/etc/edgelb/edgelb.toml";

/// `--version` text: `edgelb X.Y.Z`, then build information.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\nbuild: ",
    env!("EDGELB_BUILD_TARGET"),
    ", ",
    env!("EDGELB_BUILD_PROFILE"),
    ", rustc ",
    env!("EDGELB_RUSTC_VERSION")
);

#[derive(Parser)]
#[command(name = "edgelb", version, long_version = LONG_VERSION, about = "A load balancer with the semantics of AWS Elastic Load Balancing")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon in the foreground.
    Run {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Replace a running edgelb (binary upgrade): serve beside it on the
        /// same listener addresses and take the admin address when it frees.
        #[arg(long)]
        upgrade: bool,
    },
    /// Parse and validate a configuration file; bind nothing.
    Check {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Start three demo targets and a listener in front of them.
    Demo {
        /// The demo listener's address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// The admin API's address.
        #[arg(long, default_value = "127.0.0.1:9901")]
        admin: SocketAddr,
    },
    /// Print the version and build information.
    Version,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Run { config, upgrade } => super::run::run(&config, upgrade),
        Command::Check { config } => check(&config),
        Command::Demo { listen, admin } => super::demo::demo(listen, admin),
        Command::Version => {
            println!("edgelb {LONG_VERSION}");
            0
        }
    };
    ExitCode::from(code)
}

fn check(path: &std::path::Path) -> u8 {
    match crate::config::load(path) {
        Ok(loaded) => {
            for line in &loaded.warnings {
                eprintln!("warning: {line}");
            }
            println!("configuration ok");
            0
        }
        Err(e) => {
            for line in &e.lines {
                eprintln!("{line}");
            }
            1
        }
    }
}
