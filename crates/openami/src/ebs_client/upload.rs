//! `openami snapshot upload FILE`: a disk image to a new snapshot.
//!
//! FILE is opened with [`diskimage`] first: its format is detected (raw, qcow2, vmdk,
//! vhd, vhdx) unless given, and hostile or corrupt images (backing files, other extents,
//! differencing disks, bad checksums…) are refused before any snapshot is started. What is
//! uploaded is the image's *virtual* disk.
//!
//! StartSnapshot (VolumeSize = the virtual size rounded up to GiB unless given), then
//! PutSnapshotBlock for every 512 KiB block that is not all zeros (the last block
//! zero-padded), then CompleteSnapshot with the block count and the LINEAR aggregate
//! checksum of the written blocks. Blocks the image's metadata shows unallocated (holes of
//! a raw file, unallocated clusters, grains or blocks) are not even read. A zero block is
//! never hashed, and a block equal to one hashed twice lately (an image's repeated blocks)
//! takes its digest from that one after a full byte comparison
//! ([`blockstore::RecentBlocks`]).
//!
//! # Incremental uploads (`--parent`)
//!
//! EBS direct has no call that returns a block's checksum without its data, and
//! ListSnapshotBlocks returns only opaque tokens. So the parent's blocks are read with
//! GetSnapshotBlock (all of them, in parallel; each is verified against its
//! `x-amz-Checksum`) and only their SHA-256 digests are kept. A block of the file is then
//! written only when its digest differs from the parent's block at that index; a block
//! that is zero in the file but present in the parent is written as an explicit zero
//! block (the parent's data would show through otherwise), and so are parent blocks past
//! the end of the file. That read is avoided when the parent's digests are in the local
//! [`digests`](super::digests) cache (every upload and download records the digests of
//! its snapshot), checked against ListSnapshotBlocks first; so uploading a new version of
//! an image uploaded from this machine before costs ListSnapshotBlocks plus the changed
//! blocks.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{Context, anyhow, bail};
use blockstore::RecentBlocks;
use bytes::Bytes;
use diskimage::{DiskFormat, DiskReader};
use reqwest::Method;
use serde_json::{Value, json};

use super::{BLOCK_SIZE, Client, b64, for_each_parallel, linear_checksum, progress_bar};

const GIB: u64 = 1 << 30;
/// Blocks [`Jobs::recent`] remembers (4 MiB), as a snapshot's write session does.
const RECENT_BLOCKS: usize = 8;

/// What to upload.
#[derive(Debug, Clone)]
pub struct UploadRequest<'a> {
    /// The image.
    pub file: &'a Path,
    /// Its format (detected when `None`).
    pub format: Option<DiskFormat>,
    /// Volume size in GiB (default: the virtual size rounded up).
    pub volume_size: Option<u64>,
    /// Snapshot description.
    pub description: Option<String>,
    /// Parent snapshot for an incremental upload.
    pub parent: Option<String>,
}

/// The result of an upload.
#[derive(Debug, Clone)]
pub struct Uploaded {
    /// The new snapshot id.
    pub snapshot_id: String,
    /// Blocks written.
    pub changed_blocks: u64,
    /// Blocks in the file (non-zero or not).
    pub file_blocks: u64,
    /// The image's format.
    pub format: DiskFormat,
    /// The status CompleteSnapshot returned.
    pub status: String,
    /// How the parent's digests were learnt (incremental uploads).
    pub parent_digests: Option<ParentDigests>,
}

/// Where an incremental upload got its parent's block digests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParentDigests {
    /// From the local digest cache (checked against ListSnapshotBlocks).
    Cached,
    /// By reading the parent's blocks.
    Read,
}

