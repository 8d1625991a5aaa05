//! `openami quickstart`: publishes a Debian 12 cloud image as a Quick Start image (owner
//! alias `amazon`), so that `aws ec2 describe-images --owners amazon` finds a bootable image
//! on a fresh server.
//!
//! It runs next to a running `openami serve` on the same data directory:
//!
//! 1. The disk: `scripts/build-debian-image` (embedded in the binary) builds
//!    `debian-12-amd64.raw` into the image cache (`--image-dir`, default
//!    `$XDG_CACHE_HOME/openami/images` or `~/.cache/openami/images`); the script skips the
//!    build when its stamp matches. `--image FILE` publishes an existing raw/qcow2 instead.
//! 2. The operator account [`AMAZON_ACCOUNT_ID`] (name `amazon`) is created in the catalog if
//!    missing; it owns the Quick Start images and their snapshots.
//! 3. Per region: the disk is uploaded as a snapshot with the EBS direct client to the
//!    server's endpoint (as that account), the snapshot is shared with `all`
//!    (createVolumePermission), and the image is published with
//!    [`engine::images::import_images`] (root snapshot = the upload, alias `amazon`), named
//!    `debian-12-amd64-YYYYMMDD-N`.
//!
//! 4. The public SSM parameter [`SSM_PARAMETER`] (`/aws/service/debian/release/12/latest/amd64`)
//!    names the image, so `resolve:ssm:…` works in RunInstances, as on AWS.
//!
//! Idempotent: every image carries the tag [`SOURCE_TAG`] naming its source (the build
//! stamp's hash, or the `--image` file's content hash); a region that already has an image
//! of that source gets nothing new, and its id is printed again.

use std::fs::File;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use engine::images::{ImageDoc, ImportOptions, import_images};
use engine::snapshots::{self, CREATE_VOLUME_PERMISSION};
use engine::{Catalog, DataDir};
use serde_json::{Value, json};

use crate::cli::DataDirArg;
use crate::ebs_client::{self, Client, ClientConfig, Credentials};

/// The account that owns Quick Start images (the id `openami catalog import` tests use for
/// `amazon`).
pub const AMAZON_ACCOUNT_ID: &str = "137112412989";
/// Its account name.
const AMAZON_ACCOUNT_NAME: &str = "amazon";
/// The public SSM parameter naming the current image (as AWS names Debian's).
pub const SSM_PARAMETER: &str = "/aws/service/debian/release/12/latest/amd64";
/// Tag on each published image naming the disk it was made from.
pub const SOURCE_TAG: &str = "openami:quickstart-source";
/// The build script, written to a temporary file and run with bash.
const BUILD_SCRIPT: &str = include_str!("../../../scripts/build-debian-image");
/// File names the script writes into the image directory.
const IMAGE_BASENAME: &str = "debian-12-amd64";
const DESCRIPTION: &str = "Debian 12 (bookworm) amd64 cloud image built by openami";
/// Root volume size of the image's mapping, GiB (at least the disk's size).
const ROOT_VOLUME_GIB: u64 = 8;
const GIB: u64 = 1 << 30;

/// `openami quickstart`.
#[derive(Debug, clap::Args)]
pub struct QuickstartArgs {
    #[command(flatten)]
    pub data: DataDirArg,
    /// Regions to publish in, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "us-east-1")]
    pub region: Vec<String>,
    /// The running server's endpoint URL.
    #[arg(
        long,
        env = "OPENAMI_ENDPOINT_URL",
        default_value = "http://127.0.0.1:8773"
    )]
    pub endpoint: String,
    /// Where the Debian image is built and cached (default: $XDG_CACHE_HOME/openami/images,
    /// else ~/.cache/openami/images).
    #[arg(long)]
    pub image_dir: Option<PathBuf>,
    /// Publish this disk image (raw or qcow2, detected) instead of building Debian 12.
    #[arg(long, conflicts_with = "image_dir")]
    pub image: Option<PathBuf>,
    /// Do not draw a progress bar (it is hidden anyway when stderr is not a terminal).
    #[arg(long)]
    pub no_progress: bool,
}

/// The disk to publish and what identifies it.
struct Source {
    path: PathBuf,
    /// `stamp-sha256:<hex>` or `file-sha256:<hex>`.
    id: String,
}

