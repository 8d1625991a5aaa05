//! Crafted hostile and corrupt images: every refusal `open` promises, one test each (no
//! qemu-img needed). Base images come from diskimage's own writers (qcow2, vmdk, vhd) and
//! a hand-built VHDX; each test patches a few bytes.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use common::{KIB, MIB};
use diskimage::{DiskFormat, DiskWriter, Error, Limits};

fn base(dir: &Path, format: DiskFormat, size: u64) -> PathBuf {
    let path = dir.join(format!("base.{}", format.name()));
    let mut w = DiskWriter::create(&path, format, size).unwrap();
    w.write_block(0, &vec![DATA; 512 * KIB as usize]).unwrap();
    w.write_block(2 * MIB, &vec![DATA; 512 * KIB as usize])
        .unwrap();
    w.finish().unwrap();
    path
}

fn patch(path: &Path, offset: u64, bytes: &[u8]) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, offset).unwrap();
}

fn read_bytes(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    let f = std::fs::File::open(path).unwrap();
    let mut b = vec![0u8; len];
    f.read_exact_at(&mut b, offset).unwrap();
    b
}

fn be64(path: &Path, offset: u64) -> u64 {
    u64::from_be_bytes(read_bytes(path, offset, 8).try_into().unwrap())
}

fn open_err(path: &Path, limits: Limits) -> Error {
    match diskimage::open(path, limits) {
        Ok(_) => panic!("{} opened, but should have been refused", path.display()),
        Err(e) => e,
    }
}

#[track_caller]
fn refused(path: &Path, needle: &str) {
    let e = open_err(path, Limits::default());
    assert!(matches!(e, Error::Refused { .. }), "{e}");
    assert!(e.to_string().contains(needle), "{e} lacks {needle:?}");
}

#[track_caller]
fn corrupt(path: &Path, needle: &str) {
    let e = open_err(path, Limits::default());
    assert!(matches!(e, Error::Corrupt { .. }), "{e}");
    assert!(e.to_string().contains(needle), "{e} lacks {needle:?}");
}

#[track_caller]
fn too_large(path: &Path, limits: Limits) {
    let e = open_err(path, limits);
    assert!(matches!(e, Error::TooLarge { .. }), "{e}");
}

/// Opens fine, but reading the whole disk fails with a Corrupt error.
#[track_caller]
fn read_fails(path: &Path) {
    let r = diskimage::open(path, Limits::default()).unwrap();
    let mut buf = vec![0u8; r.virtual_size() as usize];
    let e = r.read_at(0, &mut buf).unwrap_err();
    assert!(matches!(e, Error::Corrupt { .. }), "{e}");
}

// ---------------------------------------------------------------- qcow2

fn qcow2(dir: &Path) -> PathBuf {
    base(dir, DiskFormat::Qcow2, 4 * MIB)
}

#[test]
fn qcow2_base_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let p = qcow2(dir.path());
    let r = diskimage::open(&p, Limits::default()).unwrap();
    let mut buf = vec![0u8; 4 * MIB as usize];
    r.read_at(0, &mut buf).unwrap();
    assert!(buf[..512 * KIB as usize].iter().all(|&b| b == DATA));
    assert!(
        buf[512 * KIB as usize..2 * MIB as usize]
            .iter()
            .all(|&b| b == 0)
    );
    assert!(r.range_is_zero(MIB, MIB).unwrap());
    assert!(matches!(
        r.read_at(4 * MIB - 1, &mut [0u8; 2]),
        Err(Error::OutOfBounds { .. })
    ));
}

#[test]
fn qcow2_backing_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = qcow2(dir.path());
    patch(&p, 8, &512u64.to_be_bytes());
    patch(&p, 16, &8u32.to_be_bytes());
    patch(&p, 512, b"base.img");
    refused(&p, "backing file \"base.img\"");
}

/// Found by the qcow2 fuzz target: a backing file name offset near `u64::MAX` overflowed
/// `offset + len` (a panic with overflow checks); the image is refused, the name unread.
#[test]
fn qcow2_backing_file_offset_overflow() {
    let dir = tempfile::tempdir().unwrap();
    let p = qcow2(dir.path());
    patch(&p, 8, &u64::MAX.to_be_bytes());
    patch(&p, 16, &8u32.to_be_bytes());
    refused(&p, "backing file");
}

