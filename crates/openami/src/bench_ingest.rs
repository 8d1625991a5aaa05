//! `openami bench ingest`: EBS direct ingest against `cp` + `sync`.
//!
//! Starts `openami serve` (this binary) on a temp data directory on 127.0.0.1 with a fresh
//! account, writes a mixed raw file (block by block: one third random, one third zeros,
//! one third one repeated block), and measures in one run:
//!
//! | measurement                                   | compared with             | target   |
//! |-----------------------------------------------|---------------------------|----------|
//! | `openami snapshot upload` code, `--workers` N  | `cp` + `sync` of the file | ≥ 0.7×   |
//!
//! An upload runs until CompleteSnapshot answered `completed` (every acknowledged block
//! is durable by then). Like the baseline, the upload is timed [`UPLOAD_RUNS`] times and
//! the fastest counts; each run uploads its own variant of the file (same layout, other
//! bytes), so none finds its blocks already stored. Afterwards every snapshot is
//! downloaded and compared byte for byte with its file.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use blockstore::BLOCK_SIZE;
use diskimage::DiskFormat;

use crate::bench::{BASELINE_RUNS, Rng, best_cp, mixed_block, sync_all};
use crate::ebs_client::{self, Client, ClientConfig, credentials::Credentials};

const REGION: &str = "us-east-1";
/// The target: upload throughput over `cp` + `sync` throughput.
const TARGET: f64 = 0.7;
/// Uploads timed; the fastest counts, as the baseline's fastest `cp` does (the time of one
/// upload here took 2.11–3.12 s from run to run, with the machine otherwise idle).
const UPLOAD_RUNS: usize = BASELINE_RUNS;

/// Arguments of `openami bench ingest`.
#[derive(Debug, clap::Args)]
pub struct IngestBenchArgs {
    /// File size in MiB.
    #[arg(long, default_value_t = 2048)]
    pub size_mib: u64,
    /// Concurrent PutSnapshotBlock requests.
    #[arg(long, default_value_t = 64)]
    pub workers: usize,
    /// Work directory (default: a new directory under the system temp dir). Removed
    /// afterwards unless --keep.
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Keep the work directory.
    #[arg(long)]
    pub keep: bool,
}

/// `openami serve` on a temp data directory; stopped (SIGTERM) on drop.
struct Server {
    child: Child,
    endpoint: String,
}

