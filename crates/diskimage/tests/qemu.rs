//! Round trips against qemu-img 10: images qemu-img makes are read back through diskimage
//! and compared with the original bytes; images diskimage writes must pass `qemu-img
//! check` (where the format has one) and `qemu-img compare` with the original.
//!
//! Skipped with a message when qemu-img is missing, unless CI=true (then they fail).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::path::Path;

use common::{KIB, MIB, have_qemu, mixed_content, qemu_img, qemu_io, qemu_virtual_size, read_all};
use diskimage::{DiskFormat, DiskWriter, Limits};

/// Not a multiple of 512 KiB (nor of 2 MiB vhd blocks), but of 512 bytes.
const SIZE: u64 = 13 * MIB + 200 * KIB;

fn write_raw(dir: &Path, data: &[u8]) -> std::path::PathBuf {
    let p = dir.join("orig.raw");
    std::fs::write(&p, data).unwrap();
    p
}

/// Converts the original with qemu-img, optionally changes it with qemu-io, then reads it
/// through diskimage and compares.
fn read_case(
    fmt: &str,
    opts: &[&str],
    expect: DiskFormat,
    sparse: bool,
    seed: u64,
    post: Option<(&str, u64, u64)>,
) {
    if !have_qemu() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut data = mixed_content(SIZE, seed);
    // A long zero run, so that even 2 MiB vhd blocks are left unallocated.
    data[6 * MIB as usize..10 * MIB as usize].fill(0);
    let raw = write_raw(dir.path(), &data);
    let img = dir.path().join(format!("img.{fmt}"));
    let mut args = vec!["convert", "-f", "raw", "-O", fmt];
    args.extend_from_slice(opts);
    args.extend([raw.to_str().unwrap(), img.to_str().unwrap()]);
    qemu_img(&args, &[0]);
    if let Some((cmd, off, len)) = post {
        qemu_io(fmt, &img, &format!("{cmd} {off} {len}"));
        data[off as usize..(off + len) as usize].fill(0);
    }
    let reader = diskimage::open(&img, Limits::default()).unwrap();
    assert_eq!(reader.format(), expect);
    assert_eq!(
        reader.virtual_size(),
        qemu_virtual_size(fmt, &img),
        "{fmt} {opts:?}"
    );
    assert!(reader.virtual_size() >= SIZE);
    let (got, zero_chunks) = read_all(reader.as_ref(), 512 * KIB);
    let n = data.len();
    assert!(
        got[..n] == data[..],
        "{fmt} {opts:?}: bytes differ from the original"
    );
    assert!(got[n..].iter().all(|&b| b == 0));
    if sparse {
        assert!(
            zero_chunks > 0,
            "{fmt} {opts:?}: no range reported unallocated"
        );
    }
    // Unaligned small reads agree too.
    let mut buf = vec![0u8; 70_000];
    for off in [1u64, 65_535, 511 * KIB + 7, SIZE - 70_000] {
        reader.read_at(off, &mut buf).unwrap();
        assert!(buf[..] == got[off as usize..off as usize + buf.len()]);
    }
}

#[test]
fn read_qcow2_v3() {
    read_case("qcow2", &[], DiskFormat::Qcow2, true, 1, None);
}

#[test]
fn read_qcow2_v2() {
    read_case(
        "qcow2",
        &["-o", "compat=0.10"],
        DiskFormat::Qcow2,
        true,
        2,
        None,
    );
}

#[test]
fn read_qcow2_small_clusters() {
    read_case(
        "qcow2",
        &["-o", "cluster_size=4096"],
        DiskFormat::Qcow2,
        true,
        3,
        None,
    );
}

#[test]
fn read_qcow2_big_clusters() {
    read_case(
        "qcow2",
        &["-o", "cluster_size=2M"],
        DiskFormat::Qcow2,
        true,
        4,
        None,
    );
}

#[test]
fn read_qcow2_compressed_deflate() {
    read_case("qcow2", &["-c"], DiskFormat::Qcow2, true, 5, None);
}

