//! The VMDK streamOptimized writer (what VMware OVF tools, AWS VM Import and qemu's
//! `subformat=streamOptimized` use): 64 KiB grains, zlib-compressed, each behind a grain
//! marker, written strictly in order.
//!
//! ```text
//! sector 0       header: version 3, flags = newline test | compressed | markers,
//!                gdOffset = GD_AT_END
//! sector 1..     descriptor (createType="streamOptimized", one SPARSE extent)
//! sector 128..   per non-zero grain: marker {lba, size} + zlib data, padded to a sector
//!                per non-empty grain table, after its grains: GT marker (type 1) + GT
//! end            GD marker (type 2) + GD, footer marker (type 3) + footer (the header
//!                with the real gdOffset), end-of-stream marker (512 zero bytes)
//! ```

use std::io::Write as _;
use std::path::Path;

use super::{FLAG_COMPRESSED, FLAG_MARKERS, GD_AT_END, MAGIC};
use crate::writer::{Out, Sink};
use crate::{Error, Result};

const GRAIN_SECTORS: u64 = 128;
const GRAIN: u64 = GRAIN_SECTORS * 512;
const GTES: u64 = 512;
const OVERHEAD_SECTORS: u64 = 128;

pub(crate) struct VmdkSink {
    size: u64,
    name: String,
    /// Next free sector.
    next: u64,
    gd: Vec<u32>,
    /// The grain table being filled: (index, entries).
    gt: Option<(u64, Vec<u32>)>,
}

impl VmdkSink {
    pub fn new(size: u64, path: &Path) -> VmdkSink {
        let gt_count = size.div_ceil(GRAIN * GTES);
        VmdkSink {
            size,
            name: path
                .file_name()
                .map(|n| n.to_string_lossy().replace('"', "_"))
                .unwrap_or_else(|| "disk.vmdk".to_owned()),
            next: OVERHEAD_SECTORS,
            gd: vec![0; gt_count as usize],
            gt: None,
        }
    }

    fn sector_u32(&self, out: &Out) -> Result<u32> {
        u32::try_from(self.next).map_err(|_| Error::InvalidWrite {
            path: out.path.clone(),
            what: "the vmdk grew past 2 TiB of compressed data (32-bit sector offsets)".to_owned(),
        })
    }

    /// Appends `data` padded to a sector; returns its first sector.
    fn append(&mut self, out: &Out, data: &[u8], what: &str) -> Result<u64> {
        let at = self.next;
        let mut buf = data.to_vec();
        buf.resize(data.len().div_ceil(512) * 512, 0);
        out.write(at * 512, &buf, what)?;
        self.next += buf.len() as u64 / 512;
        Ok(at)
    }

    fn marker(&mut self, out: &Out, value: u64, kind: u32) -> Result<()> {
        let mut m = [0u8; 512];
        m[0..8].copy_from_slice(&value.to_le_bytes());
        m[12..16].copy_from_slice(&kind.to_le_bytes());
        self.append(out, &m, "marker").map(|_| ())
    }

    fn flush_gt(&mut self, out: &Out) -> Result<()> {
        if let Some((index, entries)) = self.gt.take() {
            self.marker(out, GTES * 4 / 512, 1)?;
            let sector = self.sector_u32(out)?;
            let bytes: Vec<u8> = entries.iter().flat_map(|e| e.to_le_bytes()).collect();
            self.append(out, &bytes, "grain table")?;
            self.gd[index as usize] = sector;
        }
        Ok(())
    }

