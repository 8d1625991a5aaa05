//! `openami catalog import`: publishes Quick Start and marketplace images from the JSON
//! `aws ec2 describe-images` prints (rules in `engine::images::import`).

use std::fs::File;
use std::io::Read;
use std::process::ExitCode;

use anyhow::{Context, bail};
use engine::DataDir;
use engine::images::import::MAX_INPUT_BYTES;
use engine::images::{ImportOptions, import_images};

use crate::cli::CatalogImportArgs;

/// Reads all of `reader`, refusing more than [`MAX_INPUT_BYTES`].
fn read_limited(reader: impl Read, what: &str) -> anyhow::Result<Vec<u8>> {
    let mut buf = Vec::new();
    reader
        .take(MAX_INPUT_BYTES as u64 + 1)
        .read_to_end(&mut buf)
        .with_context(|| format!("reading {what}"))?;
    if buf.len() > MAX_INPUT_BYTES {
        bail!(
            "{what} is larger than {} MiB; split it into smaller files",
            MAX_INPUT_BYTES >> 20
        );
    }
    Ok(buf)
}

/// Runs `openami catalog import`.
pub fn import(args: CatalogImportArgs) -> anyhow::Result<ExitCode> {
    let input = if args.file == "-" {
        read_limited(std::io::stdin().lock(), "standard input")?
    } else {
        let file = File::open(&args.file).with_context(|| format!("opening {}", args.file))?;
        read_limited(file, &args.file)?
    };
    let dir = DataDir::open(&args.data.data_dir, true)?;
    // SQLite in WAL mode or PostgreSQL: safe to write while servers run, which notice the
    // new images through the catalog's data_version.
    let catalog = args.catalog.open(&dir)?;
    let opts = ImportOptions {
        region: args.region,
        owner_alias: args.owner_alias,
        owner_id: args.owner_id,
        private: args.private,
        replace: args.replace,
        root_snapshot: args.root_snapshot,
    };
    let report = import_images(&catalog, &input, &opts)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(if report.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
