//! Serving a real `volume::Volume`: bytes written through NBD are in the volume after a
//! flush (and after reopening it); a volume created from a snapshot serves the snapshot's
//! bytes through copy-on-read.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io;
use std::process::Command;
use std::sync::Arc;

use blockstore::{BlockStore, ResourceId};
use common::*;
use nbd::{BlockDevice, Export, NbdServer};
use objstore::LocalFsStore;
use volume::Volume;

/// What the engine's adapter will look like.
struct VolumeDevice(Arc<Volume>);

fn io_err(e: volume::VolumeError) -> io::Error {
    io::Error::other(e)
}

impl BlockDevice for VolumeDevice {
    fn size(&self) -> u64 {
        self.0.size()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.0.read_at(buf, offset).map_err(io_err)
    }
    fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_at(data, offset).map_err(io_err)
    }
    fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        self.0.write_zeroes(offset, len).map_err(io_err)
    }
    fn trim(&self, offset: u64, len: u64) -> io::Result<()> {
        self.0.trim(offset, len).map_err(io_err)
    }
    fn flush(&self) -> io::Result<()> {
        self.0.flush().map_err(io_err)
    }
}

fn id(s: &str) -> ResourceId {
    ResourceId::new(s).unwrap()
}

#[test]
fn serves_a_real_volume() {
    if !have("qemu-img") || !have("qemu-io") || !have("nbdcopy") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = BlockStore::new(Arc::new(
        LocalFsStore::open(dir.path().join("objects")).unwrap(),
    ));
    let size = 12 * (1 << 20) + 512 * 1024 + 512;
    let vdir = dir.path().join("vol-a");
    let vol = Volume::create(&vdir, id("vol-a"), size as u64, Arc::clone(&store)).unwrap();
    let socket = dir.path().join("a.sock");
    let dev: Arc<dyn BlockDevice> = Arc::new(VolumeDevice(Arc::clone(&vol)));
    let server = NbdServer::bind_unix(&socket, [("vol-a", dev)]).unwrap();
    let url_a = url(&socket, "vol-a");

    let mut content = mixed_content(size, 11);
    let src = dir.path().join("src.raw");
    std::fs::write(&src, &content).unwrap();
    run(Command::new("qemu-img")
        .args(["convert", "-n", "-f", "raw", "-O", "raw"])
        .arg(&src)
        .arg(&url_a));
    // Unaligned writes across a 512 KiB block boundary, a discard, a flush.
    run(Command::new("qemu-io")
        .args(["-f", "raw", &url_a])
        .args(["-c", "write -P 0x5c 524000 2000"])
        .args(["-c", "discard 1M 512k"])
        .args(["-c", "write -z 2M 4096"])
        .args(["-c", "flush"]));
    content[524000..526000].fill(0x5c);
    content[1 << 20..(1 << 20) + 512 * 1024].fill(0);
    content[2 << 20..(2 << 20) + 4096].fill(0);
    let mut got = vec![0u8; size];
    vol.read_at(&mut got, 0).unwrap();
    assert!(got == content, "volume bytes differ after flush");
    let expected = dir.path().join("expected.raw");
    std::fs::write(&expected, &content).unwrap();
    let out = run(Command::new("qemu-img")
        .args(["compare", "-f", "raw", "-F", "raw"])
        .arg(&expected)
        .arg(&url_a));
    assert!(stdout(&out).contains("Images are identical"));

    server.shutdown();
    drop(vol);
    // Reopened from disk: the flushed bytes are there.
    let vol = Volume::open(&vdir, Arc::clone(&store)).unwrap();
    let mut got = vec![0u8; size];
    vol.read_at(&mut got, 0).unwrap();
    assert!(got == content, "volume bytes differ after reopen");

    // Snapshot, then a volume created from it: served bytes come from the snapshot.
    let summary = vol.begin_snapshot(id("snap-1")).unwrap().run().unwrap();
    let _ = summary;
    let bdir = dir.path().join("vol-b");
    let volb =
        Volume::create_from_snapshot(&bdir, id("vol-b"), &id("snap-1"), None, Arc::clone(&store))
            .unwrap();
    assert_eq!(
        volb.block_counts().0,
        0,
        "nothing is local before the first read"
    );
    let socket_b = dir.path().join("b.sock");
    let devb: Arc<dyn BlockDevice> = Arc::new(VolumeDevice(Arc::clone(&volb)));
    let server_b = NbdServer::bind_unix_with(
        &socket_b,
        [Export::new("vol-b", devb)],
        nbd::ServerConfig::default(),
    )
    .unwrap();
    let dst = dir.path().join("dst.raw");
    run(Command::new("nbdcopy")
        .args(["--connections", "4", "--requests", "32"])
        .arg(url(&socket_b, "vol-b"))
        .arg(&dst));
    assert!(
        std::fs::read(&dst).unwrap() == content,
        "snapshot-backed volume served other bytes"
    );
    assert!(
        volb.block_counts().0 > 0,
        "reads filled blocks (copy-on-read)"
    );
    server_b.shutdown();
}
