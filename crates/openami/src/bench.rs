//! `openami bench store`: the data-plane benchmark.
//!
//! Builds a volume of mixed content (block by block: one third random, one third zeros,
//! one third one repeated block), writes the same bytes to a raw file, and measures in
//! one run:
//!
//! | measurement                           | compared with                           | target          |
//! |---------------------------------------|-----------------------------------------|-----------------|
//! | full snapshot                         | `cp --sparse=always` + `sync` of the raw file | ≥ 1.0×    |
//! | incremental snapshot after 1% rewrite | the full snapshot                       | ≥ 100× faster   |
//! | volume from snapshot                  | —                                       | < 10 ms         |
//! | lazy fill, in process (`read_at`)     | `cat` of the raw file; read-ahead off   | ≥ 3× off        |
//! | lazy fill through NBD (`nbdcopy`)     | `cat` of the raw file; read-ahead off   | — (ceiling shown) |
//! | NBD read of the filled volume         | `cat` of the raw file                   | —               |
//!
//! Next to the incremental row, the bench writes the bytes the incremental stored, one
//! new file per new block, with no store, and syncs them as the store's install does
//! ([`durable_files_floor`]): the time the disk alone asks for, and the speed-up over the
//! full snapshot that it allows.
//!
//! The `cp` baselines here and in `bench ingest` and `bench copy` are the best of three
//! runs ([`best_cp`]): on this machine one copy of the same 2 GiB file took 0.4–2.8 s from
//! run to run, and the fastest baseline makes each ratio against it conservative.
//!
//! Lazy fill reads a fresh volume created from the full snapshot, each pass on its own
//! volume, with read-ahead off (one fetch at a time on the reader's thread: the code
//! before read-ahead) and on; every pass is compared byte for byte with the raw file.
//! The NBD passes export the volume with the crate's NBD server on a unix socket and
//! read it with `nbdcopy … null:`, as a guest reads its disk (skipped without
//! `nbdcopy`, package libnbd-bin); reading the same volume again once it is filled
//! shows what the NBD transfer alone costs. Each pass starts after a `sync`, so no
//! pass pays for writing back an earlier one's dirty pages. The passes alternate (off,
//! on, off, on) and each mode's best is shown: on this machine a pass that follows
//! another ran up to 4× slower whatever its mode, so one pass each, in a fixed order,
//! measured the order more than the mode.
//!
//! The issue's lazy-fill target (≥ 3× the ~300 MiB/s it measured: a single-threaded
//! reader without read-ahead) is judged on the in-process reader with read-ahead, against
//! that stated rate ([`ISSUE_LAZY_FILL_MIB_S`]): one thread reading in order, the reader
//! the target describes. The same run's "off" pass is printed next to it, unjudged: the
//! read path it shares became several times faster itself. Through NBD the client's own
//! parallel requests overlap the fetches even with read-ahead off, so there the gain
//! read-ahead can bring is bounded by reading the same volume once filled (no fetch at
//! all): that ceiling is printed next to the NBD row.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
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
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn fill(&mut self, buf: &mut [u8]) {
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

pub(crate) fn id(s: &str) -> anyhow::Result<ResourceId> {
    Ok(ResourceId::new(s)?)
}

pub(crate) fn secs(d: Duration) -> String {
    if d < Duration::from_millis(10) {
        format!("{:.2} ms", d.as_secs_f64() * 1000.0)
    } else if d < Duration::from_secs(1) {
        format!("{:.1} ms", d.as_secs_f64() * 1000.0)
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

pub(crate) fn rate(bytes: u64, d: Duration) -> String {
    format!(
        "{}/s",
        human((bytes as f64 / d.as_secs_f64().max(1e-9)) as u64)
    )
}

pub(crate) fn row(operation: &str, time: &str, throughput: &str, comparison: &str) {
    println!("{operation:<44} {time:>10} {throughput:>14}  {comparison}");
}

pub(crate) fn sync_all() -> anyhow::Result<Duration> {
    let t = Instant::now();
    let status = Command::new("sync").status().context("running sync")?;
    ensure!(status.success(), "sync failed");
    Ok(t.elapsed())
}

/// Runs of a `cp` baseline; the fastest counts. The baseline varies a lot on a shared
/// disk (this machine's `cp` of one 2 GiB file took 0.4–2.8 s from run to run), and
/// taking its best makes every ratio against it conservative.
pub(crate) const BASELINE_RUNS: usize = 3;

/// The best of [`BASELINE_RUNS`] copies of `src` to `dst` (with `cp_args`): the fastest
/// `cp` alone and the fastest `cp` + `sync`. Each run starts and ends with a `sync`, and
/// its copy is removed.
pub(crate) fn best_cp(
    src: &Path,
    dst: &Path,
    cp_args: &[&str],
) -> anyhow::Result<(Duration, Duration)> {
    let (mut cp_best, mut durable_best) = (Duration::MAX, Duration::MAX);
    for _ in 0..BASELINE_RUNS {
        sync_all()?;
        let t = Instant::now();
        let status = Command::new("cp")
            .args(cp_args)
            .arg(src)
            .arg(dst)
            .status()
            .context("running cp")?;
        let cp_time = t.elapsed();
        ensure!(status.success(), "cp failed");
        let durable = cp_time + sync_all()?;
        std::fs::remove_file(dst).context("removing the copy")?;
        cp_best = cp_best.min(cp_time);
        durable_best = durable_best.min(durable);
    }
    sync_all()?;
    Ok((cp_best, durable_best))
}

/// Files the floor of [`durable_files_floor`] syncs at once, as the store's install does.
const FLOOR_SYNC_THREADS: usize = 8;

/// The best of [`BASELINE_RUNS`] times to write `bytes` (of `rng`'s incompressible data)
/// as `files` new files in a fresh directory under `dir` and make them durable
/// (`fdatasync` of each on [`FLOOR_SYNC_THREADS`] threads, then the directory's
/// `fsync`): what the disk alone asks for the bytes a snapshot stores, with no hashing,
/// compression or store. `None` when there is nothing to write.
fn durable_files_floor(
    dir: &Path,
    files: u64,
    bytes: u64,
    rng: &mut Rng,
) -> anyhow::Result<Option<Duration>> {
    if files == 0 || bytes == 0 {
        return Ok(None);
    }
    let per_file = usize::try_from(bytes.div_ceil(files)).context("file size")?;
    let mut content = vec![0u8; per_file];
    rng.fill(&mut content);
    let mut best = Duration::MAX;
    for run in 0..BASELINE_RUNS {
        let run_dir = dir.join(run.to_string());
        std::fs::create_dir_all(&run_dir).context("creating the floor directory")?;
        sync_all()?;
        let t = Instant::now();
        let mut handles = Vec::new();
        for i in 0..files {
            let mut f = File::create(run_dir.join(i.to_string())).context("creating a file")?;
            f.write_all(&content).context("writing a file")?;
            handles.push(f);
        }
        let per_thread = handles.len().div_ceil(FLOOR_SYNC_THREADS);
        std::thread::scope(|scope| {
            let workers: Vec<_> = handles
                .chunks(per_thread)
                .map(|chunk| scope.spawn(move || chunk.iter().try_for_each(File::sync_data)))
                .collect();
            workers.into_iter().try_for_each(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("a sync thread panicked")))
            })
        })
        .context("syncing the files")?;
        File::open(&run_dir)
            .and_then(|d| d.sync_all())
            .context("syncing the directory")?;
        best = best.min(t.elapsed());
        drop(handles);
        std::fs::remove_dir_all(&run_dir).context("removing the floor files")?;
    }
    Ok(Some(best))
}

