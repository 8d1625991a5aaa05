//! Helpers shared by the integration tests: a seeded PRNG, mixed-content raw disks, qemu-img.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::process::Command;

use diskimage::DiskReader;

pub mod vhdx;

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1 << 20;

/// xorshift64*: deterministic, seeded.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// Mixed content of `size` bytes: pieces of random data, zero runs, a repeated block and a
/// few single non-zero sectors inside otherwise empty space.
pub fn mixed_content(size: u64, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut data = vec![0u8; size as usize];
    let mut repeated = vec![0u8; 64 * KIB as usize];
    rng.fill(&mut repeated);
    let mut pos = 0usize;
    while pos < data.len() {
        let len = ((rng.below(16) + 1) * 32 * KIB) as usize;
        let end = (pos + len).min(data.len());
        match rng.below(4) {
            0 => rng.fill(&mut data[pos..end]),
            1 => {}
            2 => {
                for (i, b) in data[pos..end].iter_mut().enumerate() {
                    *b = repeated[i % repeated.len()];
                }
            }
            _ => {
                // Sparse: one non-zero sector in the run.
                let at = pos + (rng.below(((end - pos) / 512) as u64) * 512) as usize;
                rng.fill(&mut data[at..(at + 512).min(end)]);
            }
        }
        pos = end;
    }
    data
}

/// Whether qemu-img can be used; without it, skip unless CI=true (then fail).
pub fn have_qemu() -> bool {
    let ok = Command::new("qemu-img")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("qemu-img is required under CI=true (apt-get install qemu-utils)");
        }
        eprintln!("SKIPPED: qemu-img not found (install qemu-utils); these tests need it");
    }
    ok
}

/// Runs qemu-img with `args`; panics with its output unless it exits with one of `ok`.
pub fn qemu_img(args: &[&str], ok: &[i32]) -> String {
    let out = Command::new("qemu-img")
        .args(args)
        .output()
        .expect("running qemu-img");
    let code = out.status.code().unwrap_or(-1);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        ok.contains(&code),
        "qemu-img {args:?} exited {code}:\n{text}"
    );
    text
}

pub fn qemu_io(fmt: &str, file: &Path, cmd: &str) {
    let out = Command::new("qemu-io")
        .args(["-f", fmt, "-c", cmd])
        .arg(file)
        .output()
        .expect("running qemu-io");
    assert!(
        out.status.success(),
        "qemu-io {cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The virtual size qemu-img reports.
pub fn qemu_virtual_size(fmt: &str, file: &Path) -> u64 {
    let info = qemu_img(
        &["info", "--output=json", "-f", fmt, file.to_str().unwrap()],
        &[0],
    );
    let key = "\"virtual-size\":";
    let at = info.rfind(key).expect("virtual-size in qemu-img info") + key.len();
    info[at..]
        .trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Reads the whole virtual disk in `chunk`-byte reads, checking that ranges reported zero
/// really read as zero; returns the bytes and how many chunks were reported zero.
pub fn read_all(reader: &dyn DiskReader, chunk: u64) -> (Vec<u8>, usize) {
    let size = reader.virtual_size();
    let mut out = vec![0u8; size as usize];
    let mut zero_chunks = 0;
    let mut at = 0u64;
    while at < size {
        let n = chunk.min(size - at);
        let buf = &mut out[at as usize..(at + n) as usize];
        reader.read_at(at, buf).unwrap();
        if reader.range_is_zero(at, n).unwrap() {
            assert!(
                buf.iter().all(|&b| b == 0),
                "range at {at} reported zero but has data"
            );
            zero_chunks += 1;
        }
        at += n;
    }
    (out, zero_chunks)
}