#[test]
fn qcow2_external_data_file_bit() {
    let dir = tempfile::tempdir().unwrap();
    let p = qcow2(dir.path());
    patch(&p, 72, &4u64.to_be_bytes());
    refused(&p, "external data file");
}

#[test]
fn qcow2_header_extensions_naming_files() {
    for (kind, needle) in [
        (0x4441_5441u32, "external data file"),
        (0xe279_2aca, "backing file format"),
        (0x0537_be77, "encryption"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let p = qcow2(dir.path());
        let mut ext = kind.to_be_bytes().to_vec();
        ext.extend_from_slice(&8u32.to_be_bytes());
        ext.extend_from_slice(b"data.raw");
        patch(&p, 104, &ext);
        refused(&p, needle);
    }
}

#[test]
fn qcow2_unknown_incompatible_feature() {
    let dir = tempfile::tempdir().unwrap();
    let p = qcow2(dir.path());
    patch(&p, 72, &(1u64 << 9).to_be_bytes());
    refused(&p, "unknown incompatible features 0x200");
}

#[test]
fn qcow2_extended_l2_and_corrupt_bits() {
    let dir = tempfile::tempdir().unwrap();
    let p = qcow2(dir.path());
    patch(&p, 72, &(1u64 << 4).to_be_bytes());
    refused(&p, "extended L2");
    patch(&p, 72, &(1u64 << 1).to_be_bytes());
    corrupt(&p, "marked corrupt");
}

#[test]
fn qcow2_encrypted() {
    let dir = tempfile::tempdir().unwrap();
    let p = qcow2(dir.path());
    patch(&p, 32, &1u32.to_be_bytes());
    refused(&p, "encrypted");
}

#[test]
fn qcow2_virtual_size_limits() {
    let dir = tempfile::tempdir().unwrap();
    let p = qcow2(dir.path());
    too_large(
        &p,
        Limits {
            max_virtual_size: MIB,
            ..Limits::default()
        },
    );
    patch(&p, 24, &(1u64 << 60).to_be_bytes());
    too_large(&p, Limits::default());
}

#[test]
fn qcow2_l1_table_too_large() {
    let dir = tempfile::tempdir().unwrap();
    let p = qcow2(dir.path());
    // 64 TiB with 512-byte clusters needs a 16 GiB L1 table.
    patch(&p, 20, &9u32.to_be_bytes());
    patch(&p, 24, &(64u64 << 40).to_be_bytes());
    patch(&p, 36, &u32::MAX.to_be_bytes());
    too_large(&p, Limits::default());
}

#[test]
fn qcow2_l1_size_too_small_and_bad_cluster_bits() {
    let dir = tempfile::tempdir().unwrap();
    let p = qcow2(dir.path());
    patch(&p, 36, &0u32.to_be_bytes());
    corrupt(&p, "l1_size 0 is too small");
    patch(&p, 20, &30u32.to_be_bytes());
    corrupt(&p, "cluster_bits 30");
}

#[test]
fn qcow2_l2_table_past_eof_into_header_or_overlapping_l1() {
    let dir = tempfile::tempdir().unwrap();
    let p = qcow2(dir.path());
    let l1 = be64(&p, 40);
    patch(&p, l1, &((1u64 << 40) | (1 << 63)).to_be_bytes());
    corrupt(&p, "past the end of the file");
    patch(&p, l1, &512u64.to_be_bytes());
    corrupt(&p, "bad L2 offset 512");
    patch(&p, l1, &l1.to_be_bytes());
    corrupt(&p, "overlaps the L1 table");
}

#[test]
fn qcow2_data_cluster_past_eof_or_in_header() {
    let dir = tempfile::tempdir().unwrap();
    let p = qcow2(dir.path());
    let l2 = be64(&p, be64(&p, 40)) & 0x00ff_ffff_ffff_fe00;
    patch(&p, l2, &((1u64 << 40) | (1 << 63)).to_be_bytes());
    read_fails(&p);
    patch(&p, l2, &(1u64 << 63).to_be_bytes());
    patch(&p, l2, &512u64.to_be_bytes());
    read_fails(&p);
}

#[test]
fn qcow2_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let p = qcow2(dir.path());
    let len = std::fs::metadata(&p).unwrap().len();
    // Cut off the refcount structures and the L1 table.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(len - 3 * 65536)
        .unwrap();
    corrupt(&p, "past the end of the file");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(50)
        .unwrap();
    corrupt(&p, "shorter than a qcow2 header");
}

