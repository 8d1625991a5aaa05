//! `openami bench store`: the data-plane benchmark.
//!
//! Builds a volume of mixed content (block by block: one third random, one third zeros,
//! one third one repeated block), writes the same bytes to a raw file, and measures in
//! one run:
//!
//! | measurement                          | compared with                      | target      |
//! |--------------------------------------|------------------------------------|-------------|
//! | full snapshot                        | `cp --sparse=always` of the raw file | ≥ 1× cp speed |
//! | incremental snapshot after 1% rewrite | the full snapshot                  | ≥ 30× faster |
//! | volume from snapshot                 | —                                  | < 10 ms      |
//! | read-back of a volume from snapshot  | the raw file (bytes compared)      | —            |

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use blockstore::{BLOCK_SIZE, ResourceId};
use volume::Volume;

use engine::DataDir;

use crate::store_cmd::human;

/// Arguments of `openami bench store`.
#[derive(Debug, clap::Args)]
pub struct StoreBenchArgs {
    /// Volume size in MiB.
    #[arg(long, default_value_t = 2048)]
    pub size_mib: u64,
    /// Percent of blocks rewritten before the incremental snapshot.
    #[arg(long, default_value_t = 1.0)]
    pub changed_percent: f64,
    /// Work directory (default: a new directory under the system temp dir). Removed
    /// afterwards unless --keep.
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Keep the work directory.
    #[arg(long)]
    pub keep: bool,
    /// Volumes to create from the snapshot when timing creation.
    #[arg(long, default_value_t = 20)]
    pub create_samples: usize,
}

/// splitmix64, enough to make incompressible bytes quickly.
struct Rng(u64);

