//! `openami ssm publish-public`: the operator publishes a public SSM parameter
//! (under `/aws/service/`, readable by every account), e.g. a Quick Start image id.
//! Works while the server runs (the catalog is SQLite in WAL mode, or PostgreSQL).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::anyhow;
use clap::Subcommand;
use engine::DataDir;

/// `openami ssm …`.
#[derive(Debug, Subcommand)]
pub enum SsmCommand {
    /// Create or update a public String parameter under /aws/service/. Idempotent: the
    /// same value writes no new version. Prints {"Name","Version","Changed"} as JSON.
    PublishPublic {
        /// Parameter name, e.g. /aws/service/debian/release/12/latest/amd64.
        name: String,
        /// Its value, e.g. an image id.
        value: String,
        /// Region the parameter is published in.
        #[arg(long, default_value = "us-east-1")]
        region: String,
        /// `text`, or `aws:ec2:image` for an image id (checked for the shape ami-…).
        #[arg(long, default_value = "text")]
        data_type: String,
        /// Data directory.
        #[arg(long, env = "OPENAMI_DATA_DIR", default_value = "./openami-data")]
        data_dir: PathBuf,
        #[command(flatten)]
        catalog: crate::cli::CatalogArg,
    },
}

pub fn run(cmd: SsmCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        SsmCommand::PublishPublic {
            name,
            value,
            region,
            data_type,
            data_dir,
            catalog,
        } => {
            let dir = DataDir::open(&data_dir, true)?;
            let catalog = catalog.open(&dir)?;
            let published =
                ssm::publish_public_parameter(&catalog, &region, &name, &value, &data_type)
                    .map_err(|e| anyhow!("{}: {}", e.code, e.message))?;
            println!(
                "{}",
                serde_json::json!({
                    "Name": name,
                    "Version": published.version,
                    "Changed": published.changed,
                })
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
