//! `openami store stats|scrub|gc`.

use std::process::ExitCode;

use anyhow::Context;
use serde_json::json;

use engine::{DataDir, RegionStorage};

use crate::cli::{RegionArg, S3Args, StoreCommand};

/// The regions a store command works on (their objects in the S3 bucket of `--blocks`,
/// if given, as `serve` keeps them).
fn regions(
    data_dir: &std::path::Path,
    region: &RegionArg,
    s3: &S3Args,
) -> anyhow::Result<Vec<RegionStorage>> {
    let mut dir = DataDir::open(data_dir, false)?;
    if let Some(config) = s3.config()? {
        dir = dir.with_s3_objects(config);
    }
    let names = match &region.region {
        Some(name) => vec![name.clone()],
        None => dir.existing_regions()?,
    };
    names
        .iter()
        .map(|n| dir.region(n).with_context(|| format!("opening region {n}")))
        .collect()
}

pub fn run(cmd: StoreCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        StoreCommand::Stats {
            data,
            region,
            json,
            catalog,
            s3,
        } => {
            let dir = DataDir::open(&data.data_dir, false)?;
            // Blocks of EBS direct uploads in progress are recorded in the catalog.
            let catalog = catalog.open(&dir)?;
            for r in regions(&data.data_dir, &region, &s3)? {
                let s = engine::gc::stats_with_uploads(&catalog, &r.store)
                    .context("computing statistics")?;
                print_stats(&r.name, &s, json);
            }
            Ok(ExitCode::SUCCESS)
        }
        StoreCommand::Scrub {
            data,
            region,
            json,
            s3,
        } => {
            let mut clean = true;
            for r in regions(&data.data_dir, &region, &s3)? {
                let report = r.store.scrub().context("scrubbing")?;
                clean &= report.is_clean();
                print_scrub(&r.name, &report, json);
            }
            Ok(if clean {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        StoreCommand::Gc {
            data,
            region,
            json,
            catalog,
            s3,
        } => {
            let dir = DataDir::open(&data.data_dir, false)?;
            // Uploads in progress are recorded in the catalog the server uses; GC against
            // another catalog would free their blocks.
            catalog.check_same_as_server(&dir)?;
            let _owner = dir.lock_exclusive()?;
            // Blocks of EBS direct uploads in progress are recorded in the catalog (the
            // one the server uses: with a PostgreSQL catalog, pass it here too, or the
            // blocks of uploads in progress are not known to be in use).
            let catalog = catalog.open(&dir)?;
            // Nodes write a shared bucket and collect it themselves (fossil collection);
            // this collector sees no other process's sessions in progress.
            let nodes: Vec<String> = catalog
                .nodes()
                .context("reading the catalog's nodes")?
                .into_iter()
                .filter(|n| !n.zones.is_empty())
                .map(|n| n.node_id)
                .collect();
            if !nodes.is_empty() {
                anyhow::bail!(
                    "this catalog is served by a node cluster ({}): its nodes collect garbage themselves (serve --gc-interval/--gc-grace)",
                    nodes.join(", ")
                );
            }
            for r in regions(&data.data_dir, &region, &s3)? {
                let report = engine::gc::gc_with_uploads(&catalog, &r.store)
                    .context("collecting garbage")?;
                print_gc(&r.name, &report, json);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_stats(region: &str, s: &blockstore::StoreStats, json: bool) {
    if json {
        println!(
            "{}",
            json!({
                "region": region,
                "snapshots": s.snapshots,
                "retained_snapshots": s.retained_snapshots,
                "provisioned_bytes": s.provisioned_bytes,
                "logical_bytes": s.logical_bytes,
                "unique_bytes": s.unique_bytes,
                "stored_bytes": s.stored_bytes,
                "stored_blocks": s.stored_blocks,
                "unreferenced_blocks": s.unreferenced_blocks,
                "unreferenced_bytes": s.unreferenced_bytes,
                "upload_blocks": s.held_blocks,
                "upload_bytes": s.held_bytes,
                "fossil_blocks": s.fossil_blocks,
                "fossil_bytes": s.fossil_bytes,
                "dedup_ratio": s.dedup_ratio(),
                "compression_ratio": s.compression_ratio(),
            })
        );
        return;
    }
    println!("region {region}");
    println!(
        "  snapshots            {} (+{} deleted, still held)",
        s.snapshots, s.retained_snapshots
    );
    println!("  provisioned          {}", human(s.provisioned_bytes));
    println!("  logical (non-zero)   {}", human(s.logical_bytes));
    println!("  unique (after dedup) {}", human(s.unique_bytes));
    println!("  stored (compressed)  {}", human(s.stored_bytes));
    println!("  dedup ratio          {:.2}x", s.dedup_ratio());
    println!("  compression ratio    {:.2}x", s.compression_ratio());
    println!("  stored blocks        {}", s.stored_blocks);
    println!(
        "  uploads in progress  {} blocks, {} (no snapshot yet; kept by gc)",
        s.held_blocks,
        human(s.held_bytes)
    );
    println!(
        "  unreferenced         {} blocks, {} (freed by gc)",
        s.unreferenced_blocks,
        human(s.unreferenced_bytes)
    );
    if s.fossil_blocks > 0 {
        println!(
            "  fossils              {} blocks, {} (unreferenced in a node cluster; deleted by \
             a later gc step)",
            s.fossil_blocks,
            human(s.fossil_bytes)
        );
    }
}

fn print_scrub(region: &str, r: &blockstore::ScrubReport, json: bool) {
    if json {
        println!(
            "{}",
            json!({
                "region": region,
                "clean": r.is_clean(),
                "manifests_checked": r.manifests_checked,
                "blocks_checked": r.blocks_checked,
                "unreferenced_blocks": r.unreferenced_blocks,
                "bad_manifests": r.bad_manifests.iter().map(|(k, why)| json!({"key": k, "reason": why})).collect::<Vec<_>>(),
                "corrupt_blocks": r.corrupt_blocks.iter().map(|(h, why)| json!({"block": h.to_hex(), "reason": why})).collect::<Vec<_>>(),
                "missing_blocks": r.missing_blocks.iter().map(|(s, h)| json!({"snapshot": s, "block": h.to_hex()})).collect::<Vec<_>>(),
            })
        );
        return;
    }
    println!(
        "region {region}: checked {} manifests and {} blocks ({} unreferenced)",
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
    let verdict = if r.is_clean() {
        "clean"
    } else {
        "PROBLEMS FOUND"
    };
    println!("scrub {region}: {verdict}");
}

fn print_gc(region: &str, r: &blockstore::GcReport, json: bool) {
    if json {
        println!(
            "{}",
            json!({
                "region": region,
                "manifests_dropped": r.manifests_dropped,
                "blocks_examined": r.blocks_examined,
                "blocks_deleted": r.blocks_deleted,
                "bytes_freed": r.bytes_freed,
            })
        );
    } else {
        println!(
            "gc {region}: examined {} blocks, deleted {} ({} freed), dropped {} retained manifests",
            r.blocks_examined,
            r.blocks_deleted,
            human(r.bytes_freed),
            r.manifests_dropped
        );
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
