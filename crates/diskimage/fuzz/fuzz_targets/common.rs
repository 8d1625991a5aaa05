//! Shared by the targets: write the input to a temp file, open it as `format`, read it.

use std::io::Write as _;

use diskimage::{DiskFormat, Limits};

pub fn run(format: DiskFormat, data: &[u8]) {
    let Ok(mut f) = tempfile::NamedTempFile::new() else {
        return;
    };
    if f.write_all(data).is_err() {
        return;
    }
    let limits = Limits {
        max_virtual_size: 1 << 40,
        max_metadata_bytes: 16 << 20,
    };
    let Ok(r) = diskimage::open_as(f.path(), Some(format), limits) else {
        return;
    };
    let size = r.virtual_size();
    let mut buf = vec![0u8; 64 << 10];
    let mut off = 0;
    // The first 4 MiB, and the last chunk.
    while off < size.min(4 << 20) {
        let n = (size - off).min(buf.len() as u64) as usize;
        let _ = r.range_is_zero(off, n as u64);
        let _ = r.read_at(off, &mut buf[..n]);
        off += n as u64;
    }
    if size > 0 {
        let n = size.min(buf.len() as u64);
        let _ = r.read_at(size - n, &mut buf[..n as usize]);
    }
}
