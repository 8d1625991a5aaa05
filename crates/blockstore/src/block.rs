//! Block encoding: how one 512 KiB block is stored as an object.
//!
//! ```text
//! byte 0      codec: 0 = raw, 1 = zstd
//! bytes 1..   raw:  exactly 524288 bytes of block content
//!             zstd: one zstd frame that decompresses to exactly 524288 bytes
//! ```
//!
//! A block is compressed only when that makes it smaller. Whether to try is decided on a
//! sample first (eight 4 KiB pieces spread over the block): compressing 512 KiB of random
//! data costs more than hashing it and gains nothing, so a block whose sample does not
//! shrink by at least 1/32 is stored raw without trying. Decoding never allocates more
//! than one block, whatever the stored bytes claim, and the caller always verifies the
//! decoded content against its SHA-256 address.

use std::cell::RefCell;

use crate::BlockHash;

/// The block size: 512 KiB, the EBS block size.
pub const BLOCK_SIZE: usize = 512 * 1024;

const CODEC_RAW: u8 = 0;
const CODEC_ZSTD: u8 = 1;
const ZSTD_LEVEL: i32 = 1;

/// True if every byte of `data` is zero.
pub fn is_zero(data: &[u8]) -> bool {
    // OR-folding a fixed-size chunk vectorises well; checking chunk by chunk lets a
    // non-zero block stop early.
    data.chunks(4096)
        .all(|chunk| chunk.iter().fold(0u8, |acc, &b| acc | b) == 0)
}

/// Pieces of the sample that decides whether a block is worth compressing.
const SAMPLE_PIECES: usize = 8;
const SAMPLE_PIECE: usize = 4096;

/// True if compressing `data` is unlikely to pay: a sample of it spread over its length
/// does not shrink by 1/32. Short data is always worth a try.
fn looks_incompressible(data: &[u8]) -> bool {
    if data.len() < SAMPLE_PIECES * SAMPLE_PIECE * 4 {
        return false;
    }
    let stride = data.len() / SAMPLE_PIECES;
    let mut sample = Vec::with_capacity(SAMPLE_PIECES * SAMPLE_PIECE);
    for piece in 0..SAMPLE_PIECES {
        let start = piece * stride;
        sample.extend_from_slice(&data[start..start + SAMPLE_PIECE]);
    }
    with_compressor(&sample, |compressed| compressed.len())
        .is_some_and(|len| len >= sample.len() - sample.len() / 32)
}

thread_local! {
    /// This thread's zstd context and output buffer: a fresh context per block costs about
    /// as much as compressing a text block with one that is reused.
    static COMPRESSOR: RefCell<Option<(zstd::bulk::Compressor<'static>, Vec<u8>)>> =
        const { RefCell::new(None) };
}

/// Compresses `data` at [`ZSTD_LEVEL`] with this thread's context and hands the result to
/// `then`; `None` if zstd fails.
fn with_compressor<T>(data: &[u8], then: impl FnOnce(&[u8]) -> T) -> Option<T> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            let compressor = zstd::bulk::Compressor::new(ZSTD_LEVEL).ok()?;
            *slot = Some((compressor, Vec::new()));
        }
        let (compressor, scratch) = slot.as_mut()?;
        let needed = zstd::zstd_safe::compress_bound(data.len());
        if scratch.capacity() < needed {
            scratch.reserve(needed - scratch.len());
        }
        let len = compressor.compress_to_buffer(data, scratch).ok()?;
        Some(then(&scratch[..len]))
    })
}

/// `data` zstd-compressed behind the codec byte, if that is smaller than `data`.
fn compress(data: &[u8]) -> Option<Vec<u8>> {
    with_compressor(data, |compressed| {
        (compressed.len() + 1 < data.len()).then(|| {
            let mut out = Vec::with_capacity(compressed.len() + 1);
            out.push(CODEC_ZSTD);
            out.extend_from_slice(compressed);
            out
        })
    })
    .flatten()
}

/// A block encoded for storage (see the module doc), as the parts of the object to write
/// one after the other: a raw block borrows the caller's bytes behind its codec byte, so
/// storing it copies nothing.
#[derive(Debug)]
pub enum Encoded<'a> {
    /// Stored as it is.
    Raw(&'a [u8]),
    /// The whole object: codec byte and zstd frame.
    Compressed(Vec<u8>),
}

impl Encoded<'_> {
    /// The object's bytes, in order (the second part of a compressed block is empty).
    pub fn parts(&self) -> [&[u8]; 2] {
        match self {
            Encoded::Raw(data) => [&[CODEC_RAW], data],
            Encoded::Compressed(object) => [object, &[]],
        }
    }

    /// The object's length in bytes.
    pub fn len(&self) -> usize {
        match self {
            Encoded::Raw(data) => data.len() + 1,
            Encoded::Compressed(object) => object.len(),
        }
    }

    /// Never: an encoded block has at least its codec byte.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Encodes a block for storage: zstd if smaller, raw otherwise (see the module doc).
pub fn encode(data: &[u8]) -> Encoded<'_> {
    if !looks_incompressible(data)
        && let Some(compressed) = compress(data)
    {
        return Encoded::Compressed(compressed);
    }
    Encoded::Raw(data)
}

