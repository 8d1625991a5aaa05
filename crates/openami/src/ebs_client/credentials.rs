//! Credentials as the AWS SDKs find them: the environment variables
//! `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`, else a profile
//! (`--profile`, else `AWS_PROFILE`, else `default`) of the shared credentials file
//! (`AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/credentials`). An explicit `--profile`
//! skips the environment variables, as the AWS CLI does.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use sigv4::Secret;

/// An access key pair, with a session token for temporary credentials.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret: Secret,
    /// The session token of temporary credentials.
    pub session_token: Option<String>,
}

/// Finds credentials; `env` looks up an environment variable (a parameter for tests).
pub fn resolve(
    profile: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Credentials> {
    let nonempty = |name: &str| env(name).filter(|v| !v.is_empty());
    if profile.is_none()
        && let (Some(id), Some(secret)) = (
            nonempty("AWS_ACCESS_KEY_ID"),
            nonempty("AWS_SECRET_ACCESS_KEY"),
        )
    {
        return Ok(Credentials {
            access_key_id: id,
            secret: Secret::new(secret),
            session_token: nonempty("AWS_SESSION_TOKEN"),
        });
    }
    let name = profile
        .map(str::to_owned)
        .or_else(|| nonempty("AWS_PROFILE"))
        .unwrap_or_else(|| "default".to_owned());
    let path = match nonempty("AWS_SHARED_CREDENTIALS_FILE") {
        Some(p) => PathBuf::from(p),
        None => match nonempty("HOME") {
            Some(home) => PathBuf::from(home).join(".aws").join("credentials"),
            None => bail!(
                "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or \
                 AWS_SHARED_CREDENTIALS_FILE"
            ),
        },
    };
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "no credentials: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY are not set and {} \
             cannot be read",
            path.display()
        )
    })?;
    from_profile(&parse_ini(&text), &name)
        .with_context(|| format!("reading credentials file {}", path.display()))
}

/// The credentials of profile `name` in a parsed credentials file.
pub fn from_profile(
    ini: &HashMap<String, HashMap<String, String>>,
    name: &str,
) -> anyhow::Result<Credentials> {
    let Some(section) = ini.get(name) else {
        bail!("profile {name:?} not found");
    };
    let get = |key: &str| section.get(key).filter(|v| !v.is_empty()).cloned();
    match (get("aws_access_key_id"), get("aws_secret_access_key")) {
        (Some(id), Some(secret)) => Ok(Credentials {
            access_key_id: id,
            secret: Secret::new(secret),
            session_token: get("aws_session_token"),
        }),
        _ => bail!("profile {name:?} lacks aws_access_key_id or aws_secret_access_key"),
    }
}

/// Parses an INI file: `[section]` headers, `key = value` lines (keys lowercased),
/// `#` and `;` comment lines. Lines before the first section are ignored.
pub fn parse_ini(text: &str) -> HashMap<String, HashMap<String, String>> {
    let mut out: HashMap<String, HashMap<String, String>> = HashMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.trim().to_owned();
            out.entry(name.clone()).or_default();
            current = Some(name);
        } else if let (Some(section), Some((key, value))) = (&current, line.split_once('=')) {
            out.entry(section.clone())
                .or_default()
                .insert(key.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
# comment
[default]
aws_access_key_id = AKIADEFAULT
aws_secret_access_key=secret/default+key

; another comment
[ work ]
AWS_ACCESS_KEY_ID = AKIAWORK
aws_secret_access_key = worksecret
aws_session_token = tok=en

[broken]
aws_access_key_id = AKIAONLY
";

    fn env_of(vars: &[(&str, String)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn parses_sections_and_keys() {
        let ini = parse_ini(FILE);
        let c = from_profile(&ini, "default").unwrap();
        assert_eq!(c.access_key_id, "AKIADEFAULT");
        assert_eq!(c.secret.expose(), "secret/default+key");
        assert!(c.session_token.is_none());
        let w = from_profile(&ini, "work").unwrap();
        assert_eq!(w.access_key_id, "AKIAWORK");
        assert_eq!(w.session_token.as_deref(), Some("tok=en"));
        assert!(from_profile(&ini, "broken").is_err());
        assert!(from_profile(&ini, "missing").is_err());
    }

    #[test]
    fn env_wins_unless_profile_given() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        std::fs::write(&path, FILE).unwrap();
        let file = path.display().to_string();
        let env = env_of(&[
            ("AWS_ACCESS_KEY_ID", "AKIAENV".into()),
            ("AWS_SECRET_ACCESS_KEY", "envsecret".into()),
            ("AWS_SESSION_TOKEN", "envtoken".into()),
            ("AWS_SHARED_CREDENTIALS_FILE", file.clone()),
        ]);
        let c = resolve(None, &env).unwrap();
        assert_eq!(c.access_key_id, "AKIAENV");
        assert_eq!(c.session_token.as_deref(), Some("envtoken"));
        assert_eq!(
            resolve(Some("work"), &env).unwrap().access_key_id,
            "AKIAWORK"
        );

        let env = env_of(&[("AWS_SHARED_CREDENTIALS_FILE", file.clone())]);
        assert_eq!(resolve(None, &env).unwrap().access_key_id, "AKIADEFAULT");
        let env = env_of(&[
            ("AWS_SHARED_CREDENTIALS_FILE", file),
            ("AWS_PROFILE", "work".into()),
        ]);
        assert_eq!(resolve(None, &env).unwrap().access_key_id, "AKIAWORK");

        let env = env_of(&[("HOME", dir.path().display().to_string())]);
        let err = resolve(None, &env).unwrap_err();
        assert!(format!("{err:#}").contains("no credentials"), "{err:#}");
    }
}