pub(crate) fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

/// Block `b` of the mixed content: one third random, one third zeros, one third
/// `repeated`. `None` for a zero block.
pub(crate) fn mixed_block<'a>(
    b: u64,
    rng: &mut Rng,
    block: &'a mut [u8],
    repeated: &'a [u8],
) -> Option<&'a [u8]> {
    match b % 3 {
        0 => {
            rng.fill(block);
            Some(block)
        }
        1 => None,
        _ => Some(repeated),
    }
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
    let zeros = vec![0u8; BLOCK_SIZE];
    for b in 0..blocks {
        let len = (size - b * BLOCK_SIZE as u64).min(BLOCK_SIZE as u64) as usize;
        match mixed_block(b, &mut rng, &mut block, &repeated) {
            Some(content) => {
                raw.write_all(&content[..len]).context("writing raw file")?;
                vol.write_at(&content[..len], b * BLOCK_SIZE as u64)?;
            }
            None => raw.write_all(&zeros[..len]).context("writing raw file")?,
        }
    }
    raw.flush().context("writing raw file")?;
    drop(raw);
    vol.flush()?;
    sync_all()?;

    // Baseline: cp --sparse=always of the same bytes, the best of BASELINE_RUNS.
    let (cp_time, cp_sync_time) = best_cp(&raw_path, &work.join("copy.raw"), &["--sparse=always"])?;

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
    // What the disk alone takes to make the incremental's new bytes durable.
    let floor = durable_files_floor(
        &work.join("floor"),
        inc.new_blocks,
        inc.stored_bytes,
        &mut rng,
    )?;

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

    // Lazy fill: fresh volumes from the full snapshot, read-ahead off and on.
    let cat_time = time_cat(&raw_path)?;
    let fresh = |name: &str| -> anyhow::Result<Arc<Volume>> {
        Ok(Volume::create_from_snapshot(
            &volumes.join(name),
            id(name)?,
            &id("snap-full")?,
            None,
            store.clone(),
        )?)
    };
    // Off, on, off, on, each mode's best: a pass after another one runs slower whatever its
    // mode (seen at 2 GiB), so neither mode only gets the first place.
    let mut best: [Option<Duration>; 2] = [None, None];
    for (pass, read_ahead) in [false, true, false, true].into_iter().enumerate() {
        let name = format!("vol-lazy-{pass}");
        let v = fresh(&name)?;
        v.set_read_ahead(read_ahead);
        // Each pass starts with no dirty pages of an earlier pass to write back.
        sync_all()?;
        let t = Instant::now();
        read_all(&v, size)?;
        let took = t.elapsed();
        let slot = &mut best[usize::from(read_ahead)];
        *slot = Some(slot.map_or(took, |d| d.min(took)));
        compare_with_raw(&v, &raw_path, size)?;
        v.close()?;
        drop(v);
        Volume::destroy(&volumes.join(&name), &store)?;
    }
    let lazy: Vec<(&str, Duration)> = [("off", best[0]), ("on", best[1])]
        .into_iter()
        .filter_map(|(label, d)| d.map(|d| (label, d)))
        .collect();
    let mut nbd = Vec::new();
    let mut nbd_filled = None;
    if have_tool("nbdcopy") {
        // Alternating too, each mode's best (see the in-process passes).
        let mut best: [Option<Duration>; 2] = [None, None];
        for (pass, read_ahead) in [false, true, false, true].into_iter().enumerate() {
            let name = format!("vol-nbd-{pass}");
            let v = fresh(&name)?;
            v.set_read_ahead(read_ahead);
            sync_all()?;
            let elapsed = nbdcopy_volume(&v, &work.join(format!("nbd-{pass}.sock")))?;
            let slot = &mut best[usize::from(read_ahead)];
            *slot = Some(slot.map_or(elapsed, |d| d.min(elapsed)));
            if pass == 3 {
                // Again, now that every block is present: what NBD itself costs.
                sync_all()?;
                let socket = work.join("nbd-filled.sock");
                nbd_filled = Some(nbdcopy_volume(&v, &socket)?);
            }
            compare_with_raw(&v, &raw_path, size)?;
            v.close()?;
            drop(v);
            Volume::destroy(&volumes.join(&name), &store)?;
        }
        nbd = [("off", best[0]), ("on", best[1])]
            .into_iter()
            .filter_map(|(label, d)| d.map(|d| (label, d)))
            .collect();
    } else {
        eprintln!("nbdcopy not found (apt-get install libnbd-bin): skipping the NBD passes");
    }
    vol.close()?;
    let stats = store.stats()?;

    let full_vs_cp = cp_time.as_secs_f64() / full_time.as_secs_f64();
    let full_vs_cp_sync = cp_sync_time.as_secs_f64() / full_time.as_secs_f64();
    let inc_speedup = full_time.as_secs_f64() / inc.elapsed.as_secs_f64();

    println!();
    println!(
        "openami store benchmark: {} volume, {blocks} blocks of 512 KiB (1/3 random, 1/3 zeros, 1/3 one repeated block)",
        human(size)
    );
    row("operation", "time", "throughput", "comparison");
    row(
        &format!("cp --sparse=always (baseline, best of {BASELINE_RUNS})"),
        &secs(cp_time),
        &rate(size, cp_time),
        "1.00x",
    );
    row(
        &format!("cp --sparse=always + sync (best of {BASELINE_RUNS})"),
        &secs(cp_sync_time),
        &rate(size, cp_sync_time),
        "",
    );
    row(
        &format!("full snapshot ({} blocks read)", full.blocks_read),
        &secs(full_time),
        &rate(size, full_time),
        &format!(
            "{full_vs_cp_sync:.2}x cp+sync (target >= 1.0x: {}), {full_vs_cp:.2}x cp",
            verdict(full_vs_cp_sync >= 1.0)
        ),
    );
    row(
        &format!("incremental snapshot ({changed} blocks rewritten)"),
        &secs(inc.elapsed),
        "",
        &format!(
            "{inc_speedup:.1}x faster than full (target >= 100x: {})",
            verdict(inc_speedup >= 100.0)
        ),
    );
    if full.new_blocks > 0 && inc.new_blocks > 0 {
        // What the target asks against what the full snapshot's own rate gives: each new
        // block costs a hash, a file and its share of the disk, whichever snapshot it is in.
        let share = full_time.mul_f64(inc.new_blocks as f64 / full.new_blocks as f64);
        println!(
            "{:<44} the full snapshot stored {} new blocks, the incremental {}: at the full's rate \
             those take {}; the 100x target allows {}",
            "",
            full.new_blocks,
            inc.new_blocks,
            secs(share),
            secs(full_time / 100),
        );
    }
    if let Some(floor) = floor {
        println!(
            "{:<44} writing those {} blocks' {} as {} new files and syncing them, with no \
             store (best of {BASELINE_RUNS}): {}, so this disk allows at most {:.1}x",
            "",
            inc.new_blocks,
            human(inc.stored_bytes),
            inc.new_blocks,
            secs(floor),
            full_time.as_secs_f64() / floor.as_secs_f64(),
        );
    }
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
        "cat of the raw file (lazy-fill baseline)",
        &secs(cat_time),
        &rate(size, cat_time),
        "1.00x",
    );
    lazy_rows(
        "lazy fill in process, read-ahead",
        &lazy,
        size,
        cat_time,
        Judged::Target,
    );
    lazy_rows(
        "lazy fill via NBD (nbdcopy), read-ahead",
        &nbd,
        size,
        cat_time,
        Judged::Ceiling(nbd_filled),
    );
    if let Some(d) = nbd_filled {
        row(
            "NBD read of the filled volume (no fetch)",
            &secs(d),
            &rate(size, d),
            &format!("{:.2}x cat", cat_time.as_secs_f64() / d.as_secs_f64()),
        );
    }
    println!("(every lazy-fill pass read bytes identical to the source)");
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

