//! `openami account create`.

use std::process::ExitCode;

use anyhow::anyhow;
use engine::DataDir;

use crate::cli::AccountCommand;

pub fn run(cmd: AccountCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AccountCommand::Create {
            name,
            account_id,
            access_key_id,
            secret_access_key,
            data,
            catalog,
        } => {
            let dir = DataDir::open(&data.data_dir, true)?;
            // SQLite in WAL mode or PostgreSQL: safe to write while a server runs.
            let catalog = catalog.open(&dir)?;
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