#[test]
fn read_qcow2_compressed_zstd() {
    read_case(
        "qcow2",
        &["-c", "-o", "compression_type=zstd"],
        DiskFormat::Qcow2,
        true,
        6,
        None,
    );
}

#[test]
fn read_qcow2_zero_clusters() {
    // write -z on allocated clusters sets the v3 zero flag.
    read_case(
        "qcow2",
        &["-S", "0"],
        DiskFormat::Qcow2,
        true,
        7,
        Some(("write -z", 2 * MIB, 3 * MIB)),
    );
}

#[test]
fn read_vmdk_monolithic_sparse() {
    read_case(
        "vmdk",
        &["-o", "subformat=monolithicSparse"],
        DiskFormat::Vmdk,
        true,
        8,
        None,
    );
}

#[test]
fn read_vmdk_stream_optimized() {
    read_case(
        "vmdk",
        &["-o", "subformat=streamOptimized"],
        DiskFormat::Vmdk,
        true,
        9,
        None,
    );
}

#[test]
fn read_vhd_dynamic() {
    read_case(
        "vpc",
        &["-o", "subformat=dynamic"],
        DiskFormat::Vhd,
        true,
        10,
        None,
    );
}

#[test]
fn read_vhd_dynamic_force_size() {
    read_case(
        "vpc",
        &["-o", "subformat=dynamic,force_size=on"],
        DiskFormat::Vhd,
        true,
        11,
        None,
    );
}

#[test]
fn read_vhd_fixed() {
    read_case(
        "vpc",
        &["-o", "subformat=fixed"],
        DiskFormat::Vhd,
        false,
        12,
        None,
    );
}

#[test]
fn read_vhdx() {
    // 32 MiB blocks: no block of a 13 MiB disk is all zeros.
    read_case("vhdx", &[], DiskFormat::Vhdx, false, 13, None);
}

#[test]
fn read_vhdx_small_blocks() {
    read_case(
        "vhdx",
        &["-o", "block_size=1M"],
        DiskFormat::Vhdx,
        true,
        14,
        None,
    );
}

#[test]
fn read_vhdx_zeroed_blocks() {
    read_case(
        "vhdx",
        &["-o", "block_size=1M"],
        DiskFormat::Vhdx,
        true,
        15,
        Some(("write -z", 4 * MIB, 2 * MIB)),
    );
}

#[test]
fn detect_raw() {
    let dir = tempfile::tempdir().unwrap();
    let data = mixed_content(3 * MIB, 16);
    let raw = write_raw(dir.path(), &data);
    let reader = diskimage::open(&raw, Limits::default()).unwrap();
    assert_eq!(reader.format(), DiskFormat::Raw);
    let (got, _) = read_all(reader.as_ref(), 512 * KIB);
    assert!(got == data);
}

/// Writes the original through DiskWriter in 512 KiB blocks (zero blocks skipped).
fn write_image(data: &[u8], path: &Path, format: DiskFormat) {
    let mut w = DiskWriter::create(path, format, data.len() as u64).unwrap();
    for (i, block) in data.chunks(512 * KIB as usize).enumerate() {
        if block.iter().any(|&b| b != 0) {
            w.write_block(i as u64 * 512 * KIB, block).unwrap();
        }
    }
    w.finish().unwrap();
}

fn write_case(format: DiskFormat, check: bool, size: u64, seed: u64) {
    if !have_qemu() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = mixed_content(size, seed);
    let raw = write_raw(dir.path(), &data);
    let img = dir.path().join(format!("out.{}", format.name()));
    write_image(&data, &img, format);
    let (imgs, raws) = (img.to_str().unwrap(), raw.to_str().unwrap());
    if check {
        let out = qemu_img(&["check", "-f", format.qemu_name(), imgs], &[0]);
        assert!(out.contains("No errors"), "{out}");
    }
    let out = qemu_img(
        &["compare", "-f", "raw", "-F", format.qemu_name(), raws, imgs],
        &[0],
    );
    assert!(out.contains("Images are identical"), "{out}");
    assert!(qemu_virtual_size(format.qemu_name(), &img) >= size);
    // And diskimage reads its own output.
    let reader = diskimage::open(&img, Limits::default()).unwrap();
    assert_eq!(reader.format(), format);
    let (got, _) = read_all(reader.as_ref(), 512 * KIB);
    assert!(got[..data.len()] == data[..]);
}

