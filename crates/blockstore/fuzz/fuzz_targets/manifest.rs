//! Fuzz the snapshot manifest decoder, `blockstore::Manifest::decode`.
//!
//! The first input byte picks the mode: odd, the rest is decoded as is; even, the rest is
//! taken as a manifest without its trailing SHA-256, which is appended, so that the fuzzer
//! gets past the checksum to every field check. Checks that nothing panics, and that a
//! manifest that decodes encodes back to exactly the bytes it came from (the format is
//! canonical) and respects its own invariants.
#![no_main]

use blockstore::{BLOCK_SIZE, Manifest, sha256};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let bytes = if mode & 1 == 1 {
        rest.to_vec()
    } else {
        let mut v = rest.to_vec();
        v.extend_from_slice(&sha256(rest));
        v
    };
    let Ok(m) = Manifest::decode(&bytes) else {
        return;
    };
    assert_eq!(m.encode(), bytes, "decode then encode changed the bytes");
    assert_eq!(m.volume_size % 512, 0);
    assert!(m.volume_size <= blockstore::manifest::MAX_VOLUME_SIZE);
    assert_eq!(m.block_count(), m.volume_size.div_ceil(BLOCK_SIZE as u64));
    let mut previous = None;
    for &(index, hash) in m.entries() {
        assert!(index < m.block_count());
        assert!(previous.is_none_or(|p| p < index));
        assert_eq!(m.get(index), Some(hash));
        previous = Some(index);
    }
});
