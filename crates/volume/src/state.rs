//! The volume state file: size, backing snapshot and the presence and dirty bitmaps.
//!
//! ```text
//! offset  size       field
//! 0       8          magic "OAMIVOL1"
//! 8       2          format version, u16 LE (= 1)
//! 10      2          flags, u16 LE: bit 0 = closed cleanly, bit 1 = being deleted
//! 12      4          reserved, 0
//! 16      8          volume size in bytes, u64 LE (multiple of 512)
//! 24      8          block count N = ceil(size / 524288), u64 LE
//! 32      1+V        volume id: length, then bytes of [a-z0-9-]
//! ..      1+B        backing snapshot id (length 0 = none): where absent blocks are read
//!                    from, and the parent of the volume's next snapshot
//! ..      ceil(N/8)  presence bitmap: block i's data is in the local data file
//! ..      ceil(N/8)  dirty bitmap: block i changed since the backing snapshot
//! end-32  32         SHA-256 of every preceding byte
//! ```
//!
//! The file is replaced atomically (temp file, fsync, rename, fsync directory), always
//! after the data file has been synced, so a presence bit on disk never points at data
//! that is not durable.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use blockstore::{BLOCK_SIZE, ResourceId, sha256};

use crate::bitmap::Bitmap;

const MAGIC: &[u8; 8] = b"OAMIVOL1";
const VERSION: u16 = 1;
const FLAG_CLEAN: u16 = 1;
const FLAG_DELETING: u16 = 2;

/// Everything in the state file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct VolumeState {
    pub clean: bool,
    pub deleting: bool,
    pub size: u64,
    pub id: ResourceId,
    pub backing: Option<ResourceId>,
    pub presence: Bitmap,
    pub dirty: Bitmap,
}

pub(crate) fn block_count(size: u64) -> u64 {
    size.div_ceil(BLOCK_SIZE as u64)
}

