//! Fuzz the vhd reader: open + read arbitrary bytes as vhd.
#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::run(diskimage::DiskFormat::Vhd, data));
