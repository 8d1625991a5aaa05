//! `ParameterStringFilter`s of GetParametersByPath and DescribeParameters.

use crate::SsmError;
use crate::names;
use crate::request::{Req, wrong_type};
use crate::store::Param;

/// A `ParameterStringFilter`.
#[derive(Debug)]
pub(crate) struct Filter {
    pub(crate) key: String,
    pub(crate) option: String,
    pub(crate) values: Vec<String>,
}

impl Filter {
    /// Parses `ParameterFilters`; `Name` and `Path` only where `describe`.
    pub(crate) fn parse_all(req: &Req<'_>, describe: bool) -> Result<Vec<Filter>, SsmError> {
        req.list("ParameterFilters")?
            .into_iter()
            .map(|item| {
                let f = Req(item
                    .as_object()
                    .ok_or_else(|| wrong_type("ParameterFilters", "a list of filters"))?);
                let key = f.required("Key")?;
                let options: &[&str] = match key {
                    "Name" if describe => &["Equals", "BeginsWith", "Contains"],
                    "Path" if describe => &["Recursive", "OneLevel"],
                    "Type" | "KeyId" | "DataType" | "Tier" | "Label" => &["Equals"],
                    k if k.starts_with("tag:") && k.len() > 4 => &["Equals"],
                    other => {
                        return Err(SsmError::new(
                            "InvalidFilterKey",
                            format!(
                                "The filter key {other} is not valid here. Valid keys: Type, KeyId, DataType, Tier, Label, tag:<key>{}.",
                                if describe { ", Name, Path" } else { "" }
                            ),
                        ));
                    }
                };
                let option = f.str("Option")?.unwrap_or(options[0]);
                if !options.contains(&option) {
                    return Err(SsmError::new(
                        "InvalidFilterOption",
                        format!(
                            "The filter option {option} is not valid for key {key}; use one of {}.",
                            options.join(", ")
                        ),
                    ));
                }
                let values: Vec<String> =
                    f.strings("Values")?.into_iter().map(str::to_string).collect();
                if values.is_empty() && !key.starts_with("tag:") {
                    return Err(SsmError::new(
                        "InvalidFilterValue",
                        format!("The filter {key} needs at least one value."),
                    ));
                }
                Ok(Filter {
                    key: key.to_string(),
                    option: option.to_string(),
                    values,
                })
            })
            .collect()
    }

    pub(crate) fn matches(&self, p: &Param, tags: &[(String, String)]) -> bool {
        let any = |field: &str| self.values.iter().any(|v| v == field);
        match self.key.as_str() {
            "Type" => any(&p.doc.kind),
            "KeyId" => p.doc.key_id.as_deref().is_some_and(any),
            "DataType" => any(&p.doc.data_type),
            "Tier" => any(&p.doc.tier),
            "Label" => false,
            "Name" => self.values.iter().any(|v| {
                let (v, name) = (v.trim_start_matches('/'), p.name.trim_start_matches('/'));
                match self.option.as_str() {
                    "BeginsWith" => name.starts_with(v),
                    "Contains" => name.contains(v),
                    _ => name == v,
                }
            }),
            "Path" => self.values.iter().any(|v| {
                let path = v.trim_end_matches('/');
                if self.option == "Recursive" {
                    p.name.starts_with(&format!("{path}/"))
                        || (path.is_empty() && !p.name.starts_with('/'))
                } else {
                    names::parent(&p.name) == path
                }
            }),
            key => {
                let tag = &key[4..];
                tags.iter().any(|(k, v)| {
                    k == tag && (self.values.is_empty() || self.values.iter().any(|x| x == v))
                })
            }
        }
    }
}
