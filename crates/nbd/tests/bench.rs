//! Throughput of this server against `qemu-nbd` on the same raw file, measured with
//! nbdcopy. Ignored by default; run with
//! `cargo test -p nbd --release --test bench -- --ignored --nocapture bench`
//! (`NBD_BENCH_MIB` sets the file size, default 512).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use nbd::{BlockDevice, Export, FileDevice, NbdServer, ServerConfig};

const RUNS: usize = 5;

fn nbdcopy(args: &[&str], from: &str, to: &str) {
    run(Command::new("nbdcopy").args(args).arg(from).arg(to));
}

struct QemuNbd(Child);

impl Drop for QemuNbd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_qemu_nbd(file: &Path, socket: &Path) -> QemuNbd {
    let child = Command::new("qemu-nbd")
        .args([
            "-f",
            "raw",
            "-x",
            "vol",
            "-e",
            "16",
            "-t",
            "--cache=writeback",
        ])
        .arg("-k")
        .arg(socket)
        .arg(file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..500 {
        if socket.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(socket.exists(), "qemu-nbd did not start");
    QemuNbd(child)
}

#[test]
#[ignore = "benchmark: run explicitly with --ignored"]
fn bench_nbdcopy_vs_qemu_nbd() {
    if !have("nbdcopy") || !have("qemu-nbd") {
        return;
    }
    let mib: usize = std::env::var("NBD_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512);
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.raw");
    let src = dir.path().join("src.raw");
    {
        let mut rng = Rng(1);
        let mut data = Vec::with_capacity(mib << 20);
        for _ in 0..mib {
            data.extend_from_slice(&rng.bytes(1 << 20));
        }
        std::fs::write(&disk, &data).unwrap();
        std::fs::write(&src, &data).unwrap();
    }
    let ours_sock = dir.path().join("ours.sock");
    let qemu_sock = dir.path().join("qemu.sock");
    let dev: Arc<dyn BlockDevice> = Arc::new(FileDevice::open(&disk, false).unwrap());
    let _ours = NbdServer::bind_unix_with(
        &ours_sock,
        [Export::new("vol", dev)],
        ServerConfig::default(),
    )
    .unwrap();
    let _qemu = start_qemu_nbd(&disk, &qemu_sock);
    let ours = url(&ours_sock, "vol");
    let qemu = url(&qemu_sock, "vol");
    let src = src.to_str().unwrap().to_string();

    println!(
        "\nnbdcopy throughput, {mib} MiB, best of {RUNS} interleaved runs (MiB/s); ratio = openami / qemu-nbd"
    );
    println!(
        "{:<34} {:>10} {:>10} {:>7}",
        "case", "openami", "qemu-nbd", "ratio"
    );
    let cases: &[(&str, &[&str], bool)] = &[
        ("read  C=1 R=64", &["-C", "1", "-R", "64"], true),
        ("read  C=4 R=64", &["-C", "4", "-R", "64"], true),
        (
            "read  C=1 R=64 4 KiB requests",
            &["-C", "1", "-R", "64", "--request-size", "4096"],
            true,
        ),
        ("write C=1 R=64", &["-C", "1", "-R", "64"], false),
        ("write C=4 R=64", &["-C", "4", "-R", "64"], false),
        (
            "write C=1 R=64 4 KiB requests",
            &["-C", "1", "-R", "64", "--request-size", "4096"],
            false,
        ),
    ];
    for (name, args, read) in cases {
        let copy = |url: &str| {
            let t = Instant::now();
            if *read {
                nbdcopy(args, url, "null:");
            } else {
                nbdcopy(args, &src, url);
            }
            t.elapsed()
        };
        // Interleaved runs, best of each: load from elsewhere hits both sides alike.
        let (mut a, mut b) = (Duration::MAX, Duration::MAX);
        for _ in 0..RUNS {
            a = a.min(copy(&ours));
            b = b.min(copy(&qemu));
        }
        let (a, b) = (mib as f64 / a.as_secs_f64(), mib as f64 / b.as_secs_f64());
        println!("{name:<34} {a:>10.0} {b:>10.0} {:>7.2}", a / b);
    }
}
