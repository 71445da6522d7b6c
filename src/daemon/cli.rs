//! The command line (SPEC §1).

use super::client;
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
    /// The running daemon's listeners and targets, as a table.
    Status {
        /// The `/status` document instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// List, register or deregister a group's targets.
    Targets {
        #[command(subcommand)]
        call: TargetsCall,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Reload the running daemon's configuration.
    Reload {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// The shared configuration and members of a cluster (etcd, SPEC §11).
    Cluster {
        #[command(subcommand)]
        call: ClusterCall,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Subcommand)]
enum ClusterCall {
    /// Validate a shared configuration (listeners, rules, groups) and write
    /// it to etcd: every node applies it.
    Push {
        #[arg(long)]
        config: PathBuf,
    },
    /// This node, its connection to etcd and every member's state.
    Show {
        #[arg(long)]
        json: bool,
    },
}

/// How the client commands reach the admin API.
#[derive(clap::Args)]
struct AdminArgs {
    /// The admin API (default: $EDGELB_ADMIN, else http://127.0.0.1:9901).
    #[arg(long, global = true)]
    admin: Option<String>,
    /// The admin token's file (default: $EDGELB_TOKEN_FILE, else
    /// /etc/edgelb/admin.token; read only by calls that change something).
    #[arg(long, global = true)]
    token_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum TargetsCall {
    /// A group's targets and their health.
    List {
        group: String,
        #[arg(long)]
        json: bool,
    },
    /// Register a target (it starts initial).
    Register {
        group: String,
        address: String,
        #[arg(long, default_value_t = 1)]
        weight: u32,
    },
    /// Deregister a target (it drains).
    Deregister { group: String, address: String },
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
        Command::Status { json, admin } => client::status(&admin.into(), json),
        Command::Targets { call, admin } => {
            let admin = admin.into();
            match call {
                TargetsCall::List { group, json } => client::list(&admin, &group, json),
                TargetsCall::Register {
                    group,
                    address,
                    weight,
                } => client::register(&admin, &group, &address, weight),
                TargetsCall::Deregister { group, address } => {
                    client::deregister(&admin, &group, &address)
                }
            }
        }
        Command::Reload { admin } => client::reload(&admin.into()),
        Command::Cluster { call, admin } => match call {
            ClusterCall::Push { config } => client::push(&admin.into(), &config),
            ClusterCall::Show { json } => client::cluster_show(&admin.into(), json),
        },
    };
    ExitCode::from(code)
}

impl From<AdminArgs> for client::Admin {
    fn from(a: AdminArgs) -> Self {
        client::Admin::new(a.admin, a.token_file)
    }
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
