//! Mutation smoke test: small valid images of every format get a few thousand seeded
//! random corruptions (bit flips, random bytes, interesting integers) in their metadata
//! areas and elsewhere; opening and reading each must never panic, and must either fail
//! with an error or return data for in-bounds reads.
//!
//! Seeds come from diskimage's writers and the hand-built VHDX, plus qemu-img's images of
//! every input format when qemu-img is present.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::os::unix::fs::FileExt as _;
use std::path::Path;

use common::{KIB, MIB, Rng, mixed_content, qemu_img};
use diskimage::{DiskFormat, DiskWriter, Limits};

const SIZE: u64 = 3 * MIB;
const PER_SEED: usize = 250;

fn seeds(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let data = {
        let mut d = mixed_content(SIZE, 99);
        d[MIB as usize..2 * MIB as usize].fill(0);
        d
    };
    let mut out = Vec::new();
    for format in [DiskFormat::Qcow2, DiskFormat::Vmdk, DiskFormat::Vhd] {
        let p = dir.join(format!("seed.{}", format.name()));
        let mut w = DiskWriter::create(&p, format, SIZE).unwrap();
        for (i, b) in data.chunks(512 * KIB as usize).enumerate() {
            w.write_block(i as u64 * 512 * KIB, b).unwrap();
        }
        w.finish().unwrap();
        out.push((format!("diskimage {format}"), std::fs::read(&p).unwrap()));
    }
    out.push(("built vhdx".to_owned(), common::vhdx::image()));
    let qemu = std::process::Command::new("qemu-img")
        .arg("--version")
        .output()
        .is_ok();
    if qemu {
        let raw = dir.join("seed.raw");
        std::fs::write(&raw, &data).unwrap();
        for (fmt, opts) in [
            ("qcow2", "compat=1.1"),
            ("qcow2", "compat=0.10,cluster_size=4096"),
            ("vmdk", "subformat=monolithicSparse"),
            ("vmdk", "subformat=streamOptimized"),
            ("vpc", "subformat=dynamic"),
            ("vhdx", "block_size=1M"),
        ] {
            let p = dir.join(format!("q.{fmt}"));
            let mut args = vec!["convert", "-f", "raw", "-O", fmt, "-o", opts];
            if fmt == "qcow2" {
                args.push("-c");
            }
            args.extend([raw.to_str().unwrap(), p.to_str().unwrap()]);
            qemu_img(&args, &[0]);
            out.push((format!("qemu {fmt} {opts}"), std::fs::read(&p).unwrap()));
        }
    } else if std::env::var("CI").as_deref() == Ok("true") {
        panic!("qemu-img is required under CI=true");
    }
    out
}

/// Where metadata lives in the seeds: headers, first clusters, vhdx regions, footers.
fn pick_offset(rng: &mut Rng, len: u64) -> u64 {
    let hot = [
        (0, 4 * KIB),
        (64 * KIB, 8 * KIB),
        (128 * KIB, 4 * KIB),
        (192 * KIB, 4 * KIB),
        (MIB, 4 * KIB),
        (2 * MIB, 4 * KIB),
        (3 * MIB, 4 * KIB),
        (3 * MIB + 64 * KIB, 64),
        (len.saturating_sub(2 * KIB), 2 * KIB),
    ];
    let off = if rng.below(4) == 0 {
        rng.below(len)
    } else {
        let (start, n) = hot[rng.below(hot.len() as u64) as usize];
        start + rng.below(n)
    };
    off.min(len - 1)
}

fn mutate(rng: &mut Rng, file: &std::fs::File, len: u64) -> Vec<(u64, Vec<u8>)> {
    let mut undo = Vec::new();
    for _ in 0..=rng.below(3) {
        let off = pick_offset(rng, len);
        let bytes: Vec<u8> = match rng.below(4) {
            0 => {
                let mut b = [0u8; 1];
                file.read_exact_at(&mut b, off).unwrap();
                vec![b[0] ^ (1 << rng.below(8))]
            }
            1 => vec![rng.next() as u8],
            2 => {
                let v: u32 = match rng.below(5) {
                    0 => 0,
                    1 => 1,
                    2 => u32::MAX,
                    3 => 0x8000_0000,
                    _ => (len / 512) as u32 + rng.below(4) as u32,
                };
                if rng.below(2) == 0 {
                    v.to_le_bytes().to_vec()
                } else {
                    v.to_be_bytes().to_vec()
                }
            }
            _ => {
                let v: u64 = match rng.below(4) {
                    0 => u64::MAX,
                    1 => 1 << (rng.below(63)),
                    2 => len + rng.below(1 << 20),
                    _ => rng.next(),
                };
                if rng.below(2) == 0 {
                    v.to_le_bytes().to_vec()
                } else {
                    v.to_be_bytes().to_vec()
                }
            }
        };
        let n = (bytes.len() as u64).min(len - off) as usize;
        let mut old = vec![0u8; n];
        file.read_exact_at(&mut old, off).unwrap();
        file.write_all_at(&bytes[..n], off).unwrap();
        undo.push((off, old));
    }
    undo
}

fn exercise(path: &Path, rng: &mut Rng) -> Result<(), diskimage::Error> {
    let limits = Limits {
        max_virtual_size: 1 << 40,
        max_metadata_bytes: 16 * MIB,
    };
    let r = diskimage::open(path, limits)?;
    let size = r.virtual_size();
    let mut buf = vec![0u8; 64 * KIB as usize];
    let mut offsets: Vec<u64> = (0..16).map(|i| i * 64 * KIB).collect();
    offsets.extend((0..8).map(|_| rng.below(size.max(1))));
    for off in offsets {
        if off >= size {
            continue;
        }
        let n = (size - off).min(buf.len() as u64) as usize;
        let _ = r.range_is_zero(off, n as u64);
        let _ = r.read_at(off, &mut buf[..n]);
    }
    // Out-of-bounds requests are errors, not panics.
    assert!(r.read_at(size, &mut [0u8; 1]).is_err());
    assert!(r.range_is_zero(u64::MAX, 2).is_err());
    Ok(())
}

#[test]
fn mutated_images_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(0x0a11_ce55);
    let mut total = 0;
    let mut opened = 0;
    for (name, bytes) in seeds(dir.path()) {
        let path = dir.path().join("mutant");
        std::fs::write(&path, &bytes).unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        // The unmutated seed opens.
        exercise(&path, &mut rng).unwrap_or_else(|e| panic!("{name}: seed does not open: {e}"));
        for i in 0..PER_SEED {
            let undo = mutate(&mut rng, &file, bytes.len() as u64);
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                exercise(&path, &mut rng)
            }));
            match result {
                Ok(Ok(())) => opened += 1,
                Ok(Err(_)) => {}
                Err(_) => panic!("{name}: mutation {i} ({undo:?} were the old bytes) panicked"),
            }
            for (off, old) in undo.into_iter().rev() {
                file.write_all_at(&old, off).unwrap();
            }
            total += 1;
        }
    }
    eprintln!("{total} mutations, {opened} still opened");
    assert!(total >= 1000);
}
