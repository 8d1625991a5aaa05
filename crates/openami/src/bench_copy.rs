//! `openami bench copy`: CopySnapshot's data path against `cp` + `sync`.
//!
//! Builds a snapshot of mixed content (block by block: one third random, one third
//! zeros, one third one repeated block, as `bench store` does) in one region's store and
//! the same bytes as a raw file, then in one run measures:
//!
//! | measurement                              | compared with              | target  |
//! |------------------------------------------|----------------------------|---------|
//! | `cp` + `sync` of the raw file            | —                          | —       |
//! | copy to another region, 1 thread         | `cp` + `sync`              | —       |
//! | copy to another region, parallel         | `cp` + `sync`              | ≥ 0.7×  |
//!
//! The copies run the engine's own copy code ([`engine::snapshot_copy`], what
//! CopySnapshot and CopyImage run after their catalog work) in process over two region
//! stores of a data directory, each into a region that has none of the blocks. In
//! process rather than through `openami serve` and the API: the API part of
//! CopySnapshot is one catalog row, and timing through it would add polling intervals
//! to a data-path measurement. A copy is durable when it returns (its blocks and
//! manifest are synced), so it is compared with `cp` followed by `sync`. Each copy is
//! read back from its region and compared byte for byte with the raw file.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail, ensure};
use blockstore::{BLOCK_SIZE, BlockStore, Manifest};
use engine::DataDir;
use engine::snapshot_copy::{COPY_THREADS, copy_snapshot_blocks_with};

use crate::bench::{
    BASELINE_RUNS, Rng, best_cp, id, mixed_block, rate, row, secs, sync_all, verdict,
};
use crate::store_cmd::human;

/// Arguments of `openami bench copy`.
#[derive(Debug, clap::Args)]
pub struct CopyBenchArgs {
    /// Snapshot size in MiB.
    #[arg(long, default_value_t = 2048)]
    pub size_mib: u64,
    /// Work directory (default: a new directory under the system temp dir). Removed
    /// afterwards unless --keep.
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Keep the work directory.
    #[arg(long)]
    pub keep: bool,
}

pub fn run(args: CopyBenchArgs) -> anyhow::Result<()> {
    ensure!(args.size_mib >= 1, "--size-mib must be at least 1");
    let work = match &args.work_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            dir.clone()
        }
        None => std::env::temp_dir().join(format!("openami-bench-copy-{}", std::process::id())),
    };
    let result = bench(&args, &work);
    if !args.keep {
        let _ = std::fs::remove_dir_all(&work);
    }
    result
}

fn bench(args: &CopyBenchArgs, work: &Path) -> anyhow::Result<()> {
    let size = args.size_mib << 20;
    let blocks = size.div_ceil(BLOCK_SIZE as u64);
    let data = DataDir::open(&work.join("data"), true)?;
    let source = data.region("us-east-1")?;
    let raw_path = work.join("source.raw");

    eprintln!("preparing a {} snapshot and raw file ...", human(size));
    let mut raw = BufWriter::with_capacity(
        4 << 20,
        File::create(&raw_path).context("creating raw file")?,
    );
    let session = source.store.session();
    let mut rng = Rng(2026);
    let mut repeated = vec![0u8; BLOCK_SIZE];
    rng.fill(&mut repeated);
    let mut block = vec![0u8; BLOCK_SIZE];
    let zeros = vec![0u8; BLOCK_SIZE];
    let mut entries = Vec::new();
    for b in 0..blocks {
        let len = (size - b * BLOCK_SIZE as u64).min(BLOCK_SIZE as u64) as usize;
        match mixed_block(b, &mut rng, &mut block, &repeated) {
            Some(content) => {
                raw.write_all(&content[..len]).context("writing raw file")?;
                // Stored blocks are full: the tail of a partial last block is zeros.
                let mut full = content.to_vec();
                full[len..].fill(0);
                entries.push((b, session.put_block(&full)?.hash));
            }
            None => raw.write_all(&zeros[..len]).context("writing raw file")?,
        }
    }
    raw.flush().context("writing raw file")?;
    drop(raw);
    let src_id = id("snap-00000000000000001")?;
    let manifest =
        Manifest::new(src_id.clone(), None, size, 0, entries).map_err(anyhow::Error::msg)?;
    session.commit(&manifest)?;
    drop(session);
    sync_all()?;

    // Baseline: cp + sync of the same bytes, the best of BASELINE_RUNS.
    let (_, cp_time) = best_cp(&raw_path, &work.join("copy.raw"), &[])?;

    let mut passes = Vec::new();
    for (threads, region) in [(1, "us-west-2"), (COPY_THREADS, "eu-west-1")] {
        let dst = data.region(region)?;
        let dst_id = id(&format!("snap-0000000000000000{}", passes.len() + 2))?;
        let t = Instant::now();
        let summary =
            copy_snapshot_blocks_with(&source.store, &dst.store, &src_id, &dst_id, None, threads)?;
        let elapsed = t.elapsed();
        compare_with_raw(&dst.store, &dst_id, &raw_path, size)?;
        passes.push((threads, elapsed, summary));
        sync_all()?;
    }

    println!();
    println!(
        "openami copy benchmark: {} snapshot, {blocks} blocks of 512 KiB (1/3 random, 1/3 zeros, 1/3 one repeated block)",
        human(size)
    );
    row("operation", "time", "throughput", "comparison");
    row(
        &format!("cp + sync (baseline, best of {BASELINE_RUNS})"),
        &secs(cp_time),
        &rate(size, cp_time),
        "1.00x",
    );
    for (threads, elapsed, summary) in &passes {
        let ratio = cp_time.as_secs_f64() / elapsed.as_secs_f64();
        let mut comparison = format!("{ratio:.2}x cp+sync");
        if *threads == COPY_THREADS {
            comparison.push_str(&format!(" (target >= 0.7x: {})", verdict(ratio >= 0.7)));
        }
        row(
            &format!(
                "CopySnapshot to another region, {threads} thread{}",
                if *threads == 1 { "" } else { "s" }
            ),
            &secs(*elapsed),
            &rate(size, *elapsed),
            &comparison,
        );
        println!(
            "  {} blocks, {} distinct, {} copied, {} stored; read back identical to the source",
            summary.blocks,
            summary.distinct_blocks,
            summary.copied_blocks,
            human(summary.stored_bytes)
        );
    }
    Ok(())
}

/// Compares the snapshot `id` in `store` with the raw file.
fn compare_with_raw(
    store: &BlockStore,
    id: &blockstore::ResourceId,
    raw: &Path,
    size: u64,
) -> anyhow::Result<()> {
    let manifest = store.read_manifest(id)?;
    ensure!(manifest.volume_size == size, "copy has the wrong size");
    let mut source = File::open(raw).context("opening raw file")?;
    let mut want = vec![0u8; BLOCK_SIZE];
    let zeros = vec![0u8; BLOCK_SIZE];
    let blocks = size.div_ceil(BLOCK_SIZE as u64);
    for b in 0..blocks {
        let len = (size - b * BLOCK_SIZE as u64).min(BLOCK_SIZE as u64) as usize;
        source
            .read_exact(&mut want[..len])
            .context("reading raw file")?;
        let got = match manifest.get(b) {
            Some(hash) => store.get_block(&hash)?,
            None => zeros.clone(),
        };
        if got[..len] != want[..len] {
            bail!("copy {id} differs from the source in block {b}");
        }
    }
    Ok(())
}
