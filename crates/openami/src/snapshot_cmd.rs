//! `openami snapshot upload|download`: the EBS direct client on the command line. Works
//! against openami or AWS; see [`crate::ebs_client`].

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use diskimage::DiskFormat;

use crate::ebs_client::{self, Client, ClientConfig, credentials};

/// Where to connect and how, shared by upload and download.
#[derive(Debug, clap::Args)]
pub struct ClientArgs {
    /// EBS direct endpoint URL (default: AWS_ENDPOINT_URL_EBS, AWS_ENDPOINT_URL, else
    /// https://ebs.<region>.amazonaws.com).
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Region (default: AWS_REGION, else AWS_DEFAULT_REGION).
    #[arg(long)]
    pub region: Option<String>,
    /// Profile of the shared credentials file (default: the AWS_* credential variables,
    /// else AWS_PROFILE, else `default`).
    #[arg(long)]
    pub profile: Option<String>,
    /// Concurrent block transfers.
    #[arg(long, default_value_t = 16)]
    pub workers: usize,
    /// Attempts per request before giving up on transient errors (5xx, throttling,
    /// connection errors).
    #[arg(long, default_value_t = 6)]
    pub attempts: u32,
    /// Do not draw a progress bar (it is hidden anyway when stderr is not a terminal).
    #[arg(long)]
    pub no_progress: bool,
}

/// `openami snapshot ...`.
#[derive(Debug, clap::Subcommand)]
pub enum SnapshotCommand {
    /// Upload a disk image (raw, qcow2, vmdk, vhd or vhdx; detected) as a new snapshot with
    /// the EBS direct APIs; prints the snapshot id.
    Upload(UploadArgs),
    /// Download a snapshot into a disk image (sparse raw, qcow2, vmdk or vhd) of the
    /// volume's size.
    Download(DownloadArgs),
}

/// `openami snapshot upload`.
#[derive(Debug, clap::Args)]
pub struct UploadArgs {
    /// The image to upload; its virtual disk becomes the snapshot.
    pub file: PathBuf,
    /// The image format: raw, qcow2, vmdk, vhd (or vpc), vhdx (default: detected from the
    /// file's magic bytes; anything unrecognised is raw).
    #[arg(long, value_parser = parse_format)]
    pub format: Option<DiskFormat>,
    /// Volume size in GiB (default: the virtual size rounded up, or the parent's size if
    /// larger).
    #[arg(long)]
    pub volume_size: Option<u64>,
    /// Snapshot description.
    #[arg(long)]
    pub description: Option<String>,
    /// Upload incrementally on this snapshot: only blocks that differ from it are written.
    #[arg(long, value_name = "SNAPSHOT")]
    pub parent: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `openami snapshot download`.
#[derive(Debug, clap::Args)]
pub struct DownloadArgs {
    /// The snapshot id.
    pub snapshot: String,
    /// The file to write (created or truncated).
    pub file: PathBuf,
    /// The image format to write: raw, qcow2, vmdk (streamOptimized), vhd (dynamic)
    /// (default: from FILE's extension .qcow2/.vmdk/.vhd/.vpc, else raw).
    #[arg(long, value_parser = parse_format)]
    pub format: Option<DiskFormat>,
    #[command(flatten)]
    pub client: ClientArgs,
}

fn parse_format(s: &str) -> Result<DiskFormat, String> {
    DiskFormat::from_name(s)
        .ok_or_else(|| format!("unknown format {s:?} (raw, qcow2, vmdk, vhd, vhdx)"))
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn client(args: &ClientArgs) -> anyhow::Result<Client> {
    let Some(region) = args
        .region
        .clone()
        .or_else(|| env("AWS_REGION"))
        .or_else(|| env("AWS_DEFAULT_REGION"))
    else {
        bail!("no region: pass --region or set AWS_REGION");
    };
    let endpoint = args
        .endpoint
        .clone()
        .or_else(|| env("AWS_ENDPOINT_URL_EBS"))
        .or_else(|| env("AWS_ENDPOINT_URL"))
        .unwrap_or_else(|| format!("https://ebs.{region}.amazonaws.com"));
    let credentials = credentials::resolve(args.profile.as_deref(), &env)?;
    if args.workers == 0 {
        bail!("--workers must be at least 1");
    }
    Client::new(ClientConfig {
        endpoint,
        region,
        credentials,
        attempts: args.attempts.max(1),
        workers: args.workers,
        progress: !args.no_progress,
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Runs a `snapshot` subcommand.
pub fn run(cmd: SnapshotCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        SnapshotCommand::Upload(args) => {
            let client = client(&args.client)?;
            let req = ebs_client::upload::UploadRequest {
                file: &args.file,
                format: args.format,
                volume_size: args.volume_size,
                description: args.description.clone(),
                parent: args.parent.clone(),
            };
            let done = runtime()?.block_on(ebs_client::upload::upload(&client, req))?;
            let parent = match done.parent_digests {
                Some(ebs_client::upload::ParentDigests::Cached) => {
                    ", parent digests from the local cache"
                }
                Some(ebs_client::upload::ParentDigests::Read) => ", parent blocks read",
                None => "",
            };
            eprintln!(
                "{}: wrote {} of {} blocks ({} image{parent}), status {}",
                done.snapshot_id, done.changed_blocks, done.file_blocks, done.format, done.status
            );
            println!("{}", done.snapshot_id);
        }
        SnapshotCommand::Download(args) => {
            let format = args
                .format
                .or_else(|| DiskFormat::from_extension(&args.file))
                .unwrap_or(DiskFormat::Raw);
            if format == DiskFormat::Vhdx {
                bail!("writing vhdx is not supported: use --format raw, qcow2, vmdk or vhd");
            }
            let client = client(&args.client)?;
            let done = runtime()?.block_on(ebs_client::download::download(
                &client,
                &args.snapshot,
                &args.file,
                format,
            ))?;
            eprintln!(
                "{}: {} blocks ({} non-zero) into {} ({format}, {} GiB)",
                args.snapshot,
                done.blocks,
                done.written,
                args.file.display(),
                done.volume_size
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