/// The lazy-fill rate the data-plane issue measured before any of its work (MiB/s: one
/// thread reading a volume from a snapshot, no read-ahead, every block copied twice). Its
/// target is "≥ 3× today's rate": the "off" pass of the same run is not that rate, since
/// the read path it runs got faster too (1.9–2.4 GiB/s here), so it is shown but not judged.
const ISSUE_LAZY_FILL_MIB_S: f64 = 300.0;

/// How a lazy-fill row's read-ahead speed-up is judged.
enum Judged {
    /// Against the issue's target: ≥ 3× [`ISSUE_LAZY_FILL_MIB_S`].
    Target,
    /// Next to the most any fetch path could gain here: "off" over reading the filled
    /// volume (no fetch), when that was measured.
    Ceiling(Option<Duration>),
}

/// Prints one row per lazy-fill pass: rate, ratio to `cat`, and for "on" the speed-up
/// over "off", judged as `judged` says.
fn lazy_rows(what: &str, passes: &[(&str, Duration)], size: u64, cat: Duration, judged: Judged) {
    let off = passes.iter().find(|(l, _)| *l == "off").map(|(_, d)| *d);
    for (label, d) in passes {
        let vs_cat = cat.as_secs_f64() / d.as_secs_f64();
        let mut comparison = format!("{vs_cat:.2}x cat");
        if *label == "on"
            && let Some(off) = off
        {
            let speedup = off.as_secs_f64() / d.as_secs_f64();
            comparison.push_str(&format!(", {speedup:.2}x read-ahead off"));
            match judged {
                Judged::Target => {
                    let mib_s = size as f64 / (1024.0 * 1024.0) / d.as_secs_f64();
                    let gain = mib_s / ISSUE_LAZY_FILL_MIB_S;
                    comparison.push_str(&format!(
                        "; {gain:.1}x the issue's {ISSUE_LAZY_FILL_MIB_S:.0} MiB/s (target >= 3x: {})",
                        verdict(gain >= 3.0)
                    ))
                }
                Judged::Ceiling(Some(filled)) => comparison.push_str(&format!(
                    " (at most {:.2}x: the filled volume)",
                    off.as_secs_f64() / filled.as_secs_f64()
                )),
                Judged::Ceiling(None) => {}
            }
        }
        row(
            &format!("{what} {label}"),
            &secs(*d),
            &rate(size, *d),
            &comparison,
        );
    }
}

