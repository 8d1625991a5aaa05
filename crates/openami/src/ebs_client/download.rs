//! `openami snapshot download SNAPSHOT FILE`: a snapshot to a raw disk image.
//!
//! ListSnapshotBlocks (every page), then GetSnapshotBlock for each listed block on
//! `workers` tasks, each verified against its `x-amz-Checksum` and written at
//! `index × 512 KiB`. FILE is created (or truncated) and sized to the volume
//! (VolumeSize GiB) first, so blocks that are not listed, and listed blocks that are all
//! zeros, stay holes of a sparse file.
//!
//! Block tokens expire (ListSnapshotBlocks reports when); a download that outlasts them
//! fails and has to be restarted.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, anyhow};

use super::{BLOCK_SIZE, Client, for_each_parallel, list_all_blocks, progress_bar};

/// The result of a download.
#[derive(Debug, Clone)]
pub struct Downloaded {
    /// Blocks listed (and fetched).
    pub blocks: u64,
    /// Blocks written to the file (the rest were all zeros).
    pub written: u64,
    /// The volume size in GiB, which is the file's length.
    pub volume_size: u64,
}

/// Downloads `snapshot` into `file`.
pub async fn download(client: &Client, snapshot: &str, file: &Path) -> anyhow::Result<Downloaded> {
    let (blocks, volume_gib) = list_all_blocks(client, snapshot)
        .await
        .with_context(|| format!("listing the blocks of {snapshot}"))?;
    let out = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(file)
        .with_context(|| format!("creating {}", file.display()))?;
    out.set_len(volume_gib << 30)
        .with_context(|| format!("sizing {} to {volume_gib} GiB", file.display()))?;

    let bar = progress_bar(
        client.config().progress,
        blocks.len() as u64 * BLOCK_SIZE,
        "download",
    );
    let written = Arc::new(AtomicU64::new(0));
    let count = blocks.len();
    let state = Arc::new((out, blocks));
    {
        let (client, bar, written, state) =
            (client.clone(), bar.clone(), written.clone(), state.clone());
        let snapshot_id = snapshot.to_owned();
        let workers = client.config().workers;
        for_each_parallel(workers, count, move |i| {
            let (client, bar, written, state, snapshot) = (
                client.clone(),
                bar.clone(),
                written.clone(),
                state.clone(),
                snapshot_id.clone(),
            );
            async move {
                let block = &state.1[i];
                let index = block.index;
                let (data, _) = super::get_block(&client, &snapshot, block).await?;
                if !blockstore::block::is_zero(&data) {
                    let st = state.clone();
                    tokio::task::spawn_blocking(move || {
                        st.0.write_all_at(&data, index * BLOCK_SIZE)
                            .with_context(|| format!("writing block {index}"))
                    })
                    .await
                    .map_err(|e| anyhow!("writing task failed: {e}"))??;
                    written.fetch_add(1, Ordering::Relaxed);
                }
                bar.inc(BLOCK_SIZE);
                Ok(())
            }
        })
        .await
        .with_context(|| format!("downloading {snapshot}"))?;
    }
    bar.finish_and_clear();
    state
        .0
        .sync_all()
        .with_context(|| format!("syncing {}", file.display()))?;
    Ok(Downloaded {
        blocks: count as u64,
        written: written.load(Ordering::Relaxed),
        volume_size: volume_gib,
    })
}
