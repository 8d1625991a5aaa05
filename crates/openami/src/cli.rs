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
    Serve(Box<ServeArgs>),
    /// Manage accounts (works while the server runs).
    #[command(subcommand)]
    Account(AccountCommand),
    /// Publish operator image catalogs: Quick Start (`amazon`) and marketplace images
    /// (works while the server runs).
    #[command(subcommand)]
    Catalog(CatalogCommand),
    /// Inspect and maintain the block stores of a data directory.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Upload and download snapshots with the EBS direct APIs of any endpoint (openami
    /// or AWS).
    #[command(subcommand)]
    Snapshot(crate::snapshot_cmd::SnapshotCommand),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Join stdin/stdout to an instance's metadata socket (what QEMU's slirp `guestfwd`
    /// runs for each guest connection to 169.254.169.254:80). Prints nothing else, ever.
    ImdsRelay {
        /// The instance's IMDS unix socket.
        socket: PathBuf,
    },
    /// Build a Debian 12 cloud image and publish it as a Quick Start image (owner alias
    /// `amazon`) on the running server.
    Quickstart(crate::quickstart_cmd::QuickstartArgs),
    /// Publish public SSM parameters (/aws/service/…; works while the server runs).
    #[command(subcommand)]
    Ssm(crate::ssm_cmd::SsmCommand),
}

#[derive(Debug, clap::Args)]
pub struct DataDirArg {
    /// Data directory (created on first start).
    #[arg(long, env = "OPENAMI_DATA_DIR", default_value = "./openami-data")]
    pub data_dir: PathBuf,
}

/// Where the catalog is.
#[derive(Debug, clap::Args)]
pub struct CatalogArg {
    /// The catalog: a `postgres://USER[:PASSWORD]@HOST:PORT/DB` URL (a catalog several
    /// nodes share) or a SQLite file (default: `catalog.db` in the data directory).
    #[arg(
        long,
        env = "OPENAMI_CATALOG",
        value_name = "PATH|URL",
        hide_env_values = true
    )]
    pub catalog: Option<String>,
}

/// The file in the data directory that says which kind of catalog its server uses.
const CATALOG_KIND_FILE: &str = "catalog-kind";