/// One region's outcome, printed as JSON.
struct Published {
    region: String,
    image_id: String,
    name: String,
    snapshot_id: Option<String>,
    new: bool,
}

/// Runs `openami quickstart`.
pub fn run(args: QuickstartArgs) -> anyhow::Result<ExitCode> {
    if args.region.is_empty() {
        bail!("--region needs at least one region");
    }
    for r in &args.region {
        if !engine::datadir::valid_region_name(r) {
            bail!("invalid region name {r:?}");
        }
    }
    let dir = DataDir::open(&args.data.data_dir, false)?;
    if !server_running(dir.root())? {
        bail!(
            "no `openami serve` is running on {}: start it first (openami serve --data-dir {}), \
             then run quickstart in another terminal",
            dir.root().display(),
            dir.root().display()
        );
    }
    let catalog = Catalog::open(&dir.catalog_path()).context("opening the catalog")?;
    let source = match &args.image {
        Some(path) => file_source(path)?,
        None => build_source(&image_dir(args.image_dir.as_deref())?)?,
    };
    let credentials = ensure_operator_account(&catalog)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let mut out = Vec::new();
    let mut reachable = false;
    for region in &args.region {
        if let Some(found) = existing_image(&catalog, region, &source.id)? {
            eprintln!(
                "{region}: {} ({}) is already published from this disk",
                found.image_id, found.name
            );
            out.push(found);
            continue;
        }
        if !reachable {
            runtime.block_on(check_endpoint(&args.endpoint))?;
            reachable = true;
        }
        let published =
            runtime.block_on(publish(&catalog, &args, &credentials, region, &source))?;
        eprintln!(
            "{region}: published {} ({}) from {}",
            published.image_id,
            published.name,
            published.snapshot_id.as_deref().unwrap_or("?")
        );
        out.push(published);
    }
    // Published the way AWS publishes its current Quick Start images: a public SSM
    // parameter every account reads (and RunInstances takes as `resolve:ssm:<name>`).
    // Only for the Debian image built here, not for a disk given with --image.
    for p in out.iter().filter(|_| args.image.is_none()) {
        ssm::publish_public_parameter(
            &catalog,
            &p.region,
            SSM_PARAMETER,
            &p.image_id,
            "aws:ec2:image",
        )
        .with_context(|| format!("publishing {SSM_PARAMETER} in {}", p.region))?;
    }
    let images: Vec<Value> = out
        .iter()
        .map(|p| {
            json!({
                "Region": p.region,
                "ImageId": p.image_id,
                "Name": p.name,
                "SnapshotId": p.snapshot_id,
                "New": p.new,
                "SsmParameter": args.image.is_none().then_some(SSM_PARAMETER),
            })
        })
        .collect();
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({ "Images": images }))?
    );
    Ok(ExitCode::SUCCESS)
}

/// True when a process holds the data directory's owner lock (a running `openami serve`).
fn server_running(root: &Path) -> anyhow::Result<bool> {
    let path = root.join("openami.lock");
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
    };
    match file.try_lock_shared() {
        // Nobody owns it; dropping the file releases our lock.
        Ok(()) => Ok(false),
        Err(std::fs::TryLockError::WouldBlock) => Ok(true),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

/// The default image cache directory.
fn image_dir(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = given {
        return Ok(dir.to_owned());
    }
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(cache) = var("XDG_CACHE_HOME") {
        return Ok(PathBuf::from(cache).join("openami").join("images"));
    }
    match var("HOME") {
        Some(home) => Ok(PathBuf::from(home).join(".cache/openami/images")),
        None => bail!("neither XDG_CACHE_HOME nor HOME is set: pass --image-dir"),
    }
}

/// Builds (or finds cached) the Debian image with the embedded script.
fn build_source(dir: &Path) -> anyhow::Result<Source> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut script = tempfile::Builder::new()
        .prefix("openami-build-debian-image.")
        .tempfile()
        .context("creating a temporary file for the build script")?;
    script
        .write_all(BUILD_SCRIPT.as_bytes())
        .and_then(|()| script.flush())
        .context("writing the build script")?;
    eprintln!(
        "building (or reusing) the Debian 12 image in {} (a first build takes a few minutes)",
        dir.display()
    );
    let started = Instant::now();
    let status = Command::new("bash")
        .arg(script.path())
        .arg(dir)
        .status()
        .context("running bash for the build script")?;
    if !status.success() {
        bail!("building the Debian image failed ({status}); see the messages above");
    }
    tracing::debug!(seconds = started.elapsed().as_secs(), "image ready");
    let stamp_path = dir.join(format!("{IMAGE_BASENAME}.stamp"));
    let stamp =
        std::fs::read(&stamp_path).with_context(|| format!("reading {}", stamp_path.display()))?;
    Ok(Source {
        path: dir.join(format!("{IMAGE_BASENAME}.raw")),
        id: format!("stamp-sha256:{}", hex::encode(blockstore::sha256(&stamp))),
    })
}