// ---------------------------------------------------------------- vmdk

fn vmdk(dir: &Path) -> PathBuf {
    base(dir, DiskFormat::Vmdk, 4 * MIB)
}

fn set_descriptor(p: &Path, text: &str) {
    let mut b = text.as_bytes().to_vec();
    b.resize(4096, 0);
    patch(p, 512, &b);
}

fn descriptor(create_type: &str, extents: &str, extra: &str) -> String {
    format!(
        "# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\n{extra}\
         createType=\"{create_type}\"\n\n{extents}\n"
    )
}

#[test]
fn vmdk_base_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let p = vmdk(dir.path());
    let r = diskimage::open(&p, Limits::default()).unwrap();
    let mut buf = vec![0u8; 512 * KIB as usize];
    r.read_at(2 * MIB, &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == DATA));
}

#[test]
fn vmdk_flat_extent_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = vmdk(dir.path());
    set_descriptor(
        &p,
        &descriptor("monolithicFlat", "RW 8192 FLAT \"/etc/passwd\" 0", ""),
    );
    refused(&p, "extent other than the embedded sparse one");
}

#[test]
fn vmdk_multiple_extents_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = vmdk(dir.path());
    set_descriptor(
        &p,
        &descriptor(
            "twoGbMaxExtentSparse",
            "RW 8192 SPARSE \"a-s001.vmdk\"\nRW 8192 SPARSE \"a-s002.vmdk\"",
            "",
        ),
    );
    refused(&p, "extent other than the embedded sparse one");
}

#[test]
fn vmdk_other_create_type_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = vmdk(dir.path());
    set_descriptor(
        &p,
        &descriptor("vmfsSparse", "RW 8192 SPARSE \"x.vmdk\"", ""),
    );
    refused(&p, "createType \"vmfsSparse\"");
    set_descriptor(&p, &descriptor("streamOptimized", "RW 8192 ZERO", ""));
    refused(&p, "extent other than");
}

#[test]
fn vmdk_parent_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = vmdk(dir.path());
    let text = descriptor("monolithicSparse", "RW 8192 SPARSE \"x.vmdk\"", "")
        .replace("parentCID=ffffffff", "parentCID=0badcafe");
    set_descriptor(&p, &text);
    refused(&p, "parent");
    set_descriptor(
        &p,
        &descriptor(
            "monolithicSparse",
            "RW 8192 SPARSE \"x.vmdk\"",
            "parentFileNameHint=\"base.vmdk\"\n",
        ),
    );
    refused(&p, "parent file");
}

#[test]
fn vmdk_extent_size_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let p = vmdk(dir.path());
    set_descriptor(
        &p,
        &descriptor("streamOptimized", "RW 9999 SPARSE \"x.vmdk\"", ""),
    );
    corrupt(&p, "differs from the capacity");
}

#[test]
fn vmdk_virtual_size_and_table_limits() {
    let dir = tempfile::tempdir().unwrap();
    let p = vmdk(dir.path());
    too_large(
        &p,
        Limits {
            max_virtual_size: MIB,
            ..Limits::default()
        },
    );
    too_large(
        &p,
        Limits {
            max_metadata_bytes: 2,
            ..Limits::default()
        },
    );
}

#[test]
fn vmdk_truncated_stream() {
    let dir = tempfile::tempdir().unwrap();
    let p = vmdk(dir.path());
    let len = std::fs::metadata(&p).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(len - 512)
        .unwrap();
    assert!(matches!(
        open_err(&p, Limits::default()),
        Error::Corrupt { .. }
    ));
}

