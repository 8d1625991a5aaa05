//! `openami bench cold-read`: first-read latency of a cold block of a volume created from
//! a snapshot, with the snapshot's blocks in the local backend and in S3.
//!
//! Issue 13 (scale-out) asks for "CreateVolume-from-snapshot in the other zone (first-read
//! latency of a cold block)". A volume created from a snapshot holds no data: the first
//! read of each 512 KiB block fetches it from the region's block store (the object,
//! zstd-decoded, checked against its SHA-256), writes it into the volume's local data and
//! answers from it. On a node cluster the snapshot was written by the node of another
//! zone, so every block a new volume reads first comes from the shared bucket; this
//! measures what that costs a guest's read, against the same read with the blocks in the
//! data directory.
//!
//! In one run:
//!
//! 1. A snapshot of `--size-mib` of random, incompressible, pairwise distinct blocks is
//!    written into the store (a write session and a manifest, as CompleteSnapshot commits
//!    one): objects under the work directory, and with `--blocks` also in that bucket,
//!    under a fresh sub-prefix `bench-cold-<pid>-<time>` that is deleted afterwards.
//! 2. For each backend and read-ahead off, then on (the default): a fresh block store
//!    over the same objects (nothing in its read cache, as on a node that never saw the
//!    snapshot) and a fresh volume in an empty volumes directory, created with
//!    [`Volume::create_from_snapshot`] on the region's store (what CreateVolume runs);
//!    then `--reads` single 4 KiB reads, each at a random 4 KiB-aligned offset inside its
//!    own not-yet-read block, through [`Volume::read_at`] (what the NBD export a guest's
//!    disk is behind calls). Each read is timed alone: a cold block. Then every sampled
//!    4 KiB is read again: a warm read from the volume's own data. Every read is checked
//!    against the bytes written.
//!
//! 3. For each backend, the same blocks fetched with [`BlockStore::get_block`] alone on a
//!    fresh store (read the object, decode, verify): the part of a cold read the backend
//!    decides; the rest is the volume's (writing the block into its data, bookkeeping).
//!
//! ```text
//!  snapshot (random blocks) ──► objects: <work>/…/objects  or  s3://BUCKET/PREFIX/bench-cold-…
//!                                   ▲ get_block: GET, zstd, SHA-256
//!  volume (empty data dir) ── read_at(4 KiB in block b) ── fill b locally ── answer
//! ```
//!
//! Reported per backend and read-ahead mode: p50, p90 and max of the cold reads, p50 of
//! the warm ones and of the fetches alone, and the ratio local/S3 (of p50, p90, max;
//! below 1: S3 is slower). Without `--blocks` only the local backend is measured.
//!
//! With read-ahead on (what a guest gets), a random read that lands near an earlier one
//! continues its run and queues the next blocks, so some sampled blocks were fetched (or
//! were being fetched) before their own read, and the workers' fetches compete with the
//! reader's: those rows are the default's behaviour under random reads, not one cold
//! block each; how many blocks read-ahead filled is reported ("extra"). The objects were
//! just written, so they (and SeaweedFS's volume files) are in the page cache: the
//! figures are the fetch path, not a cold disk.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};
use blockstore::{BLOCK_SIZE, BlockStore, Manifest, ResourceId};
use engine::{DataDir, RegionStorage};
use volume::Volume;

use crate::bench::{Rng, id, sync_all};
use crate::cli::S3Args;
use crate::store_cmd::human;

const REGION: &str = "us-east-1";
/// Bytes of one timed read (a guest's page).
const READ: usize = 4096;
const SNAPSHOT: &str = "snap-0c01d0000000000001";
const SEED: u64 = 0x0c01_d2ea_d000_2026;

/// Arguments of `openami bench cold-read`.
#[derive(Debug, clap::Args)]
pub struct ColdReadBenchArgs {
    /// Snapshot size in MiB (blocks of 512 KiB; at least one block per read).
    #[arg(long, default_value_t = 128)]
    pub size_mib: u64,
    /// Cold reads timed per backend and read-ahead mode, each in its own block.
    #[arg(long, default_value_t = 100)]
    pub reads: usize,
    #[command(flatten)]
    pub s3: S3Args,
    /// Work directory (default: a new directory under the system temp dir). Removed
    /// afterwards unless --keep.
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Keep the work directory (the S3 objects are deleted regardless).
    #[arg(long)]
    pub keep: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: ColdReadBenchArgs) -> anyhow::Result<()> {
    ensure!(args.size_mib >= 1, "--size-mib must be at least 1");
    ensure!(args.reads >= 1, "--reads must be at least 1");
    let blocks = (args.size_mib << 20).div_ceil(BLOCK_SIZE as u64);
    ensure!(
        args.reads as u64 <= blocks,
        "--reads ({}) must not exceed the snapshot's blocks ({blocks}): each read is in its own block",
        args.reads
    );
    let s3 = args.s3.config()?;
    let work = match &args.work_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            dir.clone()
        }
        None => std::env::temp_dir().join(format!("openami-bench-cold-{}", std::process::id())),
    };
    let result = bench(&args, s3, &work);
    if !args.keep {
        let _ = std::fs::remove_dir_all(&work);
    }
    result
}