/// Time of `cat FILE > /dev/null` (the file is in the page cache: it was just written).
fn time_cat(path: &Path) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let status = Command::new("cat")
        .arg(path)
        .stdout(Stdio::null())
        .status()
        .context("running cat")?;
    ensure!(status.success(), "cat failed");
    Ok(t.elapsed())
}

/// Reads the whole volume in 4 MiB reads.
fn read_all(vol: &Volume, size: u64) -> anyhow::Result<()> {
    let chunk = 4u64 << 20;
    let mut buf = vec![0u8; chunk as usize];
    let mut offset = 0;
    while offset < size {
        let len = (size - offset).min(chunk) as usize;
        vol.read_at(&mut buf[..len], offset)?;
        offset += len as u64;
    }
    Ok(())
}

/// Compares the volume's content with the raw file.
fn compare_with_raw(vol: &Volume, raw: &Path, size: u64) -> anyhow::Result<()> {
    let mut source = File::open(raw).context("opening raw file")?;
    let chunk = 4 << 20;
    let mut got = vec![0u8; chunk];
    let mut want = vec![0u8; chunk];
    let mut offset = 0u64;
    while offset < size {
        let len = (size - offset).min(chunk as u64) as usize;
        vol.read_at(&mut got[..len], offset)?;
        source
            .read_exact(&mut want[..len])
            .context("reading raw file")?;
        if got[..len] != want[..len] {
            bail!(
                "volume {} differs from the source near offset {offset}",
                vol.id()
            );
        }
        offset += len as u64;
    }
    Ok(())
}