impl CatalogArg {
    fn kind(&self) -> &'static str {
        if self.catalog.is_some() {
            "external"
        } else {
            "data-dir"
        }
    }

    /// Records (for the operator commands) whether the server of `dir` uses the data
    /// directory's catalog or one given with --catalog.
    pub fn remember(&self, dir: &engine::DataDir) -> anyhow::Result<()> {
        use anyhow::Context;
        let path = dir.root().join(CATALOG_KIND_FILE);
        std::fs::write(&path, self.kind()).context("recording the catalog's kind")
    }

    /// Refuses to work on the data directory's own catalog when its server uses another
    /// one (--catalog), since blocks of uploads in progress are recorded there.
    pub fn check_same_as_server(&self, dir: &engine::DataDir) -> anyhow::Result<()> {
        let recorded = std::fs::read_to_string(dir.root().join(CATALOG_KIND_FILE));
        if matches!(recorded.as_deref(), Ok("external")) && self.catalog.is_none() {
            anyhow::bail!(
                "the server of this data directory uses the catalog given with --catalog: pass the same --catalog (or OPENAMI_CATALOG)"
            );
        }
        Ok(())
    }

    /// Opens (and migrates) the catalog: `--catalog`, else the data directory's.
    pub fn open(&self, dir: &engine::DataDir) -> anyhow::Result<engine::Catalog> {
        use anyhow::Context;
        match &self.catalog {
            Some(location) => engine::Catalog::open_url(location)
                .with_context(|| format!("opening the catalog {}", catalog::redact(location))),
            None => engine::Catalog::open(&dir.catalog_path()).context("opening the catalog"),
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub data: DataDirArg,
    #[command(flatten)]
    pub catalog: CatalogArg,
    /// Address to listen on.
    #[arg(long, env = "OPENAMI_LISTEN", default_value = "127.0.0.1:8773")]
    pub listen: SocketAddr,
    /// Seconds between background garbage collections of the block stores (0 = never).
    /// On a node of a node cluster each collection is one step of the collection across
    /// nodes: unreferenced blocks become fossils, swept at a later step (see --gc-grace).
    #[arg(long, env = "OPENAMI_GC_INTERVAL", default_value_t = 600)]
    pub gc_interval: u64,
    /// On a node of a node cluster: the least number of seconds between making an
    /// unreferenced block a fossil and deleting it (readers still find fossils).
    #[arg(long, env = "OPENAMI_GC_GRACE", default_value_t = 600)]
    pub gc_grace: u64,
    /// Regions served, comma-separated.
    #[arg(
        long,
        env = "OPENAMI_REGIONS",
        value_delimiter = ',',
        default_value = "us-east-1,us-west-2,eu-west-1,ap-northeast-2"
    )]
    pub regions: Vec<String>,
    /// Endpoint URL that DescribeRegions reports (default: http://<listen>, or
    /// https://<listen> with --tls-cert).
    #[arg(long, env = "OPENAMI_ENDPOINT_URL")]
    pub endpoint_url: Option<String>,
    /// QEMU accelerator for instances: auto (KVM when it really boots a guest here, else
    /// TCG), kvm or tcg.
    #[arg(long, env = "OPENAMI_ACCEL", default_value = "auto", value_parser = ["auto", "kvm", "tcg"])]
    pub accel: String,
    /// Most instances active at once on this host.
    #[arg(long, env = "OPENAMI_MAX_INSTANCES", default_value_t = 8)]
    pub max_instances: usize,
    /// Public addresses of instances: a CIDR inside 127.0.0.0/8 (every address of it is
    /// local on Linux, so each instance listens on its own).
    #[arg(long, env = "OPENAMI_PUBLIC_IP_POOL", default_value = "127.100.0.0/16")]
    pub public_ip_pool: String,
    /// The loopback pool load balancers take their listener addresses from (each load
    /// balancer gets one address of it; a CIDR inside 127.0.0.0/8 that does not overlap
    /// the public address pool).
    #[arg(long, env = "OPENAMI_LB_ADDRESS_POOL", default_value = elb::DEFAULT_ADDRESS_POOL)]
    pub lb_address_pool: String,
    /// Outbound traffic of guests: `none` (they reach only their metadata service) or
    /// `nat` (QEMU's user-mode NAT to anywhere the host reaches: an operator's choice).
    #[arg(long, env = "OPENAMI_INSTANCE_EGRESS", default_value = "none", value_parser = ["none", "nat"])]
    pub instance_egress: String,
    /// Directory ImportImage/ImportSnapshot read from: an S3 location `s3://BUCKET/KEY`
    /// names `IMPORT_DIR/BUCKET/KEY`.
    #[arg(long, env = "OPENAMI_IMPORT_DIR")]
    pub import_dir: Option<std::path::PathBuf>,
    /// Directory ExportImage writes to: `EXPORT_DIR/BUCKET/PREFIX<export-ami-…>.<format>`.
    #[arg(long, env = "OPENAMI_EXPORT_DIR")]
    pub export_dir: Option<std::path::PathBuf>,
    /// What http(s) URL imports may reach besides public addresses: host names
    /// (`mirror.lan`, `*.example.com`) and CIDRs (`127.0.0.1/32`, `10.0.0.0/8`),
    /// comma-separated. Loopback, link-local, private and other internal addresses are
    /// refused unless listed; this server's own listener always is.
    #[arg(
        long,
        env = "OPENAMI_IMPORT_URL_ALLOW",
        value_delimiter = ',',
        value_name = "PATTERN"
    )]
    pub import_url_allow: Vec<String>,
    /// Size in bytes past which the audit log (`<data-dir>/audit/audit.log`) is rotated.
    #[arg(long, env = "OPENAMI_AUDIT_MAX_BYTES", default_value_t = 64 << 20)]
    pub audit_max_bytes: u64,
    /// Rotated audit logs kept (`audit.log.1` … `audit.log.N`).
    #[arg(long, env = "OPENAMI_AUDIT_KEEP", default_value_t = 10)]
    pub audit_keep: usize,
    /// Serve HTTPS with this certificate chain (PEM, server certificate first); needs
    /// --tls-key. Without both, the server speaks plain HTTP.
    #[arg(
        long,
        env = "OPENAMI_TLS_CERT",
        value_name = "PEM",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1); needs --tls-cert.
    #[arg(
        long,
        env = "OPENAMI_TLS_KEY",
        value_name = "PEM",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// Seconds a client has to send a request's line and headers (from the connection's
    /// start or the previous response); slower clients and idle keep-alive connections
    /// are closed.
    #[arg(long, env = "OPENAMI_HEADER_TIMEOUT", default_value_t = 30)]
    pub header_timeout: u64,
    /// Seconds a request body may go without receiving any byte before the request fails
    /// and its connection closes.
    #[arg(long, env = "OPENAMI_BODY_TIMEOUT", default_value_t = 60)]
    pub body_timeout: u64,
    /// The largest disk image file the web console accepts as an upload, in MiB (it is
    /// staged in the data directory while its import task runs).
    #[arg(long, env = "OPENAMI_CONSOLE_MAX_UPLOAD_MIB", default_value_t = webconsole::MAX_UPLOAD_BYTES >> 20)]
    pub console_max_upload_mib: u64,
    /// Open connections at most; further connections wait (in the kernel's backlog) until
    /// one closes. 0: no cap.
    #[arg(long, env = "OPENAMI_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// Requests per second each account may make (a token bucket; refused calls answer
    /// RequestLimitExceeded / Throttling). 0: no limit.
    #[arg(long, env = "OPENAMI_RATE_LIMIT", default_value_t = 0.0)]
    pub rate_limit: f64,
    /// The bucket size of --rate-limit: calls an idle account may make at once (default:
    /// twice the rate, at least 1).
    #[arg(long, env = "OPENAMI_RATE_BURST")]
    pub rate_burst: Option<f64>,
    /// EBS direct PutSnapshotBlock calls in flight per snapshot at most; more are refused
    /// with RequestThrottledException (the client retries). 0: no cap.
    #[arg(long, env = "OPENAMI_EBS_UPLOAD_CONCURRENCY", default_value_t = 64)]
    pub ebs_upload_concurrency: usize,
    #[command(flatten)]
    pub s3: S3Args,
    /// This server's name in a node cluster (servers sharing one PostgreSQL catalog, one
    /// per set of availability zones); needs --zone.
    #[arg(long, env = "OPENAMI_NODE_ID", requires = "zones", value_name = "NAME")]
    pub node_id: Option<String>,
    /// The availability zones this node owns (repeatable or comma-separated, zones of the
    /// served regions); needs --node-id. Without both, the server owns every zone.
    #[arg(
        long = "zone",
        env = "OPENAMI_ZONES",
        value_delimiter = ',',
        requires = "node_id",
        value_name = "ZONE"
    )]
    pub zones: Vec<String>,
}