impl Server {
    fn start(exe: &Path, work: &Path) -> anyhow::Result<Self> {
        let data = work.join("openami-data");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("finding a free loopback port")?
            .port();
        let log = File::create(work.join("server.log")).context("creating server.log")?;
        let log2 = log.try_clone().context("server.log")?;
        let child = Command::new(exe)
            .arg("serve")
            .arg("--data-dir")
            .arg(&data)
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--gc-interval",
                "0",
            ])
            .env("OPENAMI_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .context("starting openami serve")?;
        let mut server = Server {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !healthy(port) {
            if let Some(status) = server.child.try_wait()? {
                bail!(
                    "openami serve exited during startup ({status}); see {}",
                    work.join("server.log").display()
                );
            }
            ensure!(Instant::now() < deadline, "openami serve did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let pid = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn healthy(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let request = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    let mut answer = String::new();
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_to_string(&mut answer).is_ok()
        && answer.starts_with("HTTP/1.1 200")
}

fn account(exe: &Path, work: &Path) -> anyhow::Result<Credentials> {
    let out = Command::new(exe)
        .args(["account", "create", "bench", "--data-dir"])
        .arg(work.join("openami-data"))
        .output()
        .context("running openami account create")?;
    ensure!(
        out.status.success(),
        "openami account create failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let keys: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("account create output")?;
    let field = |name: &str| {
        keys[name]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("account create printed no {name}"))
    };
    Ok(Credentials {
        access_key_id: field("AccessKeyId")?,
        secret: sigv4::Secret::new(field("SecretAccessKey")?),
        session_token: None,
    })
}

/// Writes variant `variant` of the mixed file: block i is random, zero or the repeated
/// block by i mod 3 (variants differ in their random bytes and repeated block).
fn make_file(path: &Path, size: u64, variant: u64) -> anyhow::Result<()> {
    let mut out = BufWriter::new(File::create(path).context("creating the source file")?);
    let mut rng = Rng(0x0a31_2026 + variant * 0x9e37_79b9);
    let mut repeated = vec![0u8; BLOCK_SIZE];
    rng.fill(&mut repeated);
    let mut block = vec![0u8; BLOCK_SIZE];
    let zero = vec![0u8; BLOCK_SIZE];
    for i in 0..size.div_ceil(BLOCK_SIZE as u64) {
        let len = (size - i * BLOCK_SIZE as u64).min(BLOCK_SIZE as u64) as usize;
        let data = mixed_block(i, &mut rng, &mut block, &repeated).unwrap_or(&zero);
        out.write_all(&data[..len])?;
    }
    out.into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()
        .context("writing the source file")?;
    Ok(())
}

/// `src` equals the first `src.len()` bytes of `down`, and the rest of `down` is zeros.
fn same_then_zeros(src: &Path, down: &Path) -> anyhow::Result<()> {
    let mut a = std::io::BufReader::new(File::open(src)?);
    let mut b = std::io::BufReader::new(File::open(down)?);
    let (mut x, mut y) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    let mut offset = 0u64;
    loop {
        let n = read_full(&mut a, &mut x)?;
        if n == 0 {
            break;
        }
        ensure!(read_full(&mut b, &mut y[..n])? == n, "download is short");
        if x[..n] != y[..n] {
            bail!("download differs from the source near offset {offset}");
        }
        offset += n as u64;
    }
    loop {
        let n = read_full(&mut b, &mut y)?;
        if n == 0 {
            return Ok(());
        }
        ensure!(
            y[..n].iter().all(|&v| v == 0),
            "non-zero bytes past the source's end"
        );
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> anyhow::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn rate(bytes: u64, d: Duration) -> String {
    format!(
        "{:.1} MiB/s",
        bytes as f64 / (1 << 20) as f64 / d.as_secs_f64()
    )
}

/// Runs the benchmark.
pub fn run(args: IngestBenchArgs) -> anyhow::Result<()> {
    ensure!(args.size_mib > 0, "--size-mib must be at least 1");
    ensure!(args.workers > 0, "--workers must be at least 1");
    let temp = match &args.work_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).context("creating the work directory")?;
            None
        }
        None => Some(
            tempfile::Builder::new()
                .prefix("openami-bench-ingest-")
                .tempdir()
                .context("creating a temp dir")?,
        ),
    };
    let work = match (&temp, &args.work_dir) {
        (Some(t), _) => t.path().to_path_buf(),
        (None, Some(dir)) => dir.clone(),
        (None, None) => bail!("no work directory"),
    };
    let result = bench(&args, &work);
    if args.keep {
        if let Some(t) = temp {
            let _ = t.keep();
        }
        eprintln!("work directory kept: {}", work.display());
    } else if args.work_dir.is_some() {
        let _ = std::fs::remove_dir_all(&work);
    }
    result
}

fn bench(args: &IngestBenchArgs, work: &Path) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("finding this executable")?;
    let size = args.size_mib << 20;
    // One variant of the file per upload: the same layout, other bytes, so that no upload
    // finds its blocks stored by an earlier one.
    let sources: Vec<PathBuf> = (0..UPLOAD_RUNS)
        .map(|i| work.join(format!("source-{i}.raw")))
        .collect();
    eprintln!(
        "preparing {UPLOAD_RUNS} variants of a {} MiB mixed file ...",
        args.size_mib
    );
    for (variant, src) in sources.iter().enumerate() {
        make_file(src, size, variant as u64)?;
    }

    // Durable-copy baseline, the best of BASELINE_RUNS.
    let (_, cp_time) = best_cp(&sources[0], &work.join("copy.raw"), &[])?;

    let server = Server::start(&exe, work)?;
    let client = Client::new(ClientConfig {
        endpoint: server.endpoint.clone(),
        region: REGION.to_string(),
        credentials: account(&exe, work)?,
        attempts: 6,
        workers: args.workers,
        progress: true,
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // Every upload first, then every read-back, so that no download's writeback runs
    // under a later upload.
    let mut uploads = Vec::new();
    for src in &sources {
        sync_all()?;
        let start = Instant::now();
        let done = runtime.block_on(ebs_client::upload::upload(
            &client,
            ebs_client::upload::UploadRequest {
                file: src,
                format: Some(DiskFormat::Raw),
                volume_size: None,
                description: Some("openami bench ingest".into()),
                parent: None,
            },
        ))?;
        let elapsed = start.elapsed();
        ensure!(
            done.status == "completed",
            "CompleteSnapshot answered {}, not completed",
            done.status
        );
        uploads.push((elapsed, done));
    }
    let down = work.join("download.raw");
    for (src, (_, done)) in sources.iter().zip(&uploads) {
        runtime
            .block_on(ebs_client::download::download(
                &client,
                &done.snapshot_id,
                &down,
                DiskFormat::Raw,
            ))
            .context("downloading the snapshot")?;
        same_then_zeros(src, &down)?;
    }
    drop(server);
    let times: Vec<String> = uploads
        .iter()
        .map(|(t, _)| format!("{:.2}", t.as_secs_f64()))
        .collect();
    let Some((upload_time, done)) = uploads.iter().min_by_key(|(t, _)| *t) else {
        bail!("no upload ran");
    };
    let upload_time = *upload_time;

    let ratio = cp_time.as_secs_f64() / upload_time.as_secs_f64();
    let verdict = if ratio >= TARGET { "met" } else { "MISSED" };
    println!(
        "\nopenami ingest benchmark: {} MiB file, {} blocks of 512 KiB (1/3 random, 1/3 zeros, 1/3 one repeated block), {} workers",
        args.size_mib,
        size.div_ceil(BLOCK_SIZE as u64),
        args.workers
    );
    println!(
        "{:<44} {:>10} {:>14}  comparison",
        "operation", "time", "throughput"
    );
    println!(
        "{:<44} {:>8.2} s {:>14}  1.00x",
        &format!("cp + sync (durable baseline, best of {BASELINE_RUNS})"),
        cp_time.as_secs_f64(),
        rate(size, cp_time)
    );
    println!(
        "{:<44} {:>8.2} s {:>14}  {ratio:.2}x cp+sync (target >= {TARGET}x: {verdict})",
        format!(
            "snapshot upload ({} blocks, best of {UPLOAD_RUNS})",
            done.changed_blocks
        ),
        upload_time.as_secs_f64(),
        rate(size, upload_time)
    );
    println!(
        "uploads (each its own variant of the file): {} s",
        times.join(", ")
    );
    println!(
        "read-back: each of the {UPLOAD_RUNS} snapshots is {size} bytes identical to its source"
    );
    Ok(())
}