/// Where the snapshot's objects are: its writer's storage, and how a reader node opens
/// its own store over the same objects.
struct Backend {
    label: &'static str,
    writer: RegionStorage,
    /// For S3: the configuration a reader node opens the bucket with.
    s3: Option<objstore::S3Config>,
}

impl Backend {
    /// A block store over the snapshot's objects with nothing cached: a node of another
    /// zone (for S3 its own client and connections, already checked against the bucket).
    fn reader_store(&self, work: &Path, pass: usize) -> anyhow::Result<Arc<BlockStore>> {
        match &self.s3 {
            None => Ok(BlockStore::new(Arc::clone(&self.writer.objects))),
            Some(config) => {
                let dir = DataDir::open(&work.join(format!("reader-s3-{pass}")), true)?
                    .with_s3_objects(config.clone());
                Ok(dir.region(REGION)?.store)
            }
        }
    }

    /// For S3, deletes every object under the bench's prefix (blocks, manifest, holds of
    /// volumes a failed pass left); local objects go with the work directory.
    fn clean_up(&self) -> anyhow::Result<()> {
        if self.s3.is_some() {
            let objects = &self.writer.objects;
            for meta in objects.list("").context("listing the bench's objects")? {
                objects
                    .delete(&meta.key)
                    .with_context(|| format!("deleting {}", meta.key))?;
            }
        }
        Ok(())
    }
}

/// Latencies of one pass.
struct Pass {
    backend: &'static str,
    read_ahead: bool,
    cold: Vec<Duration>,
    warm: Vec<Duration>,
    /// Blocks present after the cold reads beyond the sampled ones (read-ahead's).
    extra_filled: u64,
    /// The backend's [`BlockStore::get_block`] alone for the sampled blocks, on a store
    /// with nothing cached: the part of a cold read the backend decides.
    fetch: Vec<Duration>,
}

fn bench(
    args: &ColdReadBenchArgs,
    s3: Option<objstore::S3Config>,
    work: &Path,
) -> anyhow::Result<()> {
    let size = args.size_mib << 20;
    let blocks = size.div_ceil(BLOCK_SIZE as u64);
    let snapshot = id(SNAPSHOT)?;
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();

    let mut backends = vec![Backend {
        label: "local",
        writer: DataDir::open(&work.join("writer-local"), true)?.region(REGION)?,
        s3: None,
    }];
    if let Some(mut config) = s3 {
        let sub = format!("bench-cold-{}-{stamp}", std::process::id());
        config.prefix = match config.prefix.as_str() {
            "" => sub,
            prefix => format!("{prefix}/{sub}"),
        };
        let writer = DataDir::open(&work.join("writer-s3"), true)?
            .with_s3_objects(config.clone())
            .region(REGION)?;
        backends.push(Backend {
            label: "s3",
            writer,
            s3: Some(config),
        });
    }
    // The reader node's volumes directory: empty, with no local copy of any block.
    let volumes = DataDir::open(&work.join("reader"), true)?
        .region(REGION)?
        .volumes_dir;

    let written = backends.iter().try_for_each(|backend| {
        eprintln!(
            "writing a {} snapshot ({blocks} random blocks) to the {} backend ...",
            human(size),
            backend.label
        );
        let t = Instant::now();
        write_snapshot(&backend.writer.store, &snapshot, size)?;
        eprintln!("  written in {:.2} s", t.elapsed().as_secs_f64());
        Ok::<(), anyhow::Error>(())
    });
    let passes =
        written.and_then(|()| measure(args, &backends, &snapshot, blocks, size, &volumes, work));
    // The bucket's objects go whatever happened; a failure here is reported after the
    // bench's own error, if any.
    let mut cleanup = Ok(());
    for backend in &backends {
        if let Err(e) = backend.clean_up() {
            eprintln!("cleaning up the {} backend: {e:#}", backend.label);
            cleanup = Err(e);
        }
    }
    let passes = passes?;
    cleanup?;
    report(args, blocks, &passes)
}