#[test]
fn write_raw_compare() {
    write_case(DiskFormat::Raw, false, SIZE + 100, 20);
}

#[test]
fn write_qcow2_check_compare() {
    write_case(DiskFormat::Qcow2, true, SIZE, 21);
}

#[test]
fn write_qcow2_spanning_l2_tables() {
    // 600 MiB virtual, mostly empty: two L2 tables (512 MiB each at 64 KiB clusters).
    if !have_qemu() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("big.qcow2");
    let size = 600 * MIB;
    let mut w = DiskWriter::create(&img, DiskFormat::Qcow2, size).unwrap();
    let block = mixed_content(512 * KIB, 22);
    let offsets = [0, 511 * MIB + 512 * KIB, 512 * MIB, size - 512 * KIB];
    for &o in &offsets {
        w.write_block(o, &block).unwrap();
    }
    w.finish().unwrap();
    let out = qemu_img(&["check", "-f", "qcow2", img.to_str().unwrap()], &[0]);
    assert!(out.contains("No errors"), "{out}");
    let reader = diskimage::open(&img, Limits::default()).unwrap();
    let mut buf = vec![0u8; 512 * KIB as usize];
    for &o in &offsets {
        reader.read_at(o, &mut buf).unwrap();
        assert!(buf == block);
    }
    assert!(reader.range_is_zero(MIB, 100 * MIB).unwrap());
}

#[test]
fn write_vmdk_stream_optimized_check_compare() {
    write_case(DiskFormat::Vmdk, true, SIZE, 23);
}

#[test]
fn write_vmdk_spanning_grain_tables() {
    // 70 MiB: three grain tables (32 MiB each), the middle one empty.
    if !have_qemu() {
        return;
    }
    let mut data = mixed_content(70 * MIB, 24);
    data[33 * MIB as usize..63 * MIB as usize].fill(0);
    let dir = tempfile::tempdir().unwrap();
    let raw = write_raw(dir.path(), &data);
    let img = dir.path().join("out.vmdk");
    write_image(&data, &img, DiskFormat::Vmdk);
    qemu_img(&["check", "-f", "vmdk", img.to_str().unwrap()], &[0]);
    let out = qemu_img(
        &[
            "compare",
            "-f",
            "raw",
            "-F",
            "vmdk",
            raw.to_str().unwrap(),
            img.to_str().unwrap(),
        ],
        &[0],
    );
    assert!(out.contains("Images are identical"), "{out}");
}

#[test]
fn write_vhd_compare() {
    // qemu-img check does not support vpc.
    write_case(DiskFormat::Vhd, false, SIZE, 25);
}

#[test]
fn write_empty_images() {
    if !have_qemu() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = vec![0u8; 5 * MIB as usize];
    let raw = write_raw(dir.path(), &data);
    for format in [
        DiskFormat::Qcow2,
        DiskFormat::Vmdk,
        DiskFormat::Vhd,
        DiskFormat::Raw,
    ] {
        let img = dir.path().join(format!("empty.{}", format.name()));
        write_image(&data, &img, format);
        let out = qemu_img(
            &[
                "compare",
                "-f",
                "raw",
                "-F",
                format.qemu_name(),
                raw.to_str().unwrap(),
                img.to_str().unwrap(),
            ],
            &[0],
        );
        assert!(out.contains("Images are identical"), "{format}: {out}");
        let reader = diskimage::open(&img, Limits::default()).unwrap();
        assert!(reader.range_is_zero(0, 5 * MIB).unwrap(), "{format}");
    }
}
