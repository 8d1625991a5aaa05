//! Snapshot manifests: what a snapshot is, in a versioned, checksummed binary format.
//!
//! A manifest lists every non-zero block of the volume at the moment of the snapshot. Blocks
//! it does not list read as zeros. It is self-contained (a child repeats the entries it
//! inherits from its parent), so reading a snapshot never needs its ancestors; the parent
//! id is kept for lineage (incremental uploads, ListChangedBlocks).
//!
//! ```text
//! offset  size        field
//! 0       8           magic "OAMIMAN1"
//! 8       2           format version, u16 LE (= 1)
//! 10      2           reserved, 0
//! 12      4           block size in bytes, u32 LE (= 524288)
//! 16      8           volume size in bytes, u64 LE (multiple of 512)
//! 24      8           created at, milliseconds since the Unix epoch, u64 LE
//! 32      1           snapshot id length S (1..=64), then S bytes of [a-z0-9-]
//! 33+S    1           parent id length P (0 = no parent), then P bytes
//! ..      8           entry count N, u64 LE
//! ..      40 × N      entries: block index u64 LE, SHA-256 of the block (32 bytes);
//!                     indexes strictly ascending and below ceil(volume size / block size)
//! end-32  32          SHA-256 of every preceding byte
//! ```
//!
//! All integers are little-endian. Decoding checks every field and the trailing checksum,
//! and refuses anything else (including trailing bytes).

use crate::{BLOCK_SIZE, BlockHash, ResourceId, sha256};

const MAGIC: &[u8; 8] = b"OAMIMAN1";
const VERSION: u16 = 1;
const ENTRY_LEN: usize = 8 + 32;
const CHECKSUM_LEN: usize = 32;

/// Largest volume a manifest describes: 64 TiB (EBS io2 Block Express maximum).
pub const MAX_VOLUME_SIZE: u64 = 64 << 40;

/// One snapshot: volume size, lineage and the sorted map of non-zero blocks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// This snapshot's id.
    pub snapshot_id: ResourceId,
    /// The snapshot this one was taken incrementally from, if any.
    pub parent_id: Option<ResourceId>,
    /// Volume size in bytes.
    pub volume_size: u64,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    entries: Vec<(u64, BlockHash)>,
}

impl Manifest {
    /// Builds a manifest; `entries` may be in any order but must not repeat an index.
    pub fn new(
        snapshot_id: ResourceId,
        parent_id: Option<ResourceId>,
        volume_size: u64,
        created_at_ms: u64,
        mut entries: Vec<(u64, BlockHash)>,
    ) -> Result<Self, String> {
        entries.sort_unstable_by_key(|(index, _)| *index);
        let manifest = Manifest {
            snapshot_id,
            parent_id,
            volume_size,
            created_at_ms,
            entries,
        };
        manifest.validate()?;
        Ok(manifest)
    }

    /// Number of block slots the volume has (the last may be partial).
    pub fn block_count(&self) -> u64 {
        self.volume_size.div_ceil(BLOCK_SIZE as u64)
    }

    /// The non-zero blocks, sorted by index.
    pub fn entries(&self) -> &[(u64, BlockHash)] {
        &self.entries
    }

    /// The hash of block `index`, or `None` if that block is all zeros.
    pub fn get(&self, index: u64) -> Option<BlockHash> {
        self.entries
            .binary_search_by_key(&index, |(i, _)| *i)
            .ok()
            .map(|pos| self.entries[pos].1)
    }

    fn validate(&self) -> Result<(), String> {
        if !self.volume_size.is_multiple_of(512) {
            return Err(format!(
                "volume size {} is not a multiple of 512",
                self.volume_size
            ));
        }
        if self.volume_size > MAX_VOLUME_SIZE {
            return Err(format!(
                "volume size {} exceeds the maximum",
                self.volume_size
            ));
        }
        let blocks = self.block_count();
        let mut previous: Option<u64> = None;
        for &(index, _) in &self.entries {
            if index >= blocks {
                return Err(format!(
                    "block index {index} beyond the volume's {blocks} blocks"
                ));
            }
            if previous.is_some_and(|p| p >= index) {
                return Err(format!("block index {index} repeated or out of order"));
            }
            previous = Some(index);
        }
        Ok(())
    }