/// The content of block `b`: random, distinct per block.
fn block_content(b: u64, buf: &mut [u8]) {
    Rng(SEED ^ b.wrapping_mul(0x9e37_79b9_7f4a_7c15)).fill(buf);
}

fn write_snapshot(store: &Arc<BlockStore>, snapshot: &ResourceId, size: u64) -> anyhow::Result<()> {
    let blocks = size.div_ceil(BLOCK_SIZE as u64);
    let session = store.session();
    let mut block = vec![0u8; BLOCK_SIZE];
    let mut entries = Vec::new();
    for b in 0..blocks {
        block_content(b, &mut block);
        // Stored blocks are full: the tail of a partial last block is zeros.
        let len = (size - b * BLOCK_SIZE as u64).min(BLOCK_SIZE as u64) as usize;
        block[len..].fill(0);
        entries.push((b, session.put_block(&block)?.hash));
    }
    let manifest =
        Manifest::new(snapshot.clone(), None, size, 0, entries).map_err(anyhow::Error::msg)?;
    session.commit(&manifest)?;
    Ok(())
}

/// `reads` distinct blocks in random order, each with a 4 KiB-aligned offset inside it.
fn sample(blocks: u64, reads: usize, size: u64) -> Vec<u64> {
    let mut rng = Rng(SEED);
    let mut order: Vec<u64> = (0..blocks).collect();
    let mut word = [0u8; 8];
    let mut next = |bound: u64| {
        rng.fill(&mut word);
        u64::from_le_bytes(word) % bound
    };
    for i in 0..reads {
        let j = i as u64 + next(blocks - i as u64);
        order.swap(i, j as usize);
    }
    order[..reads]
        .iter()
        .map(|&b| {
            let len = (size - b * BLOCK_SIZE as u64).min(BLOCK_SIZE as u64);
            let slots = (len / READ as u64).max(1);
            let offset = b * BLOCK_SIZE as u64 + next(slots) * READ as u64;
            offset.min(size - READ.min(size as usize) as u64)
        })
        .collect()
}

fn measure(
    args: &ColdReadBenchArgs,
    backends: &[Backend],
    snapshot: &ResourceId,
    blocks: u64,
    size: u64,
    volumes: &Path,
    work: &Path,
) -> anyhow::Result<Vec<Pass>> {
    let offsets = sample(blocks, args.reads, size);
    let len = READ.min(size as usize);
    let mut passes = Vec::new();
    // Off for every backend, then on: each ratio compares neighbouring passes.
    for read_ahead in [false, true] {
        for backend in backends {
            let pass = passes.len();
            let store = backend.reader_store(work, pass)?;
            let name = format!("vol-c01d{pass:013}");
            let dir = volumes.join(&name);
            let vol =
                Volume::create_from_snapshot(&dir, id(&name)?, snapshot, None, store.clone())?;
            vol.set_read_ahead(read_ahead);
            // No pass pays for writing back an earlier one's dirty pages.
            sync_all()?;
            let mut buf = vec![0u8; len];
            let mut cold = Vec::with_capacity(offsets.len());
            for &offset in &offsets {
                let t = Instant::now();
                vol.read_at(&mut buf, offset)?;
                cold.push(t.elapsed());
                check(&buf, offset)?;
            }
            let (present, _, _) = vol.block_counts();
            let extra_filled = present.saturating_sub(offsets.len() as u64);
            let mut warm = Vec::with_capacity(offsets.len());
            for &offset in &offsets {
                let t = Instant::now();
                vol.read_at(&mut buf, offset)?;
                warm.push(t.elapsed());
                check(&buf, offset)?;
            }
            vol.close()?;
            drop(vol);
            Volume::destroy(&dir, &store)?;
            eprintln!(
                "  {} read-ahead {}: cold p50 {}",
                backend.label,
                on_off(read_ahead),
                ms(percentile(&cold, 0.5))
            );
            passes.push(Pass {
                backend: backend.label,
                read_ahead,
                cold,
                warm,
                extra_filled,
                fetch: Vec::new(),
            });
        }
    }
    // The fetch alone (read the object, decode, verify), without the volume.
    for (i, backend) in backends.iter().enumerate() {
        let store = backend.reader_store(work, passes.len() + i)?;
        let manifest = store.read_manifest(snapshot)?;
        let mut fetch = Vec::with_capacity(offsets.len());
        for &offset in &offsets {
            let b = offset / BLOCK_SIZE as u64;
            let hash = manifest
                .get(b)
                .with_context(|| format!("block {b} is not in the snapshot"))?;
            let t = Instant::now();
            let content = store.get_block(&hash)?;
            fetch.push(t.elapsed());
            let within = (offset % BLOCK_SIZE as u64) as usize;
            check(&content[within..within + len], offset)?;
        }
        for pass in passes.iter_mut().filter(|p| p.backend == backend.label) {
            pass.fetch = fetch.clone();
        }
    }
    Ok(passes)
}

