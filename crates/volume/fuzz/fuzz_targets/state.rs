//! Fuzz the volume state file decoder (`crates/volume/src/state.rs`) through
//! `volume::state_file_round_trip`.
//!
//! The first input byte picks the mode: odd, the rest is decoded as is; even, the rest is
//! taken as a state file without its trailing SHA-256, which is appended, so that the
//! fuzzer gets past the checksum to every field check. Checks that nothing panics and that
//! what decodes, once encoded again, decodes to the same thing.
#![no_main]

use blockstore::sha256;

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
    let Ok(again) = volume::state_file_round_trip(&bytes) else {
        return;
    };
    assert_eq!(
        volume::state_file_round_trip(&again).as_deref(),
        Ok(again.as_slice()),
        "a re-encoded state file did not decode to itself"
    );
});