/// Uploads `req.file` as a new snapshot.
pub async fn upload(client: &Client, req: UploadRequest<'_>) -> anyhow::Result<Uploaded> {
    let path = req.file.to_owned();
    let format = req.format;
    let file: Box<dyn DiskReader> = tokio::task::spawn_blocking(move || {
        diskimage::open_as(&path, format, diskimage::Limits::default())
    })
    .await
    .map_err(|e| anyhow!("opening task failed: {e}"))?
    .with_context(|| format!("refusing to upload {}", req.file.display()))?;
    let format = file.format();
    let size = file.virtual_size();
    let file_blocks = size.div_ceil(BLOCK_SIZE);
    let needed_gib = size.div_ceil(GIB).max(1);

    let mut parent_digests: HashMap<u64, [u8; 32]> = HashMap::new();
    let mut parent_gib = 0;
    let mut parent_source = None;
    if let Some(parent) = &req.parent {
        let (digests, gib, source) = parent_block_digests(client, parent).await?;
        parent_digests = digests;
        parent_gib = gib;
        parent_source = Some(source);
    }
    let mut new_digests = parent_digests.clone();
    let volume_gib = match req.volume_size {
        Some(v) if v < needed_gib => {
            bail!("--volume-size {v} GiB is smaller than the disk ({needed_gib} GiB needed)")
        }
        Some(v) => v,
        None => needed_gib.max(parent_gib),
    };
    let volume_blocks = volume_gib * (GIB / BLOCK_SIZE);

    // Blocks to examine: every block of the file (job i is block i), then parent blocks
    // past its end (which must become zero).
    let mut tail: Vec<u64> = parent_digests
        .keys()
        .copied()
        .filter(|&i| i >= file_blocks && i < volume_blocks)
        .collect();
    tail.sort_unstable();
    let file_jobs = usize::try_from(file_blocks).context("the file is too large")?;
    let count = file_jobs + tail.len();

    let snapshot_id = start_snapshot(client, &req, volume_gib).await?;
    tracing::debug!(snapshot_id, volume_gib, "started snapshot");

    let bar = progress_bar(client.config().progress, size, "upload");
    let written = Arc::new(Mutex::new(BTreeMap::<u64, [u8; 32]>::new()));
    let zero_block = Bytes::from(vec![0; BLOCK_SIZE as usize]);
    let zero_digest = blockstore::block::zero_block_hash().0;
    let state = Arc::new(Jobs {
        file,
        parent: parent_digests,
        tail,
        buffers: Buffers::default(),
        recent: RecentBlocks::new(RECENT_BLOCKS),
        zero_block,
        zero_digest,
    });
    {
        let (client, written, state, bar) =
            (client.clone(), written.clone(), state.clone(), bar.clone());
        let id = snapshot_id.clone();
        let workers = client.config().workers;
        for_each_parallel(workers, count, move |job| {
            let (client, written, state, bar, id) = (
                client.clone(),
                written.clone(),
                state.clone(),
                bar.clone(),
                id.clone(),
            );
            async move {
                let index = if job < file_jobs {
                    job as u64
                } else {
                    state.tail[job - file_jobs]
                };
                let (data, len) = if index < file_blocks {
                    let st = state.clone();
                    tokio::task::spawn_blocking(move || {
                        read_block(st.file.as_ref(), &st.buffers, index, size)
                    })
                    .await
                    .map_err(|e| anyhow!("reading task failed: {e}"))??
                } else {
                    (None, 0)
                };
                let parent = state.parent.get(&index);
                // A zero block is written only over a parent's block; it is never hashed.
                let write = match data {
                    None => parent
                        .is_some()
                        .then(|| (state.zero_block.clone(), state.zero_digest)),
                    Some(data) => {
                        let digest = state.recent.hash(&data).0;
                        if parent == Some(&digest) {
                            state.buffers.give_back(data);
                            None
                        } else {
                            Some((Bytes::from(data), digest))
                        }
                    }
                };
                if let Some((body, digest)) = write {
                    put_block(&client, &id, index, body.clone(), &digest).await?;
                    written
                        .lock()
                        .map_err(|_| anyhow!("lock poisoned"))?
                        .insert(index, digest);
                    if let Ok(buffer) = body.try_into_mut() {
                        state.buffers.give_back(buffer.into());
                    }
                }
                bar.inc(len);
                Ok(())
            }
        })
        .await
        .with_context(|| format!("uploading blocks to {snapshot_id}"))?;
    }
    bar.finish_and_clear();

    let written = std::mem::take(&mut *written.lock().map_err(|_| anyhow!("lock poisoned"))?);
    let status = complete_snapshot(client, &snapshot_id, &written).await?;
    for (index, digest) in &written {
        if *digest == state.zero_digest {
            new_digests.remove(index);
        } else {
            new_digests.insert(*index, *digest);
        }
    }
    new_digests.retain(|i, _| *i < volume_blocks);
    super::digests::store(client.config(), &snapshot_id, &new_digests, volume_gib);
    Ok(Uploaded {
        snapshot_id,
        changed_blocks: written.len() as u64,
        file_blocks,
        format,
        status,
        parent_digests: parent_source,
    })
}

