//! The `openami` binary: the server and its operator commands.
//!
//! * `openami serve` — runs the service on a data directory (layout in `engine::datadir`).
//! * `openami account create` — adds an account and prints its credentials.
//! * `openami catalog import` — publishes Quick Start / marketplace images from the JSON
//!   `aws ec2 describe-images` prints.
//! * `openami store stats|scrub|gc` — inspects and maintains the block stores.
//! * `openami snapshot upload|download` — an EBS direct client (openami or AWS).
//! * `openami quickstart` — builds a Debian 12 cloud image and publishes it as a Quick
//!   Start image on the running server.
//! * `openami ssm publish-public NAME VALUE` — publishes a public SSM parameter.
//! * `openami bench store` — the data-plane benchmark against `cp --sparse=always`.
//! * `openami bench copy` — CopySnapshot's data path against `cp` + `sync`.
//! * `openami bench ingest` — EBS direct upload to a local server against `cp` + `sync`.
//! * `openami bench cold-read` — first-read latency of a cold block of a volume from a
//!   snapshot, blocks local against blocks in S3.
//! * `openami imds-relay SOCKET` — joins a guest's IMDS connection (stdin/stdout) to the
//!   instance's metadata socket; run by QEMU's slirp `guestfwd`.

mod account_cmd;
mod bench;
mod bench_cold;
mod bench_copy;
mod bench_ingest;
mod catalog_cmd;
mod cli;
mod ebs_client;
mod limits;
mod quickstart_cmd;
mod serve;
mod snapshot_cmd;
mod ssm_cmd;
mod store_cmd;
mod tls;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    if let cli::Command::ImdsRelay { socket } = &cli.command {
        // No logging at all: stderr is the guest's socket.
        return cli::imds_relay(socket);
    }
    init_tracing(&cli);
    if touches_data_dir(&cli.command) {
        // Everything written to the data directory (object stores, volumes, the catalog,
        // the audit log, instances' runtime files) is owner-only: directories 0700,
        // files 0600. (Snapshot downloads and benchmarks keep the user's umask.)
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    }
    match cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Commands that write into a data directory.
fn touches_data_dir(command: &cli::Command) -> bool {
    use cli::Command as C;
    matches!(
        command,
        C::Serve(_) | C::Account(_) | C::Catalog(_) | C::Store(_) | C::Quickstart(_) | C::Ssm(_)
    )
}

fn init_tracing(cli: &cli::Cli) {
    let default = if cli.verbose { "debug" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("OPENAMI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
