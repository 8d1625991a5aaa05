//! A local cache of snapshots' block digests, so that an incremental upload (`--parent`)
//! need not read the parent's data back to learn its SHA-256s (EBS direct has no call that
//! returns a checksum without the block).
//!
//! Snapshots are immutable, so the digests of a snapshot this machine uploaded or
//! downloaded stay true. One file per snapshot, keyed by endpoint and region:
//!
//! ```text
//! <cache>/digests/<hex16(sha256(endpoint "\n" region))>/<snap-…>
//!   line 1:   openami-digests v1 <volume GiB>
//!   then:     <block index> <64 hex digits>      one line per allocated block
//! ```
//!
//! `<cache>` is `$OPENAMI_CACHE_DIR`, else `$XDG_CACHE_HOME/openami`, else
//! `~/.cache/openami`. Before a cached entry is used its block indexes are checked against
//! ListSnapshotBlocks (cheap: tokens only); any mismatch, unreadable file or missing cache
//! falls back to reading the parent's blocks. Files are replaced atomically.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;

use super::ClientConfig;

/// Digests of a snapshot's allocated blocks and its volume size in GiB.
pub type Digests = (HashMap<u64, [u8; 32]>, u64);

fn cache_root() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("OPENAMI_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(dir).join("openami"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("openami"))
}

fn entry_path(config: &ClientConfig, snapshot: &str) -> Option<PathBuf> {
    if snapshot.is_empty()
        || !snapshot
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return None;
    }
    let key = blockstore::sha256(format!("{}\n{}", config.endpoint, config.region).as_bytes());
    let dir: String = key.iter().take(8).map(|b| format!("{b:02x}")).collect();
    Some(cache_root()?.join("digests").join(dir).join(snapshot))
}

fn parse(text: &str) -> Option<Digests> {
    let mut lines = text.lines();
    let gib = lines
        .next()?
        .strip_prefix("openami-digests v1 ")?
        .parse()
        .ok()?;
    let mut map = HashMap::new();
    for line in lines {
        let (index, hex_digest) = line.split_once(' ')?;
        let mut digest = [0u8; 32];
        hex::decode_to_slice(hex_digest, &mut digest).ok()?;
        map.insert(index.parse().ok()?, digest);
    }
    Some((map, gib))
}

/// The cached digests of `snapshot`, if any.
pub fn load(config: &ClientConfig, snapshot: &str) -> Option<Digests> {
    let path = entry_path(config, snapshot)?;
    let text = std::fs::read_to_string(path).ok()?;
    parse(&text)
}

/// Records the digests of `snapshot` (best effort: a cache that cannot be written only
/// costs a later read of the blocks).
pub fn store(config: &ClientConfig, snapshot: &str, digests: &HashMap<u64, [u8; 32]>, gib: u64) {
    if let Err(e) = try_store(config, snapshot, digests, gib) {
        tracing::debug!(snapshot, error = %e, "cannot cache block digests");
    }
}

fn try_store(
    config: &ClientConfig,
    snapshot: &str,
    digests: &HashMap<u64, [u8; 32]>,
    gib: u64,
) -> anyhow::Result<()> {
    let path = entry_path(config, snapshot).context("no cache directory")?;
    let dir = path.parent().context("cache path")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut indexes: Vec<&u64> = digests.keys().collect();
    indexes.sort_unstable();
    let mut text = format!("openami-digests v1 {gib}\n");
    for i in indexes {
        text.push_str(&format!("{i} {}\n", hex::encode(digests[i])));
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let mut map = HashMap::new();
        map.insert(3u64, [7u8; 32]);
        map.insert(1u64, [9u8; 32]);
        let mut text = "openami-digests v1 8\n".to_string();
        for (i, d) in [(1u64, [9u8; 32]), (3, [7u8; 32])] {
            text.push_str(&format!("{i} {}\n", hex::encode(d)));
        }
        assert_eq!(parse(&text), Some((map, 8)));
        assert_eq!(parse("openami-digests v2 8\n"), None);
        assert_eq!(parse("openami-digests v1 8\n1 zz\n"), None);
    }
}