    fn header(&self, gd_offset: u64) -> [u8; 512] {
        let mut h = [0u8; 512];
        h[0..4].copy_from_slice(&MAGIC);
        h[4..8].copy_from_slice(&3u32.to_le_bytes());
        h[8..12].copy_from_slice(&(1 | FLAG_COMPRESSED | FLAG_MARKERS).to_le_bytes());
        h[12..20].copy_from_slice(&(self.size / 512).to_le_bytes());
        h[20..28].copy_from_slice(&GRAIN_SECTORS.to_le_bytes());
        h[28..36].copy_from_slice(&1u64.to_le_bytes());
        h[36..44].copy_from_slice(&(OVERHEAD_SECTORS - 1).to_le_bytes());
        h[44..48].copy_from_slice(&(GTES as u32).to_le_bytes());
        h[56..64].copy_from_slice(&gd_offset.to_le_bytes());
        h[64..72].copy_from_slice(&OVERHEAD_SECTORS.to_le_bytes());
        h[73..77].copy_from_slice(b"\n \r\n");
        h[77..79].copy_from_slice(&1u16.to_le_bytes());
        h
    }

    fn descriptor(&self) -> String {
        let sectors = self.size / 512;
        let cylinders = (sectors / (16 * 63)).clamp(1, 16383);
        let cid = (self.size ^ std::process::id() as u64 ^ now_secs()) as u32 | 1;
        format!(
            "# Disk DescriptorFile\nversion=1\nCID={cid:08x}\nparentCID=ffffffff\n\
             createType=\"streamOptimized\"\n\n# Extent description\nRW {sectors} SPARSE \"{}\"\n\n\
             # The Disk Data Base\n#DDB\n\nddb.virtualHWVersion = \"4\"\n\
             ddb.geometry.cylinders = \"{cylinders}\"\nddb.geometry.heads = \"16\"\n\
             ddb.geometry.sectors = \"63\"\nddb.adapterType = \"ide\"\n\
             ddb.toolsInstallType = \"4\"\nddb.toolsVersion = \"2147483647\"\n",
            self.name
        )
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Sink for VmdkSink {
    fn unit_size(&self) -> u64 {
        GRAIN
    }

    fn put(&mut self, out: &Out, grain: u64, data: &[u8]) -> Result<()> {
        let index = grain / GTES;
        if self.gt.as_ref().map(|gt| gt.0) != Some(index) {
            self.flush_gt(out)?;
            self.gt = Some((index, vec![0; GTES as usize]));
        }
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(6));
        z.write_all(data)
            .and_then(|()| z.finish())
            .map_err(|e| Error::io(&out.path, "compressing a grain", e))
            .and_then(|compressed| {
                let mut buf = Vec::with_capacity(compressed.len() + 12);
                buf.extend_from_slice(&(grain * GRAIN_SECTORS).to_le_bytes());
                buf.extend_from_slice(&(compressed.len() as u32).to_le_bytes());
                buf.extend_from_slice(&compressed);
                let sector = self.sector_u32(out)?;
                self.append(out, &buf, "grain")?;
                if let Some((_, entries)) = self.gt.as_mut() {
                    entries[(grain % GTES) as usize] = sector;
                }
                Ok(())
            })
    }

    fn finish(&mut self, out: &Out) -> Result<()> {
        self.flush_gt(out)?;
        let gd_bytes: Vec<u8> = self.gd.iter().flat_map(|e| e.to_le_bytes()).collect();
        self.marker(out, (gd_bytes.len() as u64).div_ceil(512), 2)?;
        let gd_sector = self.next;
        self.append(out, &gd_bytes, "grain directory")?;
        self.marker(out, 1, 3)?;
        let footer = self.header(gd_sector);
        self.append(out, &footer, "footer")?;
        self.append(out, &[0u8; 512], "end-of-stream marker")?;

        out.write(0, &self.header(GD_AT_END), "header")?;
        let desc = self.descriptor();
        if desc.len() as u64 > (OVERHEAD_SECTORS - 1) * 512 {
            return Err(Error::InvalidWrite {
                path: out.path.clone(),
                what: "vmdk descriptor too long (file name?)".to_owned(),
            });
        }
        out.write(512, desc.as_bytes(), "descriptor")?;
        out.set_len(self.next * 512)
    }
}
