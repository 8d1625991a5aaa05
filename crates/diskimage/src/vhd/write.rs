//! The dynamic VHD writer: 2 MiB blocks, creator `oami` (so qemu and Hyper-V take the
//! footer's current size, not the CHS geometry, as the disk size).
//!
//! ```text
//! 0       footer copy (512)
//! 512     dynamic header (1024)
//! 1536    BAT (4 bytes per block, padded to 512), written in finish
//! ...     blocks, in stream order: sector bitmap (512 bytes of 0xff) + 2 MiB data
//! end     footer
//! ```

use super::{COOKIE, DYN_COOKIE, UNALLOCATED, checksum};
use crate::Result;
use crate::writer::{Out, Sink};

const BLOCK: u64 = 2 << 20;
const HEADER_AT: u64 = 512;
const BAT_AT: u64 = 1536;
/// Seconds from the Unix epoch to 2000-01-01, the VHD epoch.
const VHD_EPOCH: u64 = 946_684_800;

pub(crate) struct VhdSink {
    size: u64,
    bat: Vec<u32>,
    /// Next free byte offset.
    next: u64,
}

impl VhdSink {
    pub fn new(size: u64) -> VhdSink {
        let blocks = size.div_ceil(BLOCK);
        VhdSink {
            size,
            bat: vec![UNALLOCATED; blocks as usize],
            next: BAT_AT + (blocks * 4).div_ceil(512) * 512,
        }
    }

    fn footer(&self) -> [u8; 512] {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(VHD_EPOCH);
        let mut f = [0u8; 512];
        f[0..8].copy_from_slice(COOKIE);
        f[8..12].copy_from_slice(&2u32.to_be_bytes());
        f[12..16].copy_from_slice(&0x0001_0000u32.to_be_bytes());
        f[16..24].copy_from_slice(&HEADER_AT.to_be_bytes());
        f[24..28].copy_from_slice(&(now.saturating_sub(VHD_EPOCH) as u32).to_be_bytes());
        f[28..32].copy_from_slice(b"oami");
        f[32..36].copy_from_slice(&0x0001_0000u32.to_be_bytes());
        f[36..40].copy_from_slice(b"Wi2k");
        f[40..48].copy_from_slice(&self.size.to_be_bytes());
        f[48..56].copy_from_slice(&self.size.to_be_bytes());
        let (c, h, s) = geometry(self.size / 512);
        f[56..58].copy_from_slice(&c.to_be_bytes());
        f[58] = h;
        f[59] = s;
        f[60..64].copy_from_slice(&3u32.to_be_bytes());
        let seed = now ^ self.size.rotate_left(17) ^ u64::from(std::process::id()).rotate_left(40);
        f[68..76].copy_from_slice(&seed.to_be_bytes());
        f[76..84].copy_from_slice(&(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)).to_be_bytes());
        let sum = checksum(&f, 64);
        f[64..68].copy_from_slice(&sum.to_be_bytes());
        f
    }

    fn header(&self) -> [u8; 1024] {
        let mut h = [0u8; 1024];
        h[0..8].copy_from_slice(DYN_COOKIE);
        h[8..16].copy_from_slice(&u64::MAX.to_be_bytes());
        h[16..24].copy_from_slice(&BAT_AT.to_be_bytes());
        h[24..28].copy_from_slice(&0x0001_0000u32.to_be_bytes());
        h[28..32].copy_from_slice(&(self.bat.len() as u32).to_be_bytes());
        h[32..36].copy_from_slice(&(BLOCK as u32).to_be_bytes());
        let sum = checksum(&h, 36);
        h[36..40].copy_from_slice(&sum.to_be_bytes());
        h
    }
}

/// The VHD specification's CHS geometry for `sectors` (cylinders, heads, sectors/track).
pub(crate) fn geometry(sectors: u64) -> (u16, u8, u8) {
    let total = sectors.min(65535 * 16 * 255);
    let (spt, heads, cth) = if total >= 65535 * 16 * 63 {
        (255, 16, total / 255)
    } else {
        let mut spt = 17;
        let mut cth = total / spt;
        let mut heads = cth.div_ceil(1024).max(4);
        if cth >= heads * 1024 || heads > 16 {
            spt = 31;
            heads = 16;
            cth = total / spt;
        }
        if cth >= heads * 1024 {
            spt = 63;
            heads = 16;
            cth = total / spt;
        }
        (spt, heads, cth)
    };
    ((cth / heads) as u16, heads as u8, spt as u8)
}

impl Sink for VhdSink {
    fn unit_size(&self) -> u64 {
        BLOCK
    }

    fn put(&mut self, out: &Out, block: u64, data: &[u8]) -> Result<()> {
        let at = self.next;
        out.write(at, &[0xffu8; 512], "sector bitmap")?;
        out.write(at + 512, data, "block")?;
        self.bat[block as usize] = (at / 512) as u32;
        self.next = at + 512 + BLOCK;
        Ok(())
    }

    fn finish(&mut self, out: &Out) -> Result<()> {
        let mut bat: Vec<u8> = self.bat.iter().flat_map(|e| e.to_be_bytes()).collect();
        bat.resize(bat.len().div_ceil(512) * 512, 0xff);
        out.write(BAT_AT, &bat, "BAT")?;
        out.write(HEADER_AT, &self.header(), "dynamic header")?;
        let footer = self.footer();
        out.write(0, &footer, "footer copy")?;
        out.write(self.next, &footer, "footer")?;
        out.set_len(self.next + 512)
    }
}
