//! A hand-built VHDX (qemu-img is not needed to test the VHDX reader).

pub const DATA: u8 = 0x5a;

pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

pub fn guid(s: &str) -> [u8; 16] {
    let h: Vec<u8> = s
        .replace('-', "")
        .as_bytes()
        .chunks(2)
        .map(|c| u8::from_str_radix(std::str::from_utf8(c).unwrap(), 16).unwrap())
        .collect();
    let mut g = [0u8; 16];
    g[..4].copy_from_slice(&[h[3], h[2], h[1], h[0]]);
    g[4..6].copy_from_slice(&[h[5], h[4]]);
    g[6..8].copy_from_slice(&[h[7], h[6]]);
    g[8..].copy_from_slice(&h[8..]);
    g
}

pub const BAT: &str = "2DC27766-F623-4200-9D64-115E9BFD4A08";
pub const META: &str = "8B7CA206-4790-4B9A-B8FE-575F050F886E";
pub const PARAMS: &str = "CAA16737-FA36-4D43-B3B6-33F0AA44E76B";
pub const SIZE: &str = "2FA54224-CD1B-4876-B211-5DBED83BF4B8";
pub const SECTOR: &str = "8141BF1D-A96F-4709-BA47-F233A8FAAB5F";
pub const PARENT: &str = "A8D35F2D-B30B-454D-ABF7-D3D84834AB0C";

pub const HDR: [usize; 2] = [64 << 10, 128 << 10];
pub const RT: [usize; 2] = [192 << 10, 256 << 10];
pub const BAT_AT: usize = 2 << 20;
pub const META_AT: usize = 3 << 20;

/// A 4 MiB VHDX with 1 MiB blocks: block 0 data at 4 MiB, block 1 zero, block 2 not
/// present, block 3 data at 5 MiB.
pub fn image() -> Vec<u8> {
    let mut f = vec![0u8; 6 << 20];
    f[..8].copy_from_slice(b"vhdxfile");
    for (i, &at) in HDR.iter().enumerate() {
        f[at..at + 4].copy_from_slice(b"head");
        f[at + 8..at + 16].copy_from_slice(&(i as u64 + 1).to_le_bytes());
        f[at + 66..at + 68].copy_from_slice(&1u16.to_le_bytes());
        f[at + 68..at + 72].copy_from_slice(&(1u32 << 20).to_le_bytes());
        f[at + 72..at + 80].copy_from_slice(&(1u64 << 20).to_le_bytes());
    }
    for &at in &RT {
        f[at..at + 4].copy_from_slice(b"regi");
        f[at + 8..at + 12].copy_from_slice(&2u32.to_le_bytes());
        region(&mut f, at, 0, BAT, BAT_AT as u64);
        region(&mut f, at, 1, META, META_AT as u64);
    }
    let m = META_AT;
    f[m..m + 8].copy_from_slice(b"metadata");
    f[m + 10..m + 12].copy_from_slice(&3u16.to_le_bytes());
    item(&mut f, 0, PARAMS, 65536, 8);
    item(&mut f, 1, SIZE, 65544, 8);
    item(&mut f, 2, SECTOR, 65552, 4);
    f[m + 65536..m + 65540].copy_from_slice(&(1u32 << 20).to_le_bytes());
    f[m + 65544..m + 65552].copy_from_slice(&(4u64 << 20).to_le_bytes());
    f[m + 65552..m + 65556].copy_from_slice(&512u32.to_le_bytes());
    bat(&mut f, 0, (4 << 20) | 6);
    bat(&mut f, 1, 2);
    bat(&mut f, 3, (5 << 20) | 6);
    f[4 << 20..5 << 20].fill(DATA);
    f[5 << 20..6 << 20].fill(DATA + 1);
    fix(&mut f);
    f
}

pub fn region(f: &mut [u8], rt: usize, i: usize, id: &str, off: u64) {
    let e = rt + 16 + i * 32;
    f[e..e + 16].copy_from_slice(&guid(id));
    f[e + 16..e + 24].copy_from_slice(&off.to_le_bytes());
    f[e + 24..e + 28].copy_from_slice(&(1u32 << 20).to_le_bytes());
    f[e + 28..e + 32].copy_from_slice(&1u32.to_le_bytes());
}

pub fn item(f: &mut [u8], i: usize, id: &str, off: u32, len: u32) {
    let e = META_AT + 32 + i * 32;
    f[e..e + 16].copy_from_slice(&guid(id));
    f[e + 16..e + 20].copy_from_slice(&off.to_le_bytes());
    f[e + 20..e + 24].copy_from_slice(&len.to_le_bytes());
    f[e + 24..e + 28].copy_from_slice(&6u32.to_le_bytes());
}

pub fn bat(f: &mut [u8], i: usize, entry: u64) {
    f[BAT_AT + i * 8..BAT_AT + i * 8 + 8].copy_from_slice(&entry.to_le_bytes());
}

/// Recomputes the header and region table CRCs.
pub fn fix(f: &mut [u8]) {
    for (at, len) in HDR
        .iter()
        .map(|&a| (a, 4096))
        .chain(RT.iter().map(|&a| (a, 65536)))
    {
        f[at + 4..at + 8].fill(0);
        let c = crc32c(&f[at..at + len]);
        f[at + 4..at + 8].copy_from_slice(&c.to_le_bytes());
    }
}