/// Identifies an existing disk file by its content: the SHA-256 of the SHA-256s of its
/// 1 MiB chunks.
fn file_source(path: &Path) -> anyhow::Result<Source> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut chunk = vec![0u8; 1 << 20];
    let mut digests = Vec::new();
    loop {
        let mut filled = 0;
        while filled < chunk.len() {
            let n = file
                .read(&mut chunk[filled..])
                .with_context(|| format!("reading {}", path.display()))?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            break;
        }
        digests.extend_from_slice(&blockstore::sha256(&chunk[..filled]));
        if filled < chunk.len() {
            break;
        }
    }
    Ok(Source {
        path: path.to_owned(),
        id: format!("file-sha256:{}", hex::encode(blockstore::sha256(&digests))),
    })
}

/// Creates the `amazon` operator account if missing; returns its first access key.
fn ensure_operator_account(catalog: &Catalog) -> anyhow::Result<Credentials> {
    let accounts = catalog.accounts()?;
    match accounts.iter().find(|a| a.account_id == AMAZON_ACCOUNT_ID) {
        Some(a) if a.name != AMAZON_ACCOUNT_NAME => bail!(
            "account {AMAZON_ACCOUNT_ID} exists with the name {:?}; Quick Start images need it \
             to be the `{AMAZON_ACCOUNT_NAME}` operator account",
            a.name
        ),
        Some(_) => {}
        None => {
            engine::create_account(catalog, AMAZON_ACCOUNT_NAME, Some(AMAZON_ACCOUNT_ID), None)
                .map_err(|e| anyhow!("creating the operator account: {}", e.message))?;
            eprintln!(
                "created the operator account {AMAZON_ACCOUNT_NAME} ({AMAZON_ACCOUNT_ID}) that owns Quick Start images"
            );
        }
    }
    let Some((key_id, secret)) = catalog
        .access_keys_of(AMAZON_ACCOUNT_ID)?
        .into_iter()
        .next()
    else {
        bail!("the operator account {AMAZON_ACCOUNT_ID} has no access key");
    };
    Ok(Credentials {
        access_key_id: key_id,
        secret: sigv4::Secret::new(secret),
        session_token: None,
    })
}

/// The operator's images of a region: (row id, document, tags).
fn operator_images(catalog: &Catalog, region: &str) -> anyhow::Result<Vec<(String, ImageDoc)>> {
    let mut out = Vec::new();
    for row in catalog.resources(engine::images::KIND, region)? {
        if row.account_id != AMAZON_ACCOUNT_ID {
            continue;
        }
        let doc: ImageDoc = serde_json::from_str(&row.doc)
            .with_context(|| format!("reading the document of {}", row.id))?;
        out.push((row.id, doc));
    }
    Ok(out)
}

/// The image of `region` published from `source_id`, if any.
fn existing_image(
    catalog: &Catalog,
    region: &str,
    source_id: &str,
) -> anyhow::Result<Option<Published>> {
    for (id, doc) in operator_images(catalog, region)? {
        let tags = catalog.tags(&id)?;
        if tags.iter().any(|(k, v)| k == SOURCE_TAG && v == source_id) {
            return Ok(Some(Published {
                region: region.to_owned(),
                snapshot_id: doc.snapshot_ids().into_iter().next(),
                image_id: id,
                name: doc.name,
                new: false,
            }));
        }
    }
    Ok(None)
}

