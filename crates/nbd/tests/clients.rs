//! Real clients against the server: nbdinfo, qemu-io, qemu-img, nbdcopy.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use common::*;
use nbd::Export;

const MIB: usize = 1 << 20;

#[test]
fn nbdinfo_reports_the_export() {
    if !have("nbdinfo") {
        return;
    }
    let dev = MemDevice::new(8 * MIB + 512);
    let ro = MemDevice::with_content(vec![7; MIB], true);
    let server = TestServer::start(vec![
        export("vol", &dev).with_description("a test volume"),
        export("ro", &ro),
    ]);
    let out = stdout(&run(Command::new("nbdinfo").arg(server.url("vol"))));
    for line in [
        "export=\"vol\":",
        "description: a test volume",
        "export-size: 8389120",
        "is_read_only: false",
        "can_flush: true",
        "can_fua: true",
        "can_multi_conn: true",
        "can_trim: true",
        "can_zero: true",
        "can_cache: true",
        "can_df: false",
        "block_size_minimum: 1",
        "block_size_preferred: 4096",
        "block_size_maximum: 33554432",
        "newstyle-fixed",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    // --size and the read-only export.
    let size = stdout(&run(Command::new("nbdinfo")
        .arg("--size")
        .arg(server.url("vol"))));
    assert_eq!(size.trim(), "8389120");
    let out = stdout(&run(Command::new("nbdinfo").arg(server.url("ro"))));
    assert!(out.contains("is_read_only: true"), "{out}");
    assert!(out.contains("can_trim: false"), "{out}");
    assert!(out.contains("can_flush: true"), "{out}");
    // An unknown export fails (NBD_REP_ERR_UNKNOWN).
    let out = Command::new("nbdinfo")
        .arg(server.url("nope"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    server.wait_idle();
}

#[test]
fn nbdinfo_lists_exports() {
    if !have("nbdinfo") {
        return;
    }
    let a = MemDevice::new(MIB);
    let b = MemDevice::new(2 * MIB);
    let server = TestServer::start(vec![
        export("alpha", &a).with_description("first"),
        export("beta", &b),
    ]);
    let list_url = format!("nbd+unix://?socket={}", server.socket.display());
    let out = stdout(&run(Command::new("nbdinfo").arg("--list").arg(&list_url)));
    assert!(out.contains("export=\"alpha\":"), "{out}");
    assert!(out.contains("export=\"beta\":"), "{out}");
    assert!(out.contains("description: first"), "{out}");
    assert!(out.contains("export-size: 2097152"), "{out}");
    // Short form: names only.
    let out = stdout(&run(Command::new("nbdinfo")
        .arg("--list")
        .arg("--json")
        .arg(&list_url)));
    assert!(out.contains("\"export-name\": \"alpha\""), "{out}");
    assert!(out.contains("\"export-name\": \"beta\""), "{out}");
}

#[test]
fn default_export_name_selects_the_only_export() {
    if !have("nbdinfo") {
        return;
    }
    let dev = MemDevice::new(3 * MIB);
    let server = TestServer::start(vec![export("only", &dev)]);
    let url = format!("nbd+unix://?socket={}", server.socket.display());
    let size = stdout(&run(Command::new("nbdinfo").arg("--size").arg(&url)));
    assert_eq!(size.trim(), (3 * MIB).to_string());
}

#[test]
fn qemu_io_commands_reach_the_device() {
    if !have("qemu-io") {
        return;
    }
    let dev = MemDevice::with_content(vec![0xcd; 8 * MIB], false);
    let server = TestServer::start(vec![export("vol", &dev)]);
    let out = run(Command::new("qemu-io")
        .args(["-f", "raw", &server.url("vol")])
        .args(["-c", "write -P 0xab 0 1M"])
        .args(["-c", "read -P 0xab 0 1M"])
        .args(["-c", "write -z 1M 1M"])
        .args(["-c", "discard 2M 512k"])
        .args(["-c", "read -P 0 1M 1M"])
        .args(["-c", "write -P 0x11 3M 4k"])
        .args(["-c", "flush"])
        .args(["-c", "write -f -P 0x22 4M 4k"])
        .args(["-c", "write -P 0x33 5000 3"])
        .args(["-c", "read -P 0x33 5000 3"]));
    let text = stdout(&out);
    assert!(!text.contains("Pattern verification failed"), "{text}");
    let data = dev.snapshot();
    assert!(data[..5000].iter().all(|&b| b == 0xab));
    assert_eq!(&data[5000..5003], &[0x33; 3]);
    assert!(data[5003..MIB].iter().all(|&b| b == 0xab));
    assert!(data[MIB..2 * MIB].iter().all(|&b| b == 0));
    assert!(data[2 * MIB..2 * MIB + 512 * 1024].iter().all(|&b| b == 0));
    assert!(
        data[2 * MIB + 512 * 1024..3 * MIB]
            .iter()
            .all(|&b| b == 0xcd)
    );
    assert!(data[3 * MIB..3 * MIB + 4096].iter().all(|&b| b == 0x11));
    assert!(data[4 * MIB..4 * MIB + 4096].iter().all(|&b| b == 0x22));
    assert!(data[4 * MIB + 4096..].iter().all(|&b| b == 0xcd));
    // The discard reached trim, `write -z` reached write-zeroes (or explicit zeros).
    assert!(dev.trims.load(Ordering::SeqCst) >= 1);
    assert!(dev.zeroes.load(Ordering::SeqCst) + dev.writes.load(Ordering::SeqCst) >= 4);
    // The flush made 0x11 durable; the FUA write made 0x22 durable.
    let durable = dev.durable();
    assert!(durable[3 * MIB..3 * MIB + 4096].iter().all(|&b| b == 0x11));
    assert!(durable[4 * MIB..4 * MIB + 4096].iter().all(|&b| b == 0x22));
    assert!(dev.flushes.load(Ordering::SeqCst) >= 2);
}

#[test]
fn qemu_io_fua_write_is_flushed_before_the_next_command() {
    if !have("qemu-io") {
        return;
    }
    let dev = MemDevice::new(MIB);
    let server = TestServer::start(vec![export("vol", &dev)]);
    run(Command::new("qemu-io")
        .args(["-f", "raw", "--cache=writeback", &server.url("vol")])
        .args(["-c", "write -P 0x01 0 4k"])
        .args(["-c", "write -f -P 0x5a 64k 64k"])
        .args(["-c", "write -P 0x02 256k 4k"]));
    // With a writeback cache qemu-io runs the commands one after the other and flushes
    // once on exit: only the FUA write puts a flush between the second and third write.
    let log = dev.log.lock().unwrap().clone();
    let second = log.iter().position(|e| e == "W 65536 65536").unwrap();
    let third = log.iter().position(|e| e == "W 262144 4096").unwrap();
    assert!(
        log[second + 1..third].iter().any(|e| e == "F"),
        "no flush after the FUA write: {log:?}"
    );
    assert!(
        !log[..second].iter().any(|e| e == "F"),
        "unexpected flush before the FUA write: {log:?}"
    );
}

#[test]
fn qemu_io_on_read_only_export_refuses_writes() {
    if !have("qemu-io") {
        return;
    }
    let dev = MemDevice::with_content(vec![9; MIB], true);
    let server = TestServer::start(vec![export("ro", &dev)]);
    // qemu opens the export read-only when asked and reads work.
    let out = run(Command::new("qemu-io")
        .args(["-r", "-f", "raw", &server.url("ro")])
        .args(["-c", "read -P 9 0 1M"]));
    assert!(!stdout(&out).contains("failed"));
    // Without -r qemu sees NBD_FLAG_READ_ONLY and refuses to open for writing.
    let out = Command::new("qemu-io")
        .args(["-f", "raw", &server.url("ro")])
        .args(["-c", "write -P 1 0 4k"])
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{all}");
    assert!(
        all.contains("Permission denied") || all.contains("read-only"),
        "{all}"
    );
    assert!(dev.snapshot().iter().all(|&b| b == 9));
}

#[test]
fn qemu_img_convert_and_compare() {
    if !have("qemu-img") {
        return;
    }
    let size = 24 * MIB;
    let dev = MemDevice::with_content(vec![0xee; size], false);
    let server = TestServer::start(vec![export("vol", &dev)]);
    let content = mixed_content(size, 42);
    let src = server.dir.path().join("src.raw");
    std::fs::write(&src, &content).unwrap();
    run(Command::new("qemu-img")
        .args(["convert", "-n", "-f", "raw", "-O", "raw"])
        .arg(&src)
        .arg(server.url("vol")));
    assert!(
        dev.snapshot() == content,
        "device content differs from the source"
    );
    let out = run(Command::new("qemu-img")
        .args(["compare", "-f", "raw", "-F", "raw"])
        .arg(&src)
        .arg(server.url("vol")));
    assert!(stdout(&out).contains("Images are identical"));
    // And back out into a fresh file.
    let back = server.dir.path().join("back.raw");
    run(Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "raw"])
        .arg(server.url("vol"))
        .arg(&back));
    assert!(std::fs::read(&back).unwrap() == content);
    // A difference is found.
    dev.data.lock().unwrap()[size - 1] ^= 0xff;
    let out = Command::new("qemu-img")
        .args(["compare", "-f", "raw", "-F", "raw"])
        .arg(&src)
        .arg(server.url("vol"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
}

#[test]
fn nbdcopy_both_ways_with_many_connections() {
    if !have("nbdcopy") {
        return;
    }
    let size = 64 * MIB;
    let dev = MemDevice::new(size);
    let server = TestServer::start(vec![export("vol", &dev)]);
    let content = mixed_content(size, 7);
    let src = server.dir.path().join("src.raw");
    std::fs::write(&src, &content).unwrap();
    run(Command::new("nbdcopy")
        .args(["--connections", "4", "--requests", "64", "--flush"])
        .arg(&src)
        .arg(server.url("vol")));
    assert!(
        dev.snapshot() == content,
        "device content differs after nbdcopy in"
    );
    assert!(
        dev.durable() == content,
        "--flush did not make the copy durable"
    );
    let dst = server.dir.path().join("dst.raw");
    run(Command::new("nbdcopy")
        .args(["--connections", "4", "--requests", "64"])
        .arg(server.url("vol"))
        .arg(&dst));
    assert!(
        std::fs::read(&dst).unwrap() == content,
        "nbdcopy out differs"
    );
    // Small requests, many in flight: exercises pipelining and out-of-order replies.
    let dst2 = server.dir.path().join("dst2.raw");
    run(Command::new("nbdcopy")
        .args([
            "--connections",
            "2",
            "--requests",
            "64",
            "--request-size",
            "4096",
        ])
        .arg(server.url("vol"))
        .arg(&dst2));
    assert!(
        std::fs::read(&dst2).unwrap() == content,
        "small-request copy differs"
    );
    server.wait_idle();
}

#[test]
fn nbdcopy_between_two_exports_of_one_server() {
    if !have("nbdcopy") {
        return;
    }
    let content = mixed_content(16 * MIB, 99);
    let a = MemDevice::with_content(content.clone(), true);
    let b = MemDevice::new(16 * MIB);
    let server = TestServer::start(vec![
        export("a", &a),
        Export::new("b", Arc::clone(&b) as Arc<dyn nbd::BlockDevice>),
    ]);
    run(Command::new("nbdcopy")
        .args(["--connections", "4", "--requests", "16"])
        .arg(server.url("a"))
        .arg(server.url("b")));
    assert!(b.snapshot() == content);
}