/// The SHA-256 of an all-zero block.
pub fn zero_block_hash() -> BlockHash {
    static ZERO: std::sync::OnceLock<BlockHash> = std::sync::OnceLock::new();
    *ZERO.get_or_init(|| BlockHash::of(&vec![0; BLOCK_SIZE]))
}

/// Whether `stored`, an encoded block object, holds exactly `data` uncompressed.
pub fn is_raw_copy_of(stored: &[u8], data: &[u8]) -> bool {
    stored
        .split_first()
        .is_some_and(|(&codec, payload)| codec == CODEC_RAW && payload == data)
}

/// [`decode`] for a stored block the caller owns: a raw block's content is moved to the
/// front of the same buffer instead of copied into a new one.
pub fn decode_owned(mut stored: Vec<u8>) -> Result<Vec<u8>, String> {
    if stored.first() != Some(&CODEC_RAW) {
        return decode(&stored);
    }
    stored.remove(0);
    whole_block(stored)
}

/// Decodes a stored block. Errors describe what is wrong; hashes are checked by the caller.
pub fn decode(stored: &[u8]) -> Result<Vec<u8>, String> {
    let (&codec, payload) = stored.split_first().ok_or("empty block object")?;
    whole_block(match codec {
        CODEC_RAW => payload.to_vec(),
        CODEC_ZSTD => {
            zstd::bulk::decompress(payload, BLOCK_SIZE).map_err(|e| format!("zstd: {e}"))?
        }
        other => return Err(format!("unknown codec {other}")),
    })
}

/// `data` if it is exactly one block long.
fn whole_block(data: Vec<u8>) -> Result<Vec<u8>, String> {
    if data.len() != BLOCK_SIZE {
        return Err(format!("decodes to {} bytes, not {BLOCK_SIZE}", data.len()));
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_detection() {
        let mut b = vec![0u8; BLOCK_SIZE];
        assert!(is_zero(&b));
        b[BLOCK_SIZE - 1] = 1;
        assert!(!is_zero(&b));
        b[BLOCK_SIZE - 1] = 0;
        b[3] = 1;
        assert!(!is_zero(&b));
        assert!(is_zero(&[0u8; 5]));
        assert!(!is_zero(&[0, 0, 0, 0, 7]));
    }

    #[test]
    fn compressible_blocks_shrink_and_random_blocks_stay_raw() {
        let text = vec![b'a'; BLOCK_SIZE];
        let enc = encode(&text).parts().concat();
        assert_eq!(enc[0], CODEC_ZSTD);
        assert!(enc.len() < 1000);
        assert_eq!(decode(&enc).unwrap(), text);

        let random = crate::test_bytes(1, BLOCK_SIZE);
        let enc = encode(&random).parts().concat();
        assert_eq!(enc[0], CODEC_RAW);
        assert_eq!(decode(&enc).unwrap(), random);
    }

    #[test]
    fn the_sample_sees_compressible_parts_anywhere_in_the_block() {
        let mut x: u64 = 0x2545f4914f6cdd1d;
        let mut random = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        };
        // Random first half, zeros after: worth compressing.
        let mut half: Vec<u8> = (0..BLOCK_SIZE).map(|_| random()).collect();
        half[BLOCK_SIZE / 2..].fill(0);
        let enc = encode(&half).parts().concat();
        assert_eq!(enc[0], CODEC_ZSTD);
        assert!(enc.len() < BLOCK_SIZE * 6 / 10);
        assert_eq!(decode(&enc).unwrap(), half);
        // One random 64 KiB pattern repeated: the pieces repeat, so it compresses.
        let pattern: Vec<u8> = (0..64 * 1024).map(|_| random()).collect();
        let repeated: Vec<u8> = pattern.iter().copied().cycle().take(BLOCK_SIZE).collect();
        let enc = encode(&repeated).parts().concat();
        assert_eq!(enc[0], CODEC_ZSTD);
        assert_eq!(decode(&enc).unwrap(), repeated);
        // Text-like data compresses; random data is stored raw without a full attempt.
        let text: Vec<u8> = (0..BLOCK_SIZE).map(|i| b"openami "[i % 8]).collect();
        assert!(!looks_incompressible(&text));
        let noise: Vec<u8> = (0..BLOCK_SIZE).map(|_| random()).collect();
        assert!(looks_incompressible(&noise));
    }

    #[test]
    fn hostile_objects_are_refused() {
        assert!(decode(&[]).is_err());
        assert!(decode(&[9, 1, 2]).is_err());
        assert!(decode(&[CODEC_RAW, 1, 2, 3]).is_err());
        assert!(decode(&[CODEC_ZSTD, 0xde, 0xad]).is_err());
        // A zstd frame that expands beyond one block is refused, not allocated.
        let big = zstd::bulk::compress(&vec![0u8; BLOCK_SIZE * 4], 1).unwrap();
        let mut obj = vec![CODEC_ZSTD];
        obj.extend_from_slice(&big);
        assert!(decode(&obj).is_err());
    }
}
