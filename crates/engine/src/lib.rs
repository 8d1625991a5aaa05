//! The engine: openami's cloud. It implements EC2 semantics — accounts, regions,
//! volumes, snapshots, tags, sharing — over the catalog (control plane) and the block
//! store and volumes (data plane). Every call takes an already-authenticated [`Caller`];
//! the HTTP layer never touches storage.
//!
//! Resources are catalog rows whose JSON documents are defined here ([`volumes`],
//! [`snapshots`], [`images`]). Long work (snapshot data, image copies) runs on background
//! threads and updates the catalog when done; states follow AWS (`pending` → `completed` |
//! `error`, images `pending` → `available` | `failed`). At startup
//! `recovery` makes the catalog and the stores agree again after a crash.

pub mod account;
pub mod datadir;
pub mod ebs;
mod error;
pub mod gc;
pub mod handoff;
pub mod ids;
pub mod images;
pub mod instances;
pub mod keypairs;
pub mod launch_templates;
pub mod network;
pub mod nodes;
pub mod query;
mod recovery;
pub mod regions;
mod settings;
pub mod snapshot_copy;
pub mod snapshots;
pub mod tags;
pub mod transfers;
pub mod volumes;
pub mod vpc;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use catalog::Account;
use volume::{SnapshotProgress, Volume};

pub use catalog::Catalog;
pub use datadir::{DataDir, DataDirError, OwnerLock, RegionStorage};
pub use error::{Ec2Error, Ec2Result};

/// Regions served when none are configured.
pub const DEFAULT_REGIONS: &[&str] = &["us-east-1", "us-west-2", "eu-west-1", "ap-northeast-2"];

/// Who is calling: the account that owns the verified access key, and the region from
/// the request's credential scope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// 12-digit account id.
    pub account_id: String,
    /// Region the request addresses.
    pub region: String,
}