/// Where snapshots' blocks and manifests live when not in the data directory.
#[derive(Debug, clap::Args)]
pub struct S3Args {
    /// Keep snapshots' blocks and manifests in an S3-compatible bucket, region R under
    /// `PREFIX/regions/R/` (volumes stay in the data directory). Endpoint, region and
    /// credentials come from the --s3-* options or the usual AWS_ENDPOINT_URL_S3,
    /// AWS_REGION, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
    #[arg(long, env = "OPENAMI_BLOCKS", value_name = "s3://BUCKET[/PREFIX]")]
    pub blocks: Option<String>,
    /// The S3 endpoint of --blocks (`http://127.0.0.1:8333`; requests are path-style).
    #[arg(long, env = "OPENAMI_S3_ENDPOINT", value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// The signing region of --blocks (default us-east-1).
    #[arg(long, env = "OPENAMI_S3_REGION")]
    pub s3_region: Option<String>,
    /// The access key id of --blocks.
    #[arg(long, env = "OPENAMI_S3_ACCESS_KEY_ID", hide_env_values = true)]
    pub s3_access_key_id: Option<String>,
    /// The secret access key of --blocks (prefer the environment variable to the option).
    #[arg(long, env = "OPENAMI_S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub s3_secret_access_key: Option<String>,
}