    /// Serializes to the format drawn in the module doc.
    pub fn encode(&self) -> Vec<u8> {
        let parent = self.parent_id.as_ref().map_or("", |p| p.as_str());
        let id = self.snapshot_id.as_str();
        let mut out = Vec::with_capacity(
            64 + id.len() + parent.len() + self.entries.len() * ENTRY_LEN + CHECKSUM_LEN,
        );
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&(BLOCK_SIZE as u32).to_le_bytes());
        out.extend_from_slice(&self.volume_size.to_le_bytes());
        out.extend_from_slice(&self.created_at_ms.to_le_bytes());
        // Ids are at most 64 bytes (ResourceId), so the length fits a u8.
        out.push(id.len() as u8);
        out.extend_from_slice(id.as_bytes());
        out.push(parent.len() as u8);
        out.extend_from_slice(parent.as_bytes());
        out.extend_from_slice(&(self.entries.len() as u64).to_le_bytes());
        for (index, hash) in &self.entries {
            out.extend_from_slice(&index.to_le_bytes());
            out.extend_from_slice(&hash.0);
        }
        let checksum = sha256(&out);
        out.extend_from_slice(&checksum);
        out
    }

    /// Parses and validates the format drawn in the module doc.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() < 8 + 2 + 2 + 4 + 8 + 8 + 1 + 1 + 8 + CHECKSUM_LEN {
            return Err(format!("{} bytes is too short for a manifest", bytes.len()));
        }
        let (body, checksum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
        if sha256(body).as_slice() != checksum {
            return Err("checksum mismatch".into());
        }
        let mut r = Reader { buf: body, pos: 0 };
        if r.take(8)? != MAGIC {
            return Err("bad magic".into());
        }
        let version = r.u16()?;
        if version != VERSION {
            return Err(format!("unsupported format version {version}"));
        }
        if r.u16()? != 0 {
            return Err("reserved field is not zero".into());
        }
        let block_size = r.u32()?;
        if block_size as usize != BLOCK_SIZE {
            return Err(format!("block size {block_size} is not {BLOCK_SIZE}"));
        }
        let volume_size = r.u64()?;
        let created_at_ms = r.u64()?;
        let snapshot_id = r.id()?.ok_or("empty snapshot id")?;
        let parent_id = r.id()?;
        let count = r.u64()?;
        let remaining = (body.len() - r.pos) as u64;
        if count.checked_mul(ENTRY_LEN as u64) != Some(remaining) {
            return Err(format!(
                "entry count {count} does not match {remaining} bytes of entries"
            ));
        }
        let mut entries = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let index = r.u64()?;
            let mut hash = [0u8; 32];
            hash.copy_from_slice(r.take(32)?);
            entries.push((index, BlockHash(hash)));
        }
        let manifest = Manifest {
            snapshot_id,
            parent_id,
            volume_size,
            created_at_ms,
            entries,
        };
        manifest.validate()?;
        Ok(manifest)
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let end = end.ok_or_else(|| format!("truncated at byte {}", self.pos))?;
        let slice = &self.buf[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn id(&mut self) -> Result<Option<ResourceId>, String> {
        let len = self.take(1)?[0] as usize;
        if len == 0 {
            return Ok(None);
        }
        let bytes = self.take(len)?;
        let text = std::str::from_utf8(bytes).map_err(|_| "id is not UTF-8".to_string())?;
        ResourceId::new(text).map(Some).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> ResourceId {
        ResourceId::new(s).unwrap()
    }

    fn sample() -> Manifest {
        Manifest::new(
            id("snap-1"),
            Some(id("snap-0")),
            10 * BLOCK_SIZE as u64 + 512,
            1_700_000_000_000,
            vec![
                (3, BlockHash::of(b"c")),
                (0, BlockHash::of(b"a")),
                (10, BlockHash::of(b"z")),
            ],
        )
        .unwrap()
    }

    /// The fuzz target's seeds (`fuzz/seeds/manifest/`) are manifests encoded by this code,
    /// behind the target's mode byte (1: as is; 0: without the checksum, which the target
    /// appends). `OPENAMI_WRITE_FUZZ_SEEDS=1` rewrites them.
    #[test]
    fn fuzz_seeds_are_encoded_manifests() {
        let root = Manifest::new(id("snap-0"), None, 512, 1_700_000_000_000, vec![]).unwrap();
        for (name, m) in [("child", sample()), ("root", root)] {
            let bytes = m.encode();
            let unsummed = &bytes[..bytes.len() - CHECKSUM_LEN];
            for (suffix, seed) in [
                ("", [&[1u8][..], &bytes].concat()),
                ("-unsummed", [&[0u8][..], unsummed].concat()),
            ] {
                let path = format!(
                    "{}/fuzz/seeds/manifest/{name}{suffix}",
                    env!("CARGO_MANIFEST_DIR")
                );
                if std::env::var_os("OPENAMI_WRITE_FUZZ_SEEDS").is_some() {
                    std::fs::write(&path, &seed).unwrap();
                }
                assert_eq!(std::fs::read(&path).unwrap(), seed, "{path}");
            }
            assert_eq!(Manifest::decode(&bytes).unwrap(), m);
        }
    }

    #[test]
    fn roundtrip_and_lookup() {
        let m = sample();
        let decoded = Manifest::decode(&m.encode()).unwrap();
        assert_eq!(decoded, m);
        assert_eq!(m.block_count(), 11);
        assert_eq!(m.get(3), Some(BlockHash::of(b"c")));
        assert_eq!(m.get(4), None);
        assert_eq!(m.entries()[0].0, 0);
    }

    #[test]
    fn every_single_byte_corruption_is_detected() {
        let bytes = sample().encode();
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(Manifest::decode(&bad).is_err(), "flip at byte {i} accepted");
        }
        for len in 0..bytes.len() {
            assert!(
                Manifest::decode(&bytes[..len]).is_err(),
                "truncation to {len} accepted"
            );
        }
    }

    #[test]
    fn invalid_content_is_refused_even_with_a_good_checksum() {
        let reseal = |mut body: Vec<u8>| {
            let sum = sha256(&body);
            body.extend_from_slice(&sum);
            body
        };
        let good = sample().encode();
        let body = good[..good.len() - 32].to_vec();
        // Entry count larger than the entries present.
        let count_at = 8 + 2 + 2 + 4 + 8 + 8 + 1 + 6 + 1 + 6;
        let mut huge = body.clone();
        huge[count_at..count_at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(Manifest::decode(&reseal(huge)).is_err());
        // An index beyond the volume.
        let mut beyond = body.clone();
        let last_entry = body.len() - 40;
        beyond[last_entry..last_entry + 8].copy_from_slice(&11u64.to_le_bytes());
        assert!(Manifest::decode(&reseal(beyond)).is_err());
        // Out-of-order entries.
        assert!(
            Manifest::new(
                id("s"),
                None,
                BLOCK_SIZE as u64 * 4,
                0,
                vec![(1, BlockHash::of(b"a")), (1, BlockHash::of(b"b"))]
            )
            .is_err()
        );
        // Bad volume size.
        assert!(Manifest::new(id("s"), None, 1000, 0, vec![]).is_err());
        assert!(Manifest::new(id("s"), None, MAX_VOLUME_SIZE + 512, 0, vec![]).is_err());
    }
}