/// Checks bytes read at `offset` against the snapshot's content.
fn check(got: &[u8], offset: u64) -> anyhow::Result<()> {
    let b = offset / BLOCK_SIZE as u64;
    let mut block = vec![0u8; BLOCK_SIZE];
    block_content(b, &mut block);
    let within = (offset % BLOCK_SIZE as u64) as usize;
    if got != &block[within..within + got.len()] {
        bail!("the read at offset {offset} differs from the snapshot");
    }
    Ok(())
}

/// The `p` quantile (nearest rank) of unsorted `samples`.
fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1));
    sorted.get(rank - 1).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}

/// p50, p90, max of the cold reads, p50 of the warm ones and of the fetches alone, in
/// milliseconds.
fn figures(pass: &Pass) -> [f64; 5] {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    [
        ms(percentile(&pass.cold, 0.5)),
        ms(percentile(&pass.cold, 0.9)),
        ms(percentile(&pass.cold, 1.0)),
        ms(percentile(&pass.warm, 0.5)),
        ms(percentile(&pass.fetch, 0.5)),
    ]
}

fn report(args: &ColdReadBenchArgs, blocks: u64, passes: &[Pass]) -> anyhow::Result<()> {
    let local = |read_ahead| {
        passes
            .iter()
            .find(|p| p.backend == "local" && p.read_ahead == read_ahead)
    };
    if args.json {
        let results: Vec<serde_json::Value> = passes
            .iter()
            .map(|p| {
                let [p50, p90, max, warm, fetch] = figures(p);
                let ratio = local(p.read_ahead).map(|l| {
                    let [l50, l90, lmax, _, _] = figures(l);
                    serde_json::json!({"p50": l50 / p50, "p90": l90 / p90, "max": lmax / max})
                });
                serde_json::json!({
                    "backend": p.backend,
                    "read_ahead": p.read_ahead,
                    "cold_p50_ms": p50,
                    "cold_p90_ms": p90,
                    "cold_max_ms": max,
                    "warm_p50_ms": warm,
                    "fetch_p50_ms": fetch,
                    "extra_filled_blocks": p.extra_filled,
                    "local_over_this": ratio,
                })
            })
            .collect();
        let out = serde_json::json!({
            "config": {
                "size_mib": args.size_mib,
                "blocks": blocks,
                "reads": args.reads,
                "read_bytes": READ,
                "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
            },
            "results": results,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!();
    println!(
        "openami cold-read benchmark ({} build): a volume from a {} MiB snapshot ({blocks} random blocks of 512 KiB),",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        args.size_mib
    );
    println!(
        "{} reads of 4 KiB each in its own not-yet-read block; warm: the same 4 KiB again",
        args.reads
    );
    println!(
        "{:<28} {:>10} {:>10} {:>10} {:>10} {:>10} {:>6}  local/this (p50, p90, max)",
        "cold first read", "p50", "p90", "max", "warm p50", "fetch p50", "extra"
    );
    for p in passes {
        let [p50, p90, max, warm, fetch] = figures(p);
        let ratio = match local(p.read_ahead) {
            Some(l) if p.backend != "local" => {
                let [l50, l90, lmax, _, _] = figures(l);
                format!("{:.2}x, {:.2}x, {:.2}x", l50 / p50, l90 / p90, lmax / max)
            }
            _ => "1.00x".into(),
        };
        let f = |v: f64| format!("{v:.3} ms");
        println!(
            "{:<28} {:>10} {:>10} {:>10} {:>10} {:>10} {:>6}  {ratio}",
            format!("{}, read-ahead {}", p.backend, on_off(p.read_ahead)),
            f(p50),
            f(p90),
            f(max),
            f(warm),
            f(fetch),
            p.extra_filled
        );
    }
    println!(
        "(fetch: the block store's get_block alone, uncached: read the object, zstd, SHA-256;"
    );
    println!(
        " extra: blocks read-ahead filled beyond the sampled ones; every read matched the snapshot)"
    );
    Ok(())
}