/// Errors opening the cloud.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The data directory failed.
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    /// The catalog failed.
    #[error(transparent)]
    Catalog(#[from] catalog::CatalogError),
    /// The node cannot start (its zones are taken, or its identity is invalid).
    #[error(transparent)]
    Node(#[from] nodes::NodeError),
    /// Startup recovery failed.
    #[error("recovering after restart: {0}")]
    Recovery(String),
}

/// The cloud over one data directory.
#[derive(Debug)]
pub struct Cloud {
    data: DataDir,
    catalog: Catalog,
    regions: HashMap<String, RegionStorage>,
    region_names: Vec<String>,
    /// Volumes opened for I/O or snapshots, by id.
    open_volumes: Mutex<HashMap<String, Arc<Volume>>>,
    /// Snapshots being taken: snapshot id → (volume id, live progress).
    snapshot_progress: Mutex<HashMap<String, (String, Arc<SnapshotProgress>)>>,
    /// Serialises DeleteVolume with itself and with starting a snapshot of a volume, so
    /// that a delete's checks (exists, no snapshot in progress) still hold when it
    /// destroys the volume's data.
    volume_lifecycle: Mutex<()>,
    /// Background work, joined at shutdown.
    workers: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// Images of each region, parsed (see `images`).
    image_index: images::ImageIndex,
    /// Key of EBS direct block tokens.
    token_secret: [u8; 32],
    /// Key of instance metadata (IMDSv2) tokens.
    imds_key: [u8; 32],
    /// Last PutSnapshotBlock per upload (ms), for upload timeouts.
    upload_activity: Mutex<HashMap<String, i64>>,
    /// Group commit of PutSnapshotBlock's `upload_blocks` rows: one catalog transaction
    /// for every request waiting (see `ebs.rs`).
    upload_rows: blockstore::GroupCommit<(String, u64, String), Ec2Error>,
    /// How machines are run.
    compute: instances::ComputeConfig,
    /// Machines of running instances, by instance id.
    machines: Mutex<HashMap<String, Arc<instances::machine::Machine>>>,
    /// Import and export directories.
    transfers: transfers::TransferConfig,
    /// Running import/export tasks.
    tasks: transfers::TaskRegistry,
    /// Serialises changes of the VPC layer (default VPC creation, CIDR and name checks).
    vpc_lock: Mutex<()>,
    /// Security groups of load balancers (members that live on the host): ingress rules
    /// naming them open ports on instances' public addresses.
    load_balancer_groups: Mutex<Vec<String>>,
    /// Set when the server stops: no machine boots any more.
    shutting_down: std::sync::atomic::AtomicBool,
    /// This process's node identity in a node cluster (`None`: it owns every zone).
    node: Option<nodes::NodeConfig>,
    /// A node's write leases on the shared stores (see [`gc`]).
    leases: Option<Arc<gc::LeaseBook>>,
    /// How long a node's GC waits between making fossils and sweeping them.
    gc_grace: std::time::Duration,
    /// When this process registered its node (tells it from another with the same id).
    registered_ms: std::sync::atomic::AtomicI64,
    /// Why this node was fenced, once it was (see [`Cloud::fenced`]).
    fence: Mutex<Option<String>>,
    /// The catalog's `data_version` the node's heartbeat saw last: when another node
    /// changes the catalog (e.g. a security group's rules), this node's instances follow.
    seen_version: std::sync::atomic::AtomicI64,
    /// Whether this node's last heartbeat found it the cluster's leader (see `leads`).
    leader: std::sync::atomic::AtomicBool,
}

/// How a [`Cloud`] runs machines and where imports and exports live.
#[derive(Clone, Debug, Default)]
pub struct CloudOptions {
    /// Where the catalog is: a `postgres://` URL or a SQLite file (see
    /// [`Catalog::open_url`]); `None`: `catalog.db` in the data directory.
    pub catalog: Option<String>,
    /// Machines.
    pub compute: instances::ComputeConfig,
    /// Import/export directories.
    pub transfers: transfers::TransferConfig,
    /// The node this process is in a node cluster (`None`: it owns every zone).
    pub node: Option<nodes::NodeConfig>,
    /// On a node: the least time between GC's two phases (see [`gc`]).
    pub gc_grace: std::time::Duration,
}

/// A 32-byte key every node sharing `catalog` agrees on (made by the first to ask).
fn shared_key(catalog: &Catalog, name: &str) -> Result<[u8; 32], OpenError> {
    let stored = catalog.shared_secret(name, &ids::random_bytes::<32>())?;
    stored.try_into().map_err(|v: Vec<u8>| {
        OpenError::Recovery(format!(
            "the catalog's shared secret {name} is {} bytes, not 32",
            v.len()
        ))
    })
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Cloud {
    /// Opens the cloud on `data` serving `regions`, and recovers from a previous crash
    /// (snapshots that were being taken are marked `error`, EBS direct uploads resume;
    /// images being copied become `available` if their snapshots were complete, else
    /// `failed`).
    pub fn open(data: DataDir, regions: &[String]) -> Result<Arc<Self>, OpenError> {
        Self::open_with(data, regions, CloudOptions::default())
    }

    /// [`Cloud::open`] with options. Instances are not booted and tasks not resumed
    /// until [`Cloud::resume`] is called (the server does; admin commands do not).
    pub fn open_with(
        data: DataDir,
        regions: &[String],
        options: CloudOptions,
    ) -> Result<Arc<Self>, OpenError> {
        let catalog = match &options.catalog {
            Some(location) => Catalog::open_url(location)?,
            None => Catalog::open(&data.catalog_path())?,
        };
        // Zones are claimed before recovery, which then touches only what is ours.
        let registered_ms = nodes::claim(&catalog, options.node.as_ref())?;
        // EBS direct block tokens must verify on every node: a node's key is the cluster's.
        let token_secret = match &options.node {
            Some(_) => shared_key(&catalog, "block-token")?,
            None => data.secret_key("block-token.key")?,
        };
        let imds_key = data.secret_key("imds-token.key")?;
        let mut storages = HashMap::new();
        for name in regions {
            storages.insert(name.clone(), data.region(name)?);
        }
        let cloud = Arc::new(Cloud {
            data,
            catalog,
            regions: storages,
            region_names: regions.to_vec(),
            open_volumes: Mutex::new(HashMap::new()),
            snapshot_progress: Mutex::new(HashMap::new()),
            volume_lifecycle: Mutex::new(()),
            workers: Mutex::new(Vec::new()),
            image_index: images::ImageIndex::default(),
            token_secret,
            imds_key,
            upload_activity: Mutex::new(HashMap::new()),
            upload_rows: blockstore::GroupCommit::new(),
            compute: options.compute,
            machines: Mutex::new(HashMap::new()),
            transfers: options.transfers,
            tasks: transfers::TaskRegistry::default(),
            vpc_lock: Mutex::new(()),
            load_balancer_groups: Mutex::new(Vec::new()),
            shutting_down: std::sync::atomic::AtomicBool::new(false),
            leases: options.node.as_ref().map(|n| gc::LeaseBook::new(&n.id)),
            node: options.node,
            gc_grace: options.gc_grace,
            registered_ms: std::sync::atomic::AtomicI64::new(registered_ms),
            fence: Mutex::new(None),
            seen_version: std::sync::atomic::AtomicI64::new(i64::MIN),
            leader: std::sync::atomic::AtomicBool::new(false),
        });
        if let Some(book) = &cloud.leases {
            // Every node writes the same buckets: sessions take leases other nodes' GC sees.
            for (name, storage) in &cloud.regions {
                storage
                    .store
                    .set_leases(gc::RegionLeases::new(&cloud, book, name));
            }
        }
        cloud.recover()?;
        Ok(cloud)
    }

    fn recover(&self) -> Result<(), OpenError> {
        self.reconcile()
            .map_err(|e| OpenError::Recovery(e.message))?;
        images::recover(self).map_err(|e| OpenError::Recovery(e.message))
    }

    /// The row of resource `id` if it is a `kind` the caller owns in its region.
    pub(crate) fn owned_row(
        &self,
        caller: &Caller,
        kind: &str,
        id: &str,
    ) -> Ec2Result<Option<catalog::ResourceRow>> {
        Ok(self.catalog.resource(id)?.filter(|row| {
            row.kind == kind && row.account_id == caller.account_id && row.region == caller.region
        }))
    }

    /// The caller's rows of `kind` in its region.
    pub(crate) fn owned_resources(
        &self,
        caller: &Caller,
        kind: &str,
    ) -> Ec2Result<Vec<catalog::ResourceRow>> {
        Ok(self
            .catalog
            .resources(kind, &caller.region)?
            .into_iter()
            .filter(|row| row.account_id == caller.account_id)
            .collect())
    }

    /// How machines are run.
    pub fn compute_config(&self) -> &instances::ComputeConfig {
        &self.compute
    }

    /// Boots the instances that were running when openami last stopped, finishes
    /// interrupted stops and terminations, and restarts interrupted import/export tasks
    /// (the server calls this once at start).
    pub fn resume(self: &Arc<Self>) -> Result<(), OpenError> {
        instances::machine::sweep_orphans(self);
        self.recover_instances()
            .map_err(|e| OpenError::Recovery(e.message))?;
        self.clear_staging();
        self.resume_tasks()
            .map_err(|e| OpenError::Recovery(e.message))
    }

    /// The catalog (accounts are managed through it).
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The data directory.
    pub fn data_dir(&self) -> &DataDir {
        &self.data
    }

    /// Regions served, in configuration order.
    pub fn region_names(&self) -> &[String] {
        &self.region_names
    }

    /// A served region's storage.
    pub fn region(&self, name: &str) -> Ec2Result<&RegionStorage> {
        self.regions.get(name).ok_or_else(|| {
            Ec2Error::client("InvalidParameterValue", format!("Invalid region: {name}"))
        })
    }

    /// Creates an account with a fresh (or given) id and access key; returns
    /// (account id, access key id, secret).
    pub fn create_account(
        &self,
        name: &str,
        account_id: Option<&str>,
        key: Option<(&str, &str)>,
    ) -> Ec2Result<(String, String, String)> {
        create_account(&self.catalog, name, account_id, key)
    }

    /// Waits for background work (snapshots in progress) and closes open volumes.
    pub fn shutdown(&self) {
        self.shutdown_machines();
        let workers: Vec<_> = lock(&self.workers).drain(..).collect();
        for worker in workers {
            let _ = worker.join();
        }
        for (id, volume) in lock(&self.open_volumes).drain() {
            if let Err(e) = volume.close() {
                tracing::error!(volume = %id, error = %e, "closing volume");
            }
        }
    }

    /// Runs `write`, which records how background work ended, again and again while it
    /// fails because the disk is full (until the server stops), so that a snapshot or a
    /// task never stays `pending`/`active` for good when space comes back.
    pub(crate) fn record_until_space(
        &self,
        what: &str,
        mut write: impl FnMut() -> Ec2Result<()>,
    ) -> Ec2Result<()> {
        let mut delay = std::time::Duration::from_millis(200);
        loop {
            match write() {
                Err(e) if e.is_out_of_storage() && !self.is_shutting_down() => {
                    tracing::warn!(what, "disk full: retrying");
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(std::time::Duration::from_secs(5));
                }
                other => return other,
            }
        }
    }

    pub(crate) fn spawn_worker(&self, name: String, work: impl FnOnce() + Send + 'static) {
        match std::thread::Builder::new().name(name).spawn(work) {
            Ok(handle) => {
                let mut workers = lock(&self.workers);
                workers.retain(|w| !w.is_finished());
                workers.push(handle);
            }
            Err(e) => tracing::error!(error = %e, "cannot start a worker thread"),
        }
    }
}

/// Creates an account directly in a catalog (used by `openami account create`, which may
/// run while a server has the data directory open: SQLite handles the concurrency).
pub fn create_account(
    catalog: &Catalog,
    name: &str,
    account_id: Option<&str>,
    key: Option<(&str, &str)>,
) -> Ec2Result<(String, String, String)> {
    if name.is_empty() || name.len() > 64 {
        return Err(Ec2Error::invalid_value("account names are 1-64 characters"));
    }
    let account_id = match account_id {
        Some(id) if ids::is_account_id(id) => id.to_string(),
        Some(id) => {
            return Err(Ec2Error::invalid_value(format!(
                "account id {id:?} is not 12 digits"
            )));
        }
        None => ids::new_account_id(),
    };
    let (key_id, secret) = match key {
        Some((id, secret)) => {
            if id.len() < 16 || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(Ec2Error::invalid_value(
                    "access key ids are 16-128 letters and digits",
                ));
            }
            if secret.len() < 16 || secret.len() > 128 {
                return Err(Ec2Error::invalid_value(
                    "secret access keys are 16-128 characters",
                ));
            }
            (id.to_string(), secret.to_string())
        }
        None => ids::new_access_key(),
    };
    let account = Account {
        account_id: account_id.clone(),
        name: name.to_string(),
    };
    catalog
        .create_account(&account, &key_id, &secret)
        .map_err(|e| match e {
            catalog::CatalogError::AlreadyExists { what, key } => {
                Ec2Error::client("AlreadyExists", format!("{what} {key} already exists"))
            }
            other => other.into(),
        })?;
    Ok((account_id, key_id, secret))
}