impl VolumeState {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        let mut flags = 0;
        if self.clean {
            flags |= FLAG_CLEAN;
        }
        if self.deleting {
            flags |= FLAG_DELETING;
        }
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&self.size.to_le_bytes());
        out.extend_from_slice(&block_count(self.size).to_le_bytes());
        for id in [Some(&self.id), self.backing.as_ref()] {
            let text = id.map_or("", |i| i.as_str());
            out.push(text.len() as u8);
            out.extend_from_slice(text.as_bytes());
        }
        out.extend_from_slice(self.presence.as_bytes());
        out.extend_from_slice(self.dirty.as_bytes());
        let sum = sha256(&out);
        out.extend_from_slice(&sum);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() < 32 + 2 + 32 {
            return Err("too short".into());
        }
        let (body, sum) = bytes.split_at(bytes.len() - 32);
        if sha256(body).as_slice() != sum {
            return Err("checksum mismatch".into());
        }
        if &body[..8] != MAGIC {
            return Err("bad magic".into());
        }
        let u16_at = |at: usize| u16::from_le_bytes([body[at], body[at + 1]]);
        let u64_at = |at: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&body[at..at + 8]);
            u64::from_le_bytes(a)
        };
        if u16_at(8) != VERSION {
            return Err(format!("unsupported version {}", u16_at(8)));
        }
        let flags = u16_at(10);
        let size = u64_at(16);
        let blocks = u64_at(24);
        if !size.is_multiple_of(512) || blocks != block_count(size) {
            return Err(format!("inconsistent size {size} / block count {blocks}"));
        }
        let mut pos = 32;
        let read_id = |pos: &mut usize| -> Result<Option<ResourceId>, String> {
            let len = *body.get(*pos).ok_or("truncated id")? as usize;
            let text = body.get(*pos + 1..*pos + 1 + len).ok_or("truncated id")?;
            *pos += 1 + len;
            if len == 0 {
                return Ok(None);
            }
            let text = std::str::from_utf8(text).map_err(|_| "id not UTF-8")?;
            ResourceId::new(text).map(Some).map_err(|e| e.to_string())
        };
        let id = read_id(&mut pos)?.ok_or("empty volume id")?;
        let backing = read_id(&mut pos)?;
        let map_len = Bitmap::byte_len(blocks);
        if body.len() != pos + 2 * map_len {
            return Err("bitmap length does not match the block count".into());
        }
        let presence =
            Bitmap::from_bytes(blocks, &body[pos..pos + map_len]).ok_or("bad presence bitmap")?;
        let dirty = Bitmap::from_bytes(blocks, &body[pos + map_len..]).ok_or("bad dirty bitmap")?;
        Ok(VolumeState {
            clean: flags & FLAG_CLEAN != 0,
            deleting: flags & FLAG_DELETING != 0,
            size,
            id,
            backing,
            presence,
            dirty,
        })
    }

    /// Atomically replaces `dir/name` with this state. If the temp file cannot be written
    /// in full (e.g. the disk is full) it is removed and `dir/name` stays as it was.
    pub fn write_atomically(&self, dir: &Path, name: &str) -> std::io::Result<()> {
        let temp = dir.join(format!(".{name}.tmp"));
        let written = File::create(&temp).and_then(|mut file| {
            file.write_all(&self.encode())?;
            file.sync_data()
        });
        if let Err(e) = written {
            let _ = fs::remove_file(&temp);
            return Err(e);
        }
        fs::rename(&temp, dir.join(name))?;
        File::open(dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fuzz target's seeds (`fuzz/seeds/state/`) are state files encoded by this code,
    /// behind the target's mode byte (1: as is; 0: without the checksum, which the target
    /// appends). `OPENAMI_WRITE_FUZZ_SEEDS=1` rewrites them.
    #[test]
    fn fuzz_seeds_are_encoded_state_files() {
        let mut presence = Bitmap::new(21);
        presence.set(3, true);
        presence.set(20, true);
        let mut dirty = Bitmap::new(21);
        dirty.set(3, true);
        let backed = VolumeState {
            clean: false,
            deleting: false,
            size: 20 * BLOCK_SIZE as u64 + 512,
            id: ResourceId::new("vol-0123456789abcdef0").unwrap(),
            backing: Some(ResourceId::new("snap-0123456789abcdef0").unwrap()),
            presence,
            dirty,
        };
        let fresh = VolumeState {
            clean: true,
            deleting: true,
            size: BLOCK_SIZE as u64,
            id: ResourceId::new("vol-1").unwrap(),
            backing: None,
            presence: Bitmap::new(1),
            dirty: Bitmap::new(1),
        };
        for (name, state) in [("backed", backed), ("fresh", fresh)] {
            let bytes = state.encode();
            let unsummed = &bytes[..bytes.len() - 32];
            for (suffix, seed) in [
                ("", [&[1u8][..], &bytes].concat()),
                ("-unsummed", [&[0u8][..], unsummed].concat()),
            ] {
                let path = format!(
                    "{}/fuzz/seeds/state/{name}{suffix}",
                    env!("CARGO_MANIFEST_DIR")
                );
                if std::env::var_os("OPENAMI_WRITE_FUZZ_SEEDS").is_some() {
                    std::fs::write(&path, &seed).unwrap();
                }
                assert_eq!(std::fs::read(&path).unwrap(), seed, "{path}");
            }
            assert_eq!(VolumeState::decode(&bytes).unwrap(), state);
        }
    }

    #[test]
    fn roundtrip_and_corruption() {
        let mut presence = Bitmap::new(21);
        presence.set(20, true);
        let state = VolumeState {
            clean: true,
            deleting: false,
            size: 20 * BLOCK_SIZE as u64 + 512,
            id: ResourceId::new("vol-1").unwrap(),
            backing: Some(ResourceId::new("snap-1").unwrap()),
            presence,
            dirty: Bitmap::new(21),
        };
        let bytes = state.encode();
        assert_eq!(VolumeState::decode(&bytes).unwrap(), state);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            assert!(VolumeState::decode(&bad).is_err(), "flip at {i}");
        }
        assert!(VolumeState::decode(&bytes[..bytes.len() - 1]).is_err());
    }
}
