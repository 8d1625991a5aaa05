//! Command-line interface: argument parsing and dispatch.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// openami: a self-hosted, EC2-compatible machine image service.
#[derive(Debug, Parser)]
#[command(name = "openami", version, about)]
pub struct Cli {
    /// Log at debug level (OPENAMI_LOG overrides, e.g. OPENAMI_LOG=openami=trace).
    #[arg(long, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the openami server on a data directory.
    Serve(ServeArgs),
    /// Inspect and maintain the block store of a data directory.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, clap::Args)]
pub struct DataDirArg {
    /// Data directory (created on first start).
    #[arg(long, env = "OPENAMI_DATA_DIR", default_value = "./openami-data")]
    pub data_dir: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub data: DataDirArg,
    /// Address to listen on.
    #[arg(long, env = "OPENAMI_LISTEN", default_value = "127.0.0.1:8773")]
    pub listen: SocketAddr,
    /// Seconds between background garbage collections of the block store (0 = never).
    #[arg(long, env = "OPENAMI_GC_INTERVAL", default_value_t = 600)]
    pub gc_interval: u64,
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Space accounting: logical, unique and stored bytes; dedup and compression ratios.
    Stats {
        #[command(flatten)]
        data: DataDirArg,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Verify every stored block against its hash and every manifest's references.
    /// Exits with status 1 if anything is corrupt or missing.
    Scrub {
        #[command(flatten)]
        data: DataDirArg,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Free blocks nothing references. Refused while a server owns the data directory
    /// (the server collects garbage itself, see `serve --gc-interval`).
    Gc {
        #[command(flatten)]
        data: DataDirArg,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Snapshot, incremental snapshot, volume-from-snapshot and read-back of a mixed
    /// volume, against `cp --sparse=always` of the same raw file.
    Store(crate::bench::StoreBenchArgs),
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => crate::serve::run(args).map(|()| ExitCode::SUCCESS),
        Command::Store(cmd) => crate::store_cmd::run(cmd),
        Command::Bench(BenchCommand::Store(args)) => {
            crate::bench::run(args).map(|()| ExitCode::SUCCESS)
        }
    }
}
