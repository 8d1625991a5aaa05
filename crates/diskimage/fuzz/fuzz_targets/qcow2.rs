//! Fuzz the qcow2 reader: open + read arbitrary bytes as qcow2.
#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::run(diskimage::DiskFormat::Qcow2, data));
