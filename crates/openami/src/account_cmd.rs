//! `openami account create`.

use std::process::ExitCode;

use anyhow::{Context, anyhow};
use engine::{Catalog, DataDir};

use crate::cli::AccountCommand;

pub fn run(cmd: AccountCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AccountCommand::Create {
            name,
            account_id,
            access_key_id,
            secret_access_key,
            data,
        } => {
            let dir = DataDir::open(&data.data_dir, true)?;
            // The catalog is SQLite in WAL mode: safe to write while a server runs.
            let catalog = Catalog::open(&dir.catalog_path()).context("opening the catalog")?;
            let key = access_key_id.as_deref().zip(secret_access_key.as_deref());
            let (account_id, key_id, secret) =
                engine::create_account(&catalog, &name, account_id.as_deref(), key)
                    .map_err(|e| anyhow!("{}", e.message))?;
            println!(
                "{}",
                serde_json::json!({
                    "AccountId": account_id,
                    "AccessKeyId": key_id,
                    "SecretAccessKey": secret,
                })
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