impl Rng {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 = self.0.wrapping_add(0x9e3779b97f4a7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
            let v = (z ^ (z >> 31)).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

fn id(s: &str) -> anyhow::Result<ResourceId> {
    Ok(ResourceId::new(s)?)
}

fn secs(d: Duration) -> String {
    if d < Duration::from_millis(10) {
        format!("{:.2} ms", d.as_secs_f64() * 1000.0)
    } else if d < Duration::from_secs(1) {
        format!("{:.1} ms", d.as_secs_f64() * 1000.0)
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

fn rate(bytes: u64, d: Duration) -> String {
    format!(
        "{}/s",
        human((bytes as f64 / d.as_secs_f64().max(1e-9)) as u64)
    )
}

fn row(operation: &str, time: &str, throughput: &str, comparison: &str) {
    println!("{operation:<44} {time:>10} {throughput:>14}  {comparison}");
}

fn sync_all() -> anyhow::Result<Duration> {
    let t = Instant::now();
    let status = Command::new("sync").status().context("running sync")?;
    ensure!(status.success(), "sync failed");
    Ok(t.elapsed())
}

pub fn run(args: StoreBenchArgs) -> anyhow::Result<()> {
    ensure!(args.size_mib >= 1, "--size-mib must be at least 1");
    ensure!(
        (0.0..=100.0).contains(&args.changed_percent),
        "--changed-percent must be between 0 and 100"
    );
    let work = match &args.work_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            dir.clone()
        }
        None => std::env::temp_dir().join(format!("openami-bench-{}", std::process::id())),
    };
    let result = bench(&args, &work);
    if !args.keep {
        let _ = std::fs::remove_dir_all(&work);
    }
    result
}

fn bench(args: &StoreBenchArgs, work: &Path) -> anyhow::Result<()> {
    let size = args.size_mib << 20;
    let blocks = size.div_ceil(BLOCK_SIZE as u64);
    let data = DataDir::open(&work.join("data"), true)?;
    let region = data.region("us-east-1")?;
    let store = region.store.clone();
    let volumes = region.volumes_dir.clone();
    let raw_path = work.join("source.raw");

    eprintln!("preparing a {} volume and raw file ...", human(size));
    let vol = Volume::create(
        &volumes.join("vol-bench"),
        id("vol-bench")?,
        size,
        store.clone(),
    )?;
    let mut raw = BufWriter::with_capacity(
        4 << 20,
        File::create(&raw_path).context("creating raw file")?,
    );
    let mut rng = Rng(2026);
    let mut repeated = vec![0u8; BLOCK_SIZE];
    rng.fill(&mut repeated);
    let mut block = vec![0u8; BLOCK_SIZE];
    for b in 0..blocks {
        let len = (size - b * BLOCK_SIZE as u64).min(BLOCK_SIZE as u64) as usize;
        let content: &[u8] = match b % 3 {
            0 => {
                rng.fill(&mut block);
                &block
            }
            1 => {
                block.fill(0);
                &block
            }
            _ => &repeated,
        };
        raw.write_all(&content[..len]).context("writing raw file")?;
        if b % 3 != 1 {
            vol.write_at(&content[..len], b * BLOCK_SIZE as u64)?;
        }
    }
    raw.flush().context("writing raw file")?;
    drop(raw);
    vol.flush()?;
    sync_all()?;

    // Baseline: cp --sparse=always of the same bytes.
    let copy_path = work.join("copy.raw");
    let t = Instant::now();
    let status = Command::new("cp")
        .arg("--sparse=always")
        .arg(&raw_path)
        .arg(&copy_path)
        .status()
        .context("running cp")?;
    let cp_time = t.elapsed();
    ensure!(status.success(), "cp failed");
    let cp_sync_time = cp_time + sync_all()?;
    std::fs::remove_file(&copy_path).context("removing the copy")?;
    sync_all()?;

    let full = vol.snapshot(id("snap-full")?)?;
    let full_time = full.elapsed;

    let changed = ((blocks as f64 * args.changed_percent / 100.0).round() as u64).max(1);
    let stride = (blocks / changed).max(1);
    for i in 0..changed {
        let b = (i * stride + 1) % blocks;
        let len = (size - b * BLOCK_SIZE as u64).min(BLOCK_SIZE as u64) as usize;
        rng.fill(&mut block);
        vol.write_at(&block[..len], b * BLOCK_SIZE as u64)?;
    }
    let inc = vol.snapshot(id("snap-inc")?)?;

    let mut create_times = Vec::new();
    for i in 0..args.create_samples.max(1) {
        let dir = volumes.join(format!("vol-c{i}"));
        let t = Instant::now();
        let v = Volume::create_from_snapshot(
            &dir,
            id(&format!("vol-c{i}"))?,
            &id("snap-full")?,
            None,
            store.clone(),
        )?;
        create_times.push(t.elapsed());
        v.close()?;
    }
    create_times.sort();
    let create_median = create_times[create_times.len() / 2];
    let create_max = create_times[create_times.len() - 1];

    // Read back a volume created from the full snapshot and compare with the raw file.
    let clone = Volume::open(&volumes.join("vol-c0"), store.clone())?;
    let mut source = File::open(&raw_path).context("opening raw file")?;
    let chunk = 4 << 20;
    let mut got = vec![0u8; chunk];
    let mut want = vec![0u8; chunk];
    let mut read_time = Duration::ZERO;
    let mut offset = 0u64;
    while offset < size {
        let len = (size - offset).min(chunk as u64) as usize;
        let t = Instant::now();
        clone.read_at(&mut got[..len], offset)?;
        read_time += t.elapsed();
        source
            .read_exact(&mut want[..len])
            .context("reading raw file")?;
        if got[..len] != want[..len] {
            bail!("read-back differs from the source near offset {offset}");
        }
        offset += len as u64;
    }
    clone.close()?;
    vol.close()?;
    let stats = store.stats()?;

    let full_vs_cp = cp_time.as_secs_f64() / full_time.as_secs_f64();
    let full_vs_cp_sync = cp_sync_time.as_secs_f64() / full_time.as_secs_f64();
    let inc_speedup = full_time.as_secs_f64() / inc.elapsed.as_secs_f64();
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };

    println!();
    println!(
        "openami store benchmark: {} volume, {blocks} blocks of 512 KiB (1/3 random, 1/3 zeros, 1/3 one repeated block)",
        human(size)
    );
    row("operation", "time", "throughput", "comparison");
    row(
        "cp --sparse=always (baseline)",
        &secs(cp_time),
        &rate(size, cp_time),
        "1.00x",
    );
    row(
        "cp --sparse=always + sync (durable baseline)",
        &secs(cp_sync_time),
        &rate(size, cp_sync_time),
        "",
    );
    row(
        &format!("full snapshot ({} blocks read)", full.blocks_read),
        &secs(full_time),
        &rate(size, full_time),
        &format!(
            "{full_vs_cp:.2}x cp, {full_vs_cp_sync:.2}x cp+sync (target >= 1x cp: {})",
            verdict(full_vs_cp >= 1.0)
        ),
    );
    row(
        &format!("incremental snapshot ({changed} blocks rewritten)"),
        &secs(inc.elapsed),
        "",
        &format!(
            "{inc_speedup:.1}x faster than full (target >= 30x: {})",
            verdict(inc_speedup >= 30.0)
        ),
    );
    row(
        "volume from snapshot (median)",
        &secs(create_median),
        "",
        &format!(
            "max {} of {} (target < 10 ms: {})",
            secs(create_max),
            create_times.len(),
            verdict(create_median < Duration::from_millis(10))
        ),
    );
    row(
        "read back volume from snapshot (lazy fill)",
        &secs(read_time),
        &rate(size, read_time),
        "bytes identical to the source",
    );
    println!(
        "store: {} logical, {} unique, {} stored; dedup {:.2}x, compression {:.2}x",
        human(stats.logical_bytes),
        human(stats.unique_bytes),
        human(stats.stored_bytes),
        stats.dedup_ratio(),
        stats.compression_ratio()
    );
    Ok(())
}