/// `debian-12-amd64-<day>-N` with N one more than the highest N of `day` among `names`.
pub fn next_name<'a>(names: impl IntoIterator<Item = &'a str>, day: &str) -> String {
    let prefix = format!("{IMAGE_BASENAME}-{day}-");
    let highest = names
        .into_iter()
        .filter_map(|n| n.strip_prefix(&prefix))
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .filter_map(|n| n.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    format!("{prefix}{}", highest + 1)
}

/// `YYYYMMDD` (UTC) of a time in milliseconds.
fn day_of(ms: i64) -> String {
    engine::query::iso8601(ms)
        .get(..10)
        .unwrap_or_default()
        .replace('-', "")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Fails clearly unless an HTTP server answers at `endpoint`.
async fn check_endpoint(endpoint: &str) -> anyhow::Result<()> {
    let mut client = reqwest::Client::builder();
    for cert in crate::ebs_client::ca_bundle_from_env()? {
        client = client.add_root_certificate(cert);
    }
    let client = client
        .timeout(Duration::from_secs(10))
        .build()
        .context("creating an HTTP client")?;
    client.get(endpoint).send().await.map_err(|e| {
        anyhow!(
            "no openami server answers at {endpoint} ({e}); start `openami serve` on this data \
             directory or pass --endpoint (or OPENAMI_ENDPOINT_URL) with its URL"
        )
    })?;
    Ok(())
}

/// The describe-images entry `import_images` reads.
fn image_entry(image_id: &str, name: &str, created_ms: i64, source_id: &str, gib: u64) -> Value {
    json!({
        "ImageId": image_id,
        "Name": name,
        "Description": DESCRIPTION,
        "Architecture": "x86_64",
        "ImageType": "machine",
        "ImageLocation": format!("{AMAZON_ACCOUNT_NAME}/{name}"),
        "CreationDate": engine::query::iso8601(created_ms),
        "OwnerId": AMAZON_ACCOUNT_ID,
        "ImageOwnerAlias": AMAZON_ACCOUNT_NAME,
        "Public": true,
        "State": "available",
        "PlatformDetails": "Linux/UNIX",
        "UsageOperation": "RunInstances",
        "RootDeviceName": "/dev/xvda",
        "RootDeviceType": "ebs",
        "VirtualizationType": "hvm",
        "Hypervisor": "xen",
        "EnaSupport": true,
        "SriovNetSupport": "simple",
        "BootMode": "legacy-bios",
        "BlockDeviceMappings": [{
            "DeviceName": "/dev/xvda",
            "Ebs": {
                "DeleteOnTermination": true,
                "VolumeSize": gib,
                "VolumeType": "gp3",
                "Encrypted": false,
            },
        }],
        "Tags": [{"Key": SOURCE_TAG, "Value": source_id}],
    })
}

/// Uploads the disk to `region`, shares the snapshot with everyone and publishes the image.
async fn publish(
    catalog: &Catalog,
    args: &QuickstartArgs,
    credentials: &Credentials,
    region: &str,
    source: &Source,
) -> anyhow::Result<Published> {
    let path = source.path.clone();
    let disk_bytes = tokio::task::spawn_blocking(move || {
        diskimage::open(&path, diskimage::Limits::default()).map(|d| d.virtual_size())
    })
    .await
    .map_err(|e| anyhow!("opening task failed: {e}"))?
    .with_context(|| format!("opening {}", source.path.display()))?;
    let gib = disk_bytes.div_ceil(GIB).max(ROOT_VOLUME_GIB);
    let client = Client::new(ClientConfig {
        endpoint: args.endpoint.clone(),
        region: region.to_owned(),
        credentials: credentials.clone(),
        attempts: 3,
        workers: 8,
        progress: !args.no_progress && std::io::stderr().is_terminal(),
    })?;
    let done = ebs_client::upload::upload(
        &client,
        ebs_client::upload::UploadRequest {
            file: &source.path,
            format: None,
            volume_size: Some(gib),
            description: Some(DESCRIPTION.to_owned()),
            parent: None,
        },
    )
    .await
    .with_context(|| format!("uploading {} to {}", source.path.display(), args.endpoint))?;
    let snap = done.snapshot_id;
    wait_completed(catalog, &snap, region, &args.endpoint).await?;
    catalog.add_permission(&snap, CREATE_VOLUME_PERMISSION, "all")?;

    let created_ms = now_ms();
    let names: Vec<(String, ImageDoc)> = operator_images(catalog, region)?;
    let name = next_name(
        names.iter().map(|(_, d)| d.name.as_str()),
        &day_of(created_ms),
    );
    let image_id = engine::ids::new_id("ami");
    let entry = image_entry(&image_id, &name, created_ms, &source.id, gib);
    let input = serde_json::to_vec(&json!({ "Images": [entry] }))?;
    let report = import_images(
        catalog,
        &input,
        &ImportOptions {
            region: region.to_owned(),
            owner_alias: Some(AMAZON_ACCOUNT_NAME.to_owned()),
            owner_id: Some(AMAZON_ACCOUNT_ID.to_owned()),
            private: false,
            replace: false,
            root_snapshot: Some(snap.clone()),
        },
    )?;
    if report.imported != [image_id.clone()] {
        bail!(
            "publishing {image_id} in {region} failed: {}",
            serde_json::to_string(&report)?
        );
    }
    Ok(Published {
        region: region.to_owned(),
        image_id,
        name,
        snapshot_id: Some(snap),
        new: true,
    })
}

/// Waits until the uploaded snapshot is `completed` in this data directory's catalog; a
/// snapshot that is not there at all means the endpoint is another server.
async fn wait_completed(
    catalog: &Catalog,
    snap: &str,
    region: &str,
    endpoint: &str,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let row = catalog
            .resource(snap)?
            .filter(|r| r.kind == snapshots::KIND && r.region == region);
        let Some(row) = row else {
            bail!(
                "{endpoint} stored {snap}, but the catalog of this data directory does not have \
                 it in {region}: the endpoint is another server (pass its data directory, or \
                 the --endpoint of the server on this one)"
            );
        };
        match row.state.as_str() {
            "completed" => return Ok(()),
            "error" => bail!("snapshot {snap} failed"),
            _ if Instant::now() > deadline => {
                bail!("snapshot {snap} is still {} after 5 minutes", row.state)
            }
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_number_from_one_per_day() {
        assert_eq!(
            next_name([] as [&str; 0], "20261201"),
            "debian-12-amd64-20261201-1"
        );
        let names = [
            "debian-12-amd64-20261201-1",
            "debian-12-amd64-20261201-2",
            "debian-12-amd64-20261130-7",
            "other-20261201-9",
        ];
        assert_eq!(next_name(names, "20261201"), "debian-12-amd64-20261201-3");
        assert_eq!(next_name(names, "20261130"), "debian-12-amd64-20261130-8");
        assert_eq!(next_name(names, "20261202"), "debian-12-amd64-20261202-1");
    }

    #[test]
    fn names_ignore_non_numeric_suffixes_and_take_the_highest() {
        let names = [
            "debian-12-amd64-20261201-10",
            "debian-12-amd64-20261201-9",
            "debian-12-amd64-20261201-x",
            "debian-12-amd64-20261201-",
            "debian-12-amd64-20261201-3-copy",
        ];
        assert_eq!(next_name(names, "20261201"), "debian-12-amd64-20261201-11");
    }

    #[test]
    fn day_is_utc_date_without_dashes() {
        assert_eq!(day_of(0), "19700101");
        assert_eq!(day_of(1_764_322_800_123), "20251128");
    }

    #[test]
    fn file_identity_follows_content() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.raw");
        let b = dir.path().join("b.raw");
        std::fs::write(&a, vec![1u8; 3 << 20]).unwrap();
        std::fs::write(&b, vec![1u8; 3 << 20]).unwrap();
        assert_eq!(file_source(&a).unwrap().id, file_source(&b).unwrap().id);
        let mut changed = vec![1u8; 3 << 20];
        changed[(2 << 20) + 5] = 2;
        std::fs::write(&b, changed).unwrap();
        assert_ne!(file_source(&a).unwrap().id, file_source(&b).unwrap().id);
    }

    #[test]
    fn image_dir_prefers_the_option() {
        assert_eq!(
            image_dir(Some(Path::new("/x/y"))).unwrap(),
            PathBuf::from("/x/y")
        );
    }
}
