//! `openami account create`, `set-console-password` and `remove-console-password`.
//!
//! All write the catalog directly (SQLite in WAL mode, or PostgreSQL with `--catalog`:
//! safe while a server runs). A
//! console password is read from the terminal without echo (twice), or from the first
//! line of stdin with `--password-stdin`; only its Argon2id hash is stored (see
//! [`webconsole::password`]).

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use engine::{Catalog, DataDir};

use crate::cli::{AccountCommand, AccountRef, CatalogArg, DataDirArg};

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
            // SQLite in WAL mode or PostgreSQL: safe to write while a server runs.
            let catalog = open_catalog(&data, &catalog)?;
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
        AccountCommand::SetConsolePassword {
            account,
            password_stdin,
            data,
            catalog,
        } => {
            let catalog = open_catalog(&data, &catalog)?;
            let account_id = resolve(&catalog, &account)?;
            let password = if password_stdin {
                first_line_of_stdin()?
            } else {
                prompt_twice()?
            };
            let hash = webconsole::password::hash(&password).map_err(|e| anyhow!("{e}"))?;
            if !catalog
                .set_console_password(&account_id, Some(&hash))
                .context("storing the console password")?
            {
                bail!("no account {account_id}");
            }
            end_sessions(&catalog, &account_id)?;
            println!(
                "{}",
                serde_json::json!({"AccountId": account_id, "ConsolePassword": "set"})
            );
            Ok(ExitCode::SUCCESS)
        }
        AccountCommand::RemoveConsolePassword {
            account,
            data,
            catalog,
        } => {
            let catalog = open_catalog(&data, &catalog)?;
            let account_id = resolve(&catalog, &account)?;
            let had = catalog
                .console_password(&account_id)
                .context("reading the console password")?
                .is_some();
            if !catalog
                .set_console_password(&account_id, None)
                .context("removing the console password")?
            {
                bail!("no account {account_id}");
            }
            end_sessions(&catalog, &account_id)?;
            let state = if had { "removed" } else { "none" };
            println!(
                "{}",
                serde_json::json!({"AccountId": account_id, "ConsolePassword": state})
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Ends the account's console sessions: a changed or removed password signs everyone out
/// (servers notice within their session cache's few seconds).
fn end_sessions(catalog: &Catalog, account_id: &str) -> anyhow::Result<()> {
    let ended = catalog
        .delete_console_sessions_of(account_id)
        .context("ending the account's console sessions")?;
    if ended > 0 {
        eprintln!("ended {ended} console session(s) of {account_id}");
    }
    Ok(())
}

fn open_catalog(data: &DataDirArg, catalog: &CatalogArg) -> anyhow::Result<Catalog> {
    let dir = DataDir::open(&data.data_dir, true)?;
    catalog.open(&dir)
}

/// The id of the account `which` names.
fn resolve(catalog: &Catalog, which: &AccountRef) -> anyhow::Result<String> {
    let accounts = catalog.accounts().context("reading the accounts")?;
    let found = match (&which.name, &which.account_id) {
        (Some(name), _) => accounts.iter().find(|a| &a.name == name),
        (None, Some(id)) => accounts.iter().find(|a| &a.account_id == id),
        (None, None) => bail!("name the account with --name or --account-id"),
    };
    match (found, &which.name, &which.account_id) {
        (Some(a), _, _) => Ok(a.account_id.clone()),
        (None, Some(name), _) => bail!("no account named {name:?}"),
        (None, _, Some(id)) => bail!("no account with id {id:?}"),
        (None, None, None) => bail!("name the account with --name or --account-id"),
    }
}

/// The first line of stdin, without its line ending.
fn first_line_of_stdin() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    let line = line.strip_suffix('\n').unwrap_or(&line);
    Ok(line.strip_suffix('\r').unwrap_or(line).to_string())
}

/// Asks for the password twice on the terminal, without echo.
fn prompt_twice() -> anyhow::Result<String> {
    if !std::io::stdin().is_terminal() {
        bail!("stdin is not a terminal: pass --password-stdin to read the password from it");
    }
    let first =
        rpassword::prompt_password("New console password: ").context("reading the password")?;
    webconsole::password::check(&first).map_err(|e| anyhow!("{e}"))?;
    let again = rpassword::prompt_password("Once more: ").context("reading the password again")?;
    if first != again {
        bail!("the two passwords differ; nothing changed");
    }
    Ok(first)
}