fn have_tool(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

/// A volume as an NBD device (what the engine exports to QEMU).
struct VolumeDevice(Arc<Volume>);

impl nbd::BlockDevice for VolumeDevice {
    fn size(&self) -> u64 {
        self.0.size()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.0.read_at(buf, offset).map_err(std::io::Error::other)
    }
    fn write_at(&self, data: &[u8], offset: u64) -> std::io::Result<()> {
        self.0.write_at(data, offset).map_err(std::io::Error::other)
    }
    fn write_zeroes(&self, offset: u64, len: u64) -> std::io::Result<()> {
        self.0
            .write_zeroes(offset, len)
            .map_err(std::io::Error::other)
    }
    fn trim(&self, offset: u64, len: u64) -> std::io::Result<()> {
        self.0.trim(offset, len).map_err(std::io::Error::other)
    }
    fn flush(&self) -> std::io::Result<()> {
        self.0.flush().map_err(std::io::Error::other)
    }
}

/// Exports `vol` on a unix socket and times `nbdcopy` reading all of it to `null:`.
fn nbdcopy_volume(vol: &Arc<Volume>, socket: &Path) -> anyhow::Result<Duration> {
    let dev: Arc<dyn nbd::BlockDevice> = Arc::new(VolumeDevice(Arc::clone(vol)));
    let server =
        nbd::NbdServer::bind_unix(socket, [("vol", dev)]).context("starting the NBD server")?;
    let url = format!("nbd+unix:///vol?socket={}", socket.display());
    let t = Instant::now();
    let out = Command::new("nbdcopy")
        .arg(&url)
        .arg("null:")
        .stdin(Stdio::null())
        .output()
        .context("running nbdcopy");
    let elapsed = t.elapsed();
    server.shutdown();
    let out = out?;
    ensure!(
        out.status.success(),
        "nbdcopy failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(elapsed)
}
