//! `openami store stats|scrub|gc`.

use std::process::ExitCode;

use anyhow::Context;
use serde_json::json;

use crate::cli::StoreCommand;
use crate::datadir::DataDir;

pub fn run(cmd: StoreCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        StoreCommand::Stats { data, json } => {
            let dir = DataDir::open(&data.data_dir, false)?;
            let s = dir.store.stats().context("computing statistics")?;
            if json {
                println!(
                    "{}",
                    json!({
                        "snapshots": s.snapshots,
                        "retained_snapshots": s.retained_snapshots,
                        "provisioned_bytes": s.provisioned_bytes,
                        "logical_bytes": s.logical_bytes,
                        "unique_bytes": s.unique_bytes,
                        "stored_bytes": s.stored_bytes,
                        "stored_blocks": s.stored_blocks,
                        "unreferenced_blocks": s.unreferenced_blocks,
                        "unreferenced_bytes": s.unreferenced_bytes,
                        "dedup_ratio": s.dedup_ratio(),
                        "compression_ratio": s.compression_ratio(),
                    })
                );
            } else {
                println!(
                    "snapshots            {} (+{} deleted, still held)",
                    s.snapshots, s.retained_snapshots
                );
                println!("provisioned          {}", human(s.provisioned_bytes));
                println!("logical (non-zero)   {}", human(s.logical_bytes));
                println!("unique (after dedup) {}", human(s.unique_bytes));
                println!("stored (compressed)  {}", human(s.stored_bytes));
                println!("dedup ratio          {:.2}x", s.dedup_ratio());
                println!("compression ratio    {:.2}x", s.compression_ratio());
                println!("stored blocks        {}", s.stored_blocks);
                println!(
                    "unreferenced         {} blocks, {} (freed by gc)",
                    s.unreferenced_blocks,
                    human(s.unreferenced_bytes)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        StoreCommand::Scrub { data, json } => {
            let dir = DataDir::open(&data.data_dir, false)?;
            let r = dir.store.scrub().context("scrubbing")?;
            if json {
                println!(
                    "{}",
                    json!({
                        "clean": r.is_clean(),
                        "manifests_checked": r.manifests_checked,
                        "blocks_checked": r.blocks_checked,
                        "unreferenced_blocks": r.unreferenced_blocks,
                        "bad_manifests": r.bad_manifests.iter().map(|(k, why)| json!({"key": k, "reason": why})).collect::<Vec<_>>(),
                        "corrupt_blocks": r.corrupt_blocks.iter().map(|(h, why)| json!({"block": h.to_hex(), "reason": why})).collect::<Vec<_>>(),
                        "missing_blocks": r.missing_blocks.iter().map(|(s, h)| json!({"snapshot": s, "block": h.to_hex()})).collect::<Vec<_>>(),
                    })
                );
            } else {
                println!(
                    "checked {} manifests and {} blocks ({} unreferenced)",
                    r.manifests_checked, r.blocks_checked, r.unreferenced_blocks
                );
                for (key, why) in &r.bad_manifests {
                    println!("BAD MANIFEST {key}: {why}");
                }
                for (hash, why) in &r.corrupt_blocks {
                    println!("CORRUPT BLOCK {hash}: {why}");
                }
                for (snap, hash) in &r.missing_blocks {
                    println!("MISSING BLOCK {hash} (referenced by {snap})");
                }
                println!(
                    "{}",
                    if r.is_clean() {
                        "scrub: clean"
                    } else {
                        "scrub: PROBLEMS FOUND"
                    }
                );
            }
            Ok(if r.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        StoreCommand::Gc { data, json } => {
            let dir = DataDir::open(&data.data_dir, false)?;
            let _owner = dir.lock_exclusive()?;
            let r = dir.store.gc().context("collecting garbage")?;
            if json {
                println!(
                    "{}",
                    json!({
                        "manifests_dropped": r.manifests_dropped,
                        "blocks_examined": r.blocks_examined,
                        "blocks_deleted": r.blocks_deleted,
                        "bytes_freed": r.bytes_freed,
                    })
                );
            } else {
                println!(
                    "gc: examined {} blocks, deleted {} ({} freed), dropped {} retained manifests",
                    r.blocks_examined,
                    r.blocks_deleted,
                    human(r.bytes_freed),
                    r.manifests_dropped
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Bytes in binary units, e.g. `1.50 GiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.2} {}", UNITS[unit])
    }
}
