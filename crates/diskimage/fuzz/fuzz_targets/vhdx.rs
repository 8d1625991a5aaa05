//! Fuzz the vhdx reader: open + read arbitrary bytes as vhdx.
#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::run(diskimage::DiskFormat::Vhdx, data));