impl S3Args {
    /// The S3 bucket of `--blocks`, configured from the options over the environment.
    pub fn config(&self) -> anyhow::Result<Option<objstore::S3Config>> {
        use anyhow::Context;
        let Some(url) = &self.blocks else {
            return Ok(None);
        };
        let mut config = objstore::S3Config::from_url(url)
            .context("--blocks")?
            .with_env();
        let given = |value: &Option<String>| value.clone().filter(|v| !v.is_empty());
        if let Some(endpoint) = given(&self.s3_endpoint) {
            config.endpoint = Some(endpoint);
        }
        if let Some(region) = given(&self.s3_region) {
            config.region = region;
        }
        match (
            given(&self.s3_access_key_id),
            given(&self.s3_secret_access_key),
        ) {
            (Some(id), Some(secret)) => {
                config.credentials = Some(objstore::S3Credentials {
                    access_key_id: id,
                    secret_access_key: secret,
                    session_token: None,
                });
            }
            (None, None) => {}
            _ => anyhow::bail!("--s3-access-key-id and --s3-secret-access-key go together"),
        }
        config.validate().context("--blocks")?;
        tracing::info!(
            blocks = %config.url(),
            endpoint = %config.endpoint_url(),
            "snapshots' blocks and manifests are kept in S3"
        );
        Ok(Some(config))
    }
}

#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Create an account and print {"AccountId","AccessKeyId","SecretAccessKey"} as JSON.
    Create {
        /// Unique account name.
        name: String,
        /// 12-digit account id (default: random).
        #[arg(long)]
        account_id: Option<String>,
        /// Access key id (default: random); needs --secret-access-key.
        #[arg(long, requires = "secret_access_key")]
        access_key_id: Option<String>,
        /// Secret access key; needs --access-key-id.
        #[arg(long, requires = "access_key_id")]
        secret_access_key: Option<String>,
        #[command(flatten)]
        data: DataDirArg,
        #[command(flatten)]
        catalog: CatalogArg,
    },
    /// Set or replace an account's web console password (at least 8 characters; stored as
    /// an Argon2id hash). Prompts twice without echo, or reads the first line of stdin with
    /// --password-stdin. Ends the account's console sessions. Prints
    /// {"AccountId","ConsolePassword":"set"} as JSON.
    SetConsolePassword {
        #[command(flatten)]
        account: AccountRef,
        /// Read the password from the first line of stdin (for scripts) instead of
        /// prompting on the terminal.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        data: DataDirArg,
        #[command(flatten)]
        catalog: CatalogArg,
    },
    /// Remove an account's web console password (it can then sign in to the console with
    /// an access key only) and end its console sessions. Prints
    /// {"AccountId","ConsolePassword":"removed"|"none"}.
    RemoveConsolePassword {
        #[command(flatten)]
        account: AccountRef,
        #[command(flatten)]
        data: DataDirArg,
        #[command(flatten)]
        catalog: CatalogArg,
    },
}

/// Which account: by name or by id (exactly one).
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct AccountRef {
    /// The account's name.
    #[arg(long)]
    pub name: Option<String>,
    /// The account's 12-digit id.
    #[arg(long)]
    pub account_id: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Import the JSON `aws ec2 describe-images` prints, keeping image ids, names and
    /// attributes. Prints {"Imported":[...],"Skipped":[...],"Errors":[...]} as JSON;
    /// exits with status 1 if any image was refused.
    Import(CatalogImportArgs),
}

