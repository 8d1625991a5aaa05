//! Parameter names, selectors and ARNs: the hierarchy rules of Parameter Store.
//!
//! A name is either flat (`db-host`) or a fully qualified path (`/app/db/host`): at most
//! 2048 characters, at most 15 levels, made of `a-zA-Z0-9_.-` and `/`, no empty level, not
//! ending in `/`. Names under `/aws/service/` are public parameters, owned by the operator;
//! other names beginning with `aws` or `ssm` (in any case, with or without the slash) are
//! reserved. A reference may end in a selector, `name:3`, naming a version.

use crate::SsmError;

/// Longest name, path included.
pub const MAX_NAME: usize = 2048;
/// Deepest hierarchy.
pub const MAX_LEVELS: usize = 15;
/// Where public parameters live.
pub const PUBLIC_PREFIX: &str = "/aws/service/";
/// The catalog owner of public parameters.
pub const PUBLIC_OWNER: &str = "public";

/// What a reference (`name` or `name:selector`) selects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    /// The newest version.
    Latest,
    /// One version.
    Version(i64),
    /// A label (labels are not supported: nothing carries one).
    Label(String),
}

/// Splits `name[:selector]`.
pub fn split_selector(reference: &str) -> (&str, Selector) {
    match reference.rsplit_once(':') {
        Some((name, sel)) if !sel.is_empty() && sel.bytes().all(|b| b.is_ascii_digit()) => {
            match sel.parse() {
                Ok(v) => (name, Selector::Version(v)),
                Err(_) => (name, Selector::Label(sel.to_string())),
            }
        }
        Some((name, sel)) => (name, Selector::Label(sel.to_string())),
        None => (reference, Selector::Latest),
    }
}

/// Whether `name` is a public parameter.
pub fn is_public(name: &str) -> bool {
    name.starts_with(PUBLIC_PREFIX)
}

/// The catalog owner of `name` as seen by `account_id`.
pub fn owner_for<'a>(name: &str, account_id: &'a str) -> &'a str {
    if is_public(name) {
        PUBLIC_OWNER
    } else {
        account_id
    }
}

/// The ARN of a parameter (public ones have no account).
pub fn arn(region: &str, owner: &str, name: &str) -> String {
    let account = if owner == PUBLIC_OWNER { "" } else { owner };
    format!(
        "arn:aws:ssm:{region}:{account}:parameter/{}",
        name.strip_prefix('/').unwrap_or(name)
    )
}

/// Checks the shape of a parameter name (not whether it is reserved).
pub fn validate(name: &str) -> Result<(), SsmError> {
    let invalid = |why: &str| {
        SsmError::validation(format!(
            "Parameter name {name:?} is not valid: {why}. A name consists of letters, digits \
             and . - _, optionally as a path of levels separated by / (at most {MAX_LEVELS} levels)."
        ))
    };
    if name.is_empty() {
        return Err(invalid("it is empty"));
    }
    if name.len() > MAX_NAME {
        return Err(SsmError::validation(format!(
            "1 validation error detected: Value at 'name' failed to satisfy constraint: \
             Member must have length less than or equal to {MAX_NAME}"
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_.-/".contains(*c)))
    {
        return Err(invalid(&format!("it contains {c:?}")));
    }
    if name.contains('/') {
        if !name.starts_with('/') {
            return Err(SsmError::validation(
                "Parameter name must be a fully qualified name (a name containing / must begin with /).",
            ));
        }
        if name.ends_with('/') || name[1..].split('/').any(str::is_empty) {
            return Err(invalid("it has an empty level"));
        }
        if name[1..].split('/').count() > MAX_LEVELS {
            return Err(SsmError::new(
                "HierarchyLevelLimitExceededException",
                format!(
                    "A hierarchy can have a maximum of {MAX_LEVELS} levels. Parameter name {name:?} has more."
                ),
            ));
        }
    }
    Ok(())
}

/// Checks that an account may create or change `name`: public parameters belong to the
/// operator, and other `aws`/`ssm` prefixes are reserved.
pub fn check_writable(name: &str) -> Result<(), SsmError> {
    if is_public(name) {
        return Err(SsmError::new(
            "AccessDeniedException",
            format!(
                "Parameter {name} is a public parameter owned by the service operator; it cannot be changed."
            ),
        ));
    }
    let first = name.trim_start_matches('/').to_ascii_lowercase();
    if first.starts_with("aws") || first.starts_with("ssm") {
        return Err(SsmError::validation(
            "Parameter name: can't be prefixed with \"aws\" or \"ssm\" (case-insensitive).",
        ));
    }
    Ok(())
}

/// The parent path of a name for one-level listing: `/a/b/c` → `/a/b`; a flat name and
/// `/top` → `` (the root).
pub fn parent(name: &str) -> &str {
    match name.rfind('/') {
        Some(i) => &name[..i],
        None => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors() {
        assert_eq!(split_selector("/a/b"), ("/a/b", Selector::Latest));
        assert_eq!(split_selector("/a/b:3"), ("/a/b", Selector::Version(3)));
        assert_eq!(
            split_selector("/a/b:prod"),
            ("/a/b", Selector::Label("prod".into()))
        );
    }

    #[test]
    fn names() {
        for ok in [
            "x",
            "db-host.v1_2",
            "/a",
            "/a/b/c",
            &format!("/{}", "a/".repeat(14) + "z"),
        ] {
            validate(ok).unwrap();
        }
        let deep = format!("/{}", "a/".repeat(15) + "z");
        assert_eq!(
            validate(&deep).unwrap_err().code,
            "HierarchyLevelLimitExceededException"
        );
        for bad in ["", "a/b", "/a//b", "/a/", "a b", "/a:b", &"x".repeat(2049)] {
            assert_eq!(
                validate(bad).unwrap_err().code,
                "ValidationException",
                "{bad}"
            );
        }
    }

    #[test]
    fn ownership_and_arns() {
        assert_eq!(owner_for("/aws/service/x", "111122223333"), PUBLIC_OWNER);
        assert_eq!(owner_for("/app/x", "111122223333"), "111122223333");
        assert_eq!(
            arn("us-east-1", "111122223333", "/app/x"),
            "arn:aws:ssm:us-east-1:111122223333:parameter/app/x"
        );
        assert_eq!(
            arn("us-east-1", PUBLIC_OWNER, "/aws/service/x"),
            "arn:aws:ssm:us-east-1::parameter/aws/service/x"
        );
        assert_eq!(
            check_writable("/aws/service/x").unwrap_err().code,
            "AccessDeniedException"
        );
        assert_eq!(
            check_writable("/SSM/x").unwrap_err().code,
            "ValidationException"
        );
        assert_eq!(
            check_writable("awsome").unwrap_err().code,
            "ValidationException"
        );
        check_writable("/app/aws").unwrap();
        assert_eq!(parent("/a/b/c"), "/a/b");
        assert_eq!(parent("/a"), "");
        assert_eq!(parent("a"), "");
    }
}