fn vmdk_gd(p: &Path) -> u64 {
    let len = std::fs::metadata(p).unwrap().len();
    let footer = read_bytes(p, len - 1024, 512);
    u64::from_le_bytes(footer[56..64].try_into().unwrap()) * 512
}

#[test]
fn vmdk_grain_table_past_eof_or_in_header() {
    let dir = tempfile::tempdir().unwrap();
    let p = vmdk(dir.path());
    let gd = vmdk_gd(&p);
    patch(&p, gd, &0x7fff_ffffu32.to_le_bytes());
    corrupt(&p, "past the end of the file");
    patch(&p, gd, &1u32.to_le_bytes());
    corrupt(&p, "overlaps the header");
}

#[test]
fn vmdk_grain_marker_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let p = vmdk(dir.path());
    // The first grain is at sector 128: claim another LBA.
    patch(&p, 128 * 512, &999u64.to_le_bytes());
    read_fails(&p);
    // A grain pointing into the header.
    let gd = vmdk_gd(&p);
    let gt = u64::from(u32::from_le_bytes(
        read_bytes(&p, gd, 4).try_into().unwrap(),
    )) * 512;
    patch(&p, gt, &3u32.to_le_bytes());
    read_fails(&p);
}

// ---------------------------------------------------------------- vhd

fn vhd(dir: &Path) -> PathBuf {
    base(dir, DiskFormat::Vhd, 4 * MIB)
}

fn vhd_checksum(b: &[u8], field: usize) -> u32 {
    let mut sum = 0u32;
    for (i, &x) in b.iter().enumerate() {
        if !(field..field + 4).contains(&i) {
            sum = sum.wrapping_add(u32::from(x));
        }
    }
    !sum
}

/// Patches the footer (both copies) and fixes its checksum.
fn patch_footer(p: &Path, at: usize, bytes: &[u8]) {
    let len = std::fs::metadata(p).unwrap().len();
    let mut f = read_bytes(p, len - 512, 512);
    f[at..at + bytes.len()].copy_from_slice(bytes);
    let sum = vhd_checksum(&f, 64);
    f[64..68].copy_from_slice(&sum.to_be_bytes());
    patch(p, len - 512, &f);
    patch(p, 0, &f);
}

fn patch_dyn_header(p: &Path, at: usize, bytes: &[u8]) {
    let mut h = read_bytes(p, 512, 1024);
    h[at..at + bytes.len()].copy_from_slice(bytes);
    let sum = vhd_checksum(&h, 36);
    h[36..40].copy_from_slice(&sum.to_be_bytes());
    patch(p, 512, &h);
}

#[test]
fn vhd_base_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let p = vhd(dir.path());
    let r = diskimage::open(&p, Limits::default()).unwrap();
    assert_eq!(r.format(), DiskFormat::Vhd);
    assert_eq!(r.virtual_size(), 4 * MIB);
    let mut buf = vec![0u8; 512 * KIB as usize];
    r.read_at(2 * MIB, &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == DATA));
}

#[test]
fn vhd_bad_footer_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let p = vhd(dir.path());
    let len = std::fs::metadata(&p).unwrap().len();
    patch(&p, len - 512 + 40, &[0xff]);
    corrupt(&p, "footer checksum");
}

#[test]
fn vhd_differencing_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = vhd(dir.path());
    patch_footer(&p, 60, &4u32.to_be_bytes());
    refused(&p, "differencing");
}

#[test]
fn vhd_parent_locator_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = vhd(dir.path());
    patch_dyn_header(&p, 576 + 24, b"W2ku");
    refused(&p, "parent locator");
}

#[test]
fn vhd_bad_dynamic_header_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let p = vhd(dir.path());
    patch(&p, 512 + 28, &[0x7f]);
    corrupt(&p, "dynamic header checksum");
}

#[test]
fn vhd_bat_entry_past_eof_or_in_footer_copy() {
    let dir = tempfile::tempdir().unwrap();
    let p = vhd(dir.path());
    patch(&p, 1536, &0x00ff_ffffu32.to_be_bytes());
    corrupt(&p, "outside the file");
    patch(&p, 1536, &0u32.to_be_bytes());
    corrupt(&p, "outside the file");
}