#[derive(Debug, clap::Args)]
pub struct CatalogImportArgs {
    /// The describe-images JSON ({"Images":[...]} or a list); `-` reads standard input.
    pub file: String,
    /// Region the images are published in.
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
    /// Owner alias of every image: amazon (Quick Start), aws-marketplace, or another
    /// lowercase alias (default: each image's ImageOwnerAlias).
    #[arg(long)]
    pub owner_alias: Option<String>,
    /// 12-digit owner account of every image (default: each image's OwnerId).
    #[arg(long)]
    pub owner_id: Option<String>,
    /// Keep the images owner-only, even those marked Public.
    #[arg(long)]
    pub private: bool,
    /// Overwrite images whose ids exist already (default: skip them).
    #[arg(long)]
    pub replace: bool,
    /// A local completed snapshot (of --region) to put behind every image's root device,
    /// so that the images can be used; public images need a public snapshot.
    #[arg(long, value_name = "SNAP")]
    pub root_snapshot: Option<String>,
    #[command(flatten)]
    pub data: DataDirArg,
    #[command(flatten)]
    pub catalog: CatalogArg,
}

#[derive(Debug, clap::Args)]
pub struct RegionArg {
    /// Only this region (default: every region with storage in the data directory).
    #[arg(long)]
    pub region: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Space accounting: logical, unique and stored bytes; dedup and compression ratios.
    Stats {
        #[command(flatten)]
        data: DataDirArg,
        #[command(flatten)]
        catalog: CatalogArg,
        #[command(flatten)]
        s3: S3Args,
        #[command(flatten)]
        region: RegionArg,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Verify every stored block against its hash and every manifest's references.
    /// Exits with status 1 if anything is corrupt or missing.
    Scrub {
        #[command(flatten)]
        data: DataDirArg,
        #[command(flatten)]
        s3: S3Args,
        #[command(flatten)]
        region: RegionArg,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Free blocks nothing references. Refused while a server owns the data directory
    /// (the server collects garbage itself, see `serve --gc-interval`). With --blocks, run
    /// it only while no server uses the bucket.
    Gc {
        #[command(flatten)]
        data: DataDirArg,
        #[command(flatten)]
        catalog: CatalogArg,
        #[command(flatten)]
        s3: S3Args,
        #[command(flatten)]
        region: RegionArg,
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
    /// CopySnapshot's data path (a 2 GiB mixed snapshot to another region's store)
    /// against `cp` + `sync` of the same raw file.
    Copy(crate::bench_copy::CopyBenchArgs),
    /// EBS direct ingest: `openami snapshot upload` of a mixed file to a local `openami
    /// serve`, against `cp` + `sync` of the same file; the snapshot is read back and compared.
    Ingest(crate::bench_ingest::IngestBenchArgs),
    /// First-read latency of a cold block of a volume created from a snapshot, with the
    /// snapshot's blocks in the local backend and (with --blocks) in S3.
    ColdRead(crate::bench_cold::ColdReadBenchArgs),
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => crate::serve::run(*args).map(|()| ExitCode::SUCCESS),
        Command::Account(cmd) => crate::account_cmd::run(cmd),
        Command::Catalog(CatalogCommand::Import(args)) => crate::catalog_cmd::import(args),
        Command::Store(cmd) => crate::store_cmd::run(cmd),
        Command::Snapshot(cmd) => crate::snapshot_cmd::run(cmd),
        Command::Quickstart(args) => crate::quickstart_cmd::run(args),
        Command::Ssm(cmd) => crate::ssm_cmd::run(cmd),
        Command::Bench(BenchCommand::Store(args)) => {
            crate::bench::run(args).map(|()| ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Copy(args)) => {
            crate::bench_copy::run(args).map(|()| ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Ingest(args)) => {
            crate::bench_ingest::run(args).map(|()| ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::ColdRead(args)) => {
            crate::bench_cold::run(args).map(|()| ExitCode::SUCCESS)
        }
        Command::ImdsRelay { socket } => Ok(imds_relay(&socket)),
    }
}

/// `openami imds-relay`: stdin, stdout and stderr are the guest's TCP connection, so
/// nothing but relayed bytes may be written; failures only show in the exit status.
pub fn imds_relay(socket: &std::path::Path) -> ExitCode {
    match imds::relay(socket) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}
