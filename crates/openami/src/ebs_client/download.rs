//! `openami snapshot download SNAPSHOT FILE [--format F]`: a snapshot to a disk image
//! (raw, qcow2, vmdk streamOptimized or dynamic vhd; see [`diskimage::DiskWriter`]).
//!
//! ListSnapshotBlocks (every page), then GetSnapshotBlock for each listed block on
//! `workers` tasks, each verified against its `x-amz-Checksum`. The image writers take
//! blocks in increasing order, so blocks are fetched in windows of `4 × workers` listed
//! blocks (in index order, in parallel) and each window is written in order before the next
//! starts; memory stays at one window. Blocks that are not listed, and listed blocks that
//! are all zeros, are not written: holes of a sparse raw file, unallocated clusters/grains/
//! blocks of the other formats. The virtual disk is the volume (VolumeSize GiB).
//!
//! Block tokens expire (ListSnapshotBlocks reports when); a download that outlasts them
//! fails and has to be restarted.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, anyhow};
use diskimage::{DiskFormat, DiskWriter};

use super::{BLOCK_SIZE, Client, for_each_parallel, list_all_blocks, progress_bar};

/// The result of a download.
#[derive(Debug, Clone)]
pub struct Downloaded {
    /// Blocks listed (and fetched).
    pub blocks: u64,
    /// Blocks written to the file (the rest were all zeros).
    pub written: u64,
    /// The volume size in GiB, which is the image's virtual size.
    pub volume_size: u64,
}

/// Downloads `snapshot` into `file` as an image of `format`.
pub async fn download(
    client: &Client,
    snapshot: &str,
    file: &Path,
    format: DiskFormat,
) -> anyhow::Result<Downloaded> {
    let (mut blocks, volume_gib) = list_all_blocks(client, snapshot)
        .await
        .with_context(|| format!("listing the blocks of {snapshot}"))?;
    blocks.sort_by_key(|b| b.index);
    let path: PathBuf = file.to_owned();
    let writer =
        tokio::task::spawn_blocking(move || DiskWriter::create(&path, format, volume_gib << 30))
            .await
            .map_err(|e| anyhow!("creating task failed: {e}"))?
            .with_context(|| format!("creating {} ({format})", file.display()))?;
    let writer = Arc::new(Mutex::new(Some(writer)));

    let bar = progress_bar(
        client.config().progress,
        blocks.len() as u64 * BLOCK_SIZE,
        "download",
    );
    let workers = client.config().workers;
    let window = workers.max(1) * 4;
    let digests = Arc::new(Mutex::new(std::collections::HashMap::new()));
    let blocks = Arc::new(blocks);
    let mut written = 0u64;
    for start in (0..blocks.len()).step_by(window) {
        let end = (start + window).min(blocks.len());
        let fetched: Arc<Mutex<Vec<Option<Vec<u8>>>>> =
            Arc::new(Mutex::new(vec![None; end - start]));
        let window_digests = digests.clone();
        {
            let (client, bar, blocks, fetched, digests) = (
                client.clone(),
                bar.clone(),
                blocks.clone(),
                fetched.clone(),
                window_digests,
            );
            let snapshot_id = snapshot.to_owned();
            for_each_parallel(workers, end - start, move |i| {
                let (client, bar, blocks, fetched, snapshot, digests) = (
                    client.clone(),
                    bar.clone(),
                    blocks.clone(),
                    fetched.clone(),
                    snapshot_id.clone(),
                    digests.clone(),
                );
                async move {
                    let block = &blocks[start + i];
                    let (data, digest) = super::get_block(&client, &snapshot, block).await?;
                    digests
                        .lock()
                        .map_err(|_| anyhow!("lock poisoned"))?
                        .insert(block.index, digest);
                    if !blockstore::block::is_zero(&data) {
                        fetched.lock().map_err(|_| anyhow!("lock poisoned"))?[i] = Some(data);
                    }
                    bar.inc(BLOCK_SIZE);
                    Ok(())
                }
            })
            .await
            .with_context(|| format!("downloading {snapshot}"))?;
        }
        let data = std::mem::take(&mut *fetched.lock().map_err(|_| anyhow!("lock poisoned"))?);
        let (writer, blocks) = (writer.clone(), blocks.clone());
        written += tokio::task::spawn_blocking(move || -> anyhow::Result<u64> {
            let mut guard = writer.lock().map_err(|_| anyhow!("lock poisoned"))?;
            let w = guard
                .as_mut()
                .ok_or_else(|| anyhow!("writer already finished"))?;
            let mut n = 0;
            for (i, data) in data.into_iter().enumerate() {
                if let Some(data) = data {
                    let index = blocks[start + i].index;
                    w.write_block(index * BLOCK_SIZE, &data)
                        .with_context(|| format!("writing block {index}"))?;
                    n += 1;
                }
            }
            Ok(n)
        })
        .await
        .map_err(|e| anyhow!("writing task failed: {e}"))??;
    }
    bar.finish_and_clear();
    let w = writer
        .lock()
        .map_err(|_| anyhow!("lock poisoned"))?
        .take()
        .ok_or_else(|| anyhow!("writer already finished"))?;
    tokio::task::spawn_blocking(move || w.finish())
        .await
        .map_err(|e| anyhow!("finishing task failed: {e}"))?
        .with_context(|| format!("finishing {}", file.display()))?;
    let digests = std::mem::take(&mut *digests.lock().map_err(|_| anyhow!("lock poisoned"))?);
    super::digests::store(client.config(), snapshot, &digests, volume_gib);
    Ok(Downloaded {
        blocks: blocks.len() as u64,
        written,
        volume_size: volume_gib,
    })
}