#[test]
fn vhd_limits() {
    let dir = tempfile::tempdir().unwrap();
    let p = vhd(dir.path());
    too_large(
        &p,
        Limits {
            max_virtual_size: MIB,
            ..Limits::default()
        },
    );
    too_large(
        &p,
        Limits {
            max_metadata_bytes: 4,
            ..Limits::default()
        },
    );
    // BAT larger than the table-entry count claims.
    patch_dyn_header(&p, 28, &1u32.to_be_bytes());
    corrupt(&p, "BAT entries cannot cover");
}

#[test]
fn vhd_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let p = vhd(dir.path());
    let len = std::fs::metadata(&p).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(len - 512)
        .unwrap();
    corrupt(&p, "no footer");
}

#[test]
fn vhd_fixed_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("fixed.vhd");
    let mut f = vec![0u8; 512];
    f[..8].copy_from_slice(b"conectix");
    f[16..24].copy_from_slice(&u64::MAX.to_be_bytes());
    f[28..32].copy_from_slice(b"test");
    f[48..56].copy_from_slice(&(4 * MIB).to_be_bytes());
    f[60..64].copy_from_slice(&2u32.to_be_bytes());
    let sum = vhd_checksum(&f, 64);
    f[64..68].copy_from_slice(&sum.to_be_bytes());
    let mut file = vec![DATA; MIB as usize];
    file.extend_from_slice(&f);
    std::fs::write(&p, &file).unwrap();
    corrupt(&p, "truncated");
    // The same footer after the full 4 MiB is a valid fixed disk.
    let mut file = vec![DATA; 4 * MIB as usize];
    file.extend_from_slice(&f);
    std::fs::write(&p, &file).unwrap();
    let r = diskimage::open(&p, Limits::default()).unwrap();
    assert_eq!(r.virtual_size(), 4 * MIB);
}

#[test]
fn vhd_writer_refuses_more_than_2040_gib() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("big.vhd");
    let e = DiskWriter::create(&p, DiskFormat::Vhd, 2041 << 30).unwrap_err();
    assert!(
        matches!(e, Error::TooLarge { .. }) && e.to_string().contains("2040 GiB"),
        "{e}"
    );
    DiskWriter::create(&p, DiskFormat::Vhd, 2040 << 30).unwrap();
}

// ---------------------------------------------------------------- vhdx

use common::vhdx::*;

fn vhdx_file(dir: &Path, f: &[u8]) -> PathBuf {
    let p = dir.join("t.vhdx");
    std::fs::write(&p, f).unwrap();
    p
}

#[test]
fn vhdx_built_image_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let p = vhdx_file(dir.path(), &image());
    let r = diskimage::open(&p, Limits::default()).unwrap();
    assert_eq!((r.format(), r.virtual_size()), (DiskFormat::Vhdx, 4 * MIB));
    let mut buf = vec![0u8; 4 * MIB as usize];
    r.read_at(0, &mut buf).unwrap();
    let m = MIB as usize;
    assert!(buf[..m].iter().all(|&b| b == DATA));
    assert!(buf[m..3 * m].iter().all(|&b| b == 0));
    assert!(buf[3 * m..].iter().all(|&b| b == DATA + 1));
    assert!(r.range_is_zero(MIB, 2 * MIB).unwrap());
    assert!(!r.range_is_zero(0, 2 * MIB).unwrap());
}

#[test]
fn vhdx_bad_header_crc() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = image();
    f[HDR[0] + 20] ^= 1;
    f[HDR[1] + 20] ^= 1;
    corrupt(&vhdx_file(dir.path(), &f), "CRC-32C");
    // One good header is enough.
    let mut f = image();
    f[HDR[1] + 20] ^= 1;
    diskimage::open(&vhdx_file(dir.path(), &f), Limits::default()).unwrap();
}

#[test]
fn vhdx_log_to_replay_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = image();
    f[HDR[1] + 48] = 1;
    fix(&mut f);
    refused(&vhdx_file(dir.path(), &f), "log");
}