/// What every upload job shares.
struct Jobs {
    file: Box<dyn DiskReader>,
    /// The parent's block digests (empty for a full upload).
    parent: HashMap<u64, [u8; 32]>,
    /// Parent blocks past the end of the file, which must become zero.
    tail: Vec<u64>,
    buffers: Buffers,
    /// Blocks hashed lately: a block identical to one of them is compared, not hashed
    /// again (an image's repeated blocks).
    recent: RecentBlocks,
    /// A zero block and its digest, for parent blocks that become zero.
    zero_block: Bytes,
    zero_digest: [u8; 32],
}

/// Block buffers handed from one job to the next. A fresh 512 KiB buffer per block costs the
/// allocator a mapping, page faults and clearing (a quarter of the client's CPU when
/// profiled); a buffer from here is read into directly, and given back once its
/// PutSnapshotBlock has answered.
#[derive(Default)]
struct Buffers(Mutex<Vec<Vec<u8>>>);

impl Buffers {
    /// Buffers kept at most (more than `workers` are never in use at once).
    const MAX: usize = 256;

    /// A `BLOCK_SIZE` buffer; its content is whatever the last block left there.
    fn take(&self) -> Vec<u8> {
        self.0
            .lock()
            .ok()
            .and_then(|mut pool| pool.pop())
            .unwrap_or_else(|| vec![0; BLOCK_SIZE as usize])
    }

    fn give_back(&self, buffer: Vec<u8>) {
        if buffer.len() == BLOCK_SIZE as usize
            && let Ok(mut pool) = self.0.lock()
            && pool.len() < Self::MAX
        {
            pool.push(buffer);
        }
    }
}

/// Reads block `index` of a virtual disk of `size` bytes, zero-padded, into a buffer from
/// `buffers`; returns the block (`None` if it is all zeros) and how many bytes came from
/// the disk. A range the metadata shows unallocated is not read.
fn read_block(
    disk: &dyn DiskReader,
    buffers: &Buffers,
    index: u64,
    size: u64,
) -> anyhow::Result<(Option<Vec<u8>>, u64)> {
    let offset = index * BLOCK_SIZE;
    let len = (size - offset).min(BLOCK_SIZE);
    if disk
        .range_is_zero(offset, len)
        .with_context(|| format!("mapping block {index}"))?
    {
        return Ok((None, len));
    }
    let mut data = buffers.take();
    let (read, pad) = data.split_at_mut(len as usize);
    pad.fill(0);
    disk.read_at(offset, read)
        .with_context(|| format!("reading block {index}"))?;
    if blockstore::block::is_zero(&data) {
        buffers.give_back(data);
        return Ok((None, len));
    }
    Ok((Some(data), len))
}

/// The SHA-256 of every allocated block of `parent`, and its volume size in GiB: from the
/// local cache when it agrees with ListSnapshotBlocks, else by reading the blocks.
async fn parent_block_digests(
    client: &Client,
    parent: &str,
) -> anyhow::Result<(HashMap<u64, [u8; 32]>, u64, ParentDigests)> {
    let (blocks, gib) = super::list_all_blocks(client, parent)
        .await
        .with_context(|| format!("listing the blocks of parent {parent}"))?;
    if let Some((cached, cached_gib)) = super::digests::load(client.config(), parent)
        && cached_gib == gib
        && cached.len() == blocks.len()
        && blocks.iter().all(|b| cached.contains_key(&b.index))
    {
        tracing::debug!(
            parent,
            blocks = blocks.len(),
            "parent digests from the local cache"
        );
        return Ok((cached, gib, ParentDigests::Cached));
    }
    let digests = Arc::new(Mutex::new(HashMap::new()));
    let blocks = Arc::new(blocks);
    let bar = progress_bar(
        client.config().progress,
        blocks.len() as u64 * BLOCK_SIZE,
        "read parent",
    );
    {
        let (client, digests, blocks, bar) =
            (client.clone(), digests.clone(), blocks.clone(), bar.clone());
        let parent_id = parent.to_owned();
        let workers = client.config().workers;
        for_each_parallel(workers, blocks.len(), move |i| {
            let (client, digests, blocks, bar, parent) = (
                client.clone(),
                digests.clone(),
                blocks.clone(),
                bar.clone(),
                parent_id.clone(),
            );
            async move {
                let block = &blocks[i];
                let (_, digest) = super::get_block(&client, &parent, block).await?;
                digests
                    .lock()
                    .map_err(|_| anyhow!("lock poisoned"))?
                    .insert(block.index, digest);
                bar.inc(BLOCK_SIZE);
                Ok(())
            }
        })
        .await
        .with_context(|| format!("reading the blocks of parent {parent}"))?;
    }
    bar.finish_and_clear();
    let digests = std::mem::take(&mut *digests.lock().map_err(|_| anyhow!("lock poisoned"))?);
    super::digests::store(client.config(), parent, &digests, gib);
    Ok((digests, gib, ParentDigests::Read))
}

