//! Fuzz the vmdk reader: open + read arbitrary bytes as vmdk.
#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::run(diskimage::DiskFormat::Vmdk, data));