#[test]
fn vhdx_bad_region_table_crc() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = image();
    f[RT[0] + 40] ^= 1;
    f[RT[1] + 40] ^= 1;
    corrupt(&vhdx_file(dir.path(), &f), "region table");
}

#[test]
fn vhdx_unknown_required_region_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = image();
    for &rt in &RT {
        f[rt + 8] = 3;
        region(
            &mut f,
            rt,
            2,
            "11111111-2222-3333-4444-555555555555",
            5 << 20,
        );
    }
    fix(&mut f);
    refused(&vhdx_file(dir.path(), &f), "unknown required region");
}

#[test]
fn vhdx_overlapping_regions() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = image();
    for &rt in &RT {
        region(&mut f, rt, 1, META, BAT_AT as u64);
    }
    fix(&mut f);
    corrupt(&vhdx_file(dir.path(), &f), "overlaps another region");
}

#[test]
fn vhdx_parent_locator_and_parent_flag_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = image();
    f[META_AT + 10] = 4;
    item(&mut f, 3, PARENT, 65560, 8);
    refused(&vhdx_file(dir.path(), &f), "parent locator");
    let mut f = image();
    f[META_AT + 65540] = 2;
    refused(&vhdx_file(dir.path(), &f), "has a parent");
}

#[test]
fn vhdx_unknown_required_metadata_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = image();
    f[META_AT + 10] = 4;
    item(&mut f, 3, "11111111-2222-3333-4444-555555555555", 65560, 8);
    refused(
        &vhdx_file(dir.path(), &f),
        "unknown required metadata item 3",
    );
}

#[test]
fn vhdx_partially_present_block_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = image();
    bat(&mut f, 2, (5 << 20) | 7);
    refused(&vhdx_file(dir.path(), &f), "partially present");
}

#[test]
fn vhdx_bad_block_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = image();
    bat(&mut f, 2, (100 << 20) | 6);
    corrupt(&vhdx_file(dir.path(), &f), "past the end of the file");
    bat(&mut f, 2, 6);
    corrupt(&vhdx_file(dir.path(), &f), "header section");
    bat(&mut f, 2, (META_AT as u64) | 6);
    corrupt(&vhdx_file(dir.path(), &f), "overlaps a metadata region");
}

#[test]
fn vhdx_limits() {
    let dir = tempfile::tempdir().unwrap();
    let p = vhdx_file(dir.path(), &image());
    too_large(
        &p,
        Limits {
            max_virtual_size: MIB,
            ..Limits::default()
        },
    );
    // 60 TiB at 1 MiB blocks: a 480 MiB BAT.
    let mut f = image();
    f[META_AT + 65544..META_AT + 65552].copy_from_slice(&(60u64 << 40).to_le_bytes());
    too_large(&vhdx_file(dir.path(), &f), Limits::default());
}

#[test]
fn vhdx_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let f = image();
    corrupt(&vhdx_file(dir.path(), &f[..200 << 10]), "shorter");
    // Without the last data block.
    corrupt(
        &vhdx_file(dir.path(), &f[..5 << 20]),
        "past the end of the file",
    );
}

#[test]
fn detect_by_magic() {
    let dir = tempfile::tempdir().unwrap();
    for (format, path) in [
        (DiskFormat::Qcow2, qcow2(dir.path())),
        (DiskFormat::Vmdk, vmdk(dir.path())),
        (DiskFormat::Vhd, vhd(dir.path())),
        (DiskFormat::Vhdx, vhdx_file(dir.path(), &image())),
    ] {
        let f = std::fs::File::open(&path).unwrap();
        assert_eq!(diskimage::detect(&f).unwrap(), format);
        // Forced raw reads the container's bytes as they are.
        let r = diskimage::open_as(&path, Some(DiskFormat::Raw), Limits::default()).unwrap();
        assert_eq!(r.virtual_size(), std::fs::metadata(&path).unwrap().len());
    }
    let p = dir.path().join("x.raw");
    std::fs::write(&p, b"hello").unwrap();
    assert_eq!(
        diskimage::detect(&std::fs::File::open(&p).unwrap()).unwrap(),
        DiskFormat::Raw
    );
}