/// A client token for StartSnapshot, so that its retries are idempotent.
fn client_token(file: &Path) -> String {
    let seed = format!(
        "{:?} {} {}",
        std::time::SystemTime::now(),
        std::process::id(),
        file.display()
    );
    hex_prefix(&blockstore::sha256(seed.as_bytes()))
}

fn hex_prefix(digest: &[u8; 32]) -> String {
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

async fn start_snapshot(
    client: &Client,
    req: &UploadRequest<'_>,
    volume_gib: u64,
) -> anyhow::Result<String> {
    let mut body = json!({ "VolumeSize": volume_gib, "ClientToken": client_token(req.file) });
    if let Some(d) = &req.description {
        body["Description"] = json!(d);
    }
    if let Some(p) = &req.parent {
        body["ParentSnapshotId"] = json!(p);
    }
    let reply = client
        .call(
            "StartSnapshot",
            Method::POST,
            "/snapshots",
            &[],
            &[("Content-Type", "application/json".to_owned())],
            Bytes::from(body.to_string()),
            false,
        )
        .await?
        .json()?;
    if let Some(size) = reply.get("BlockSize").and_then(Value::as_u64)
        && size != BLOCK_SIZE
    {
        bail!("unsupported block size {size}");
    }
    reply
        .get("SnapshotId")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("StartSnapshot returned no SnapshotId: {reply}"))
}

async fn put_block(
    client: &Client,
    snapshot: &str,
    index: u64,
    data: Bytes,
    digest: &[u8; 32],
) -> anyhow::Result<()> {
    let path = format!("/snapshots/{}/blocks/{index}", super::encode(snapshot));
    let reply = client
        .call(
            "PutSnapshotBlock",
            Method::PUT,
            &path,
            &[],
            &[
                ("x-amz-Data-Length", data.len().to_string()),
                ("x-amz-Checksum", b64(digest)),
                ("x-amz-Checksum-Algorithm", "SHA256".to_owned()),
            ],
            data,
            true,
        )
        .await
        .with_context(|| format!("block {index}"))?;
    match reply.header("x-amz-checksum") {
        Some(sum) if sum != b64(digest) => {
            bail!("PutSnapshotBlock of block {index} acknowledged checksum {sum}")
        }
        _ => Ok(()),
    }
}

async fn complete_snapshot(
    client: &Client,
    snapshot: &str,
    written: &BTreeMap<u64, [u8; 32]>,
) -> anyhow::Result<String> {
    let mut headers = vec![("x-amz-ChangedBlocksCount", written.len().to_string())];
    if !written.is_empty() {
        headers.push(("x-amz-Checksum", linear_checksum(written.values())));
        headers.push(("x-amz-Checksum-Algorithm", "SHA256".to_owned()));
        headers.push(("x-amz-Checksum-Aggregation-Method", "LINEAR".to_owned()));
    }
    let path = format!("/snapshots/completion/{}", super::encode(snapshot));
    let reply = client
        .call(
            "CompleteSnapshot",
            Method::POST,
            &path,
            &[],
            &headers,
            Bytes::new(),
            false,
        )
        .await?
        .json()?;
    Ok(reply
        .get("Status")
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_owned())
}
