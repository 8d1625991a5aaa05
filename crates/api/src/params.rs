//! Query-protocol parameters: `Name=value` pairs from the form body and the query
//! string, with EC2's flattened lists (`VolumeId.1`, `Filter.1.Value.2`, ...).

use std::collections::BTreeMap;

use engine::query::{Filter, Page, TagSpecification};
use engine::{Ec2Error, Ec2Result};

/// Largest number of elements accepted in one list parameter.
const MAX_LIST: usize = 1000;

/// The request's parameters.
#[derive(Debug, Default, Clone)]
pub struct Params {
    map: BTreeMap<String, String>,
}

impl Params {
    /// Parses `application/x-www-form-urlencoded` text (body or query string); later
    /// sources do not override earlier ones.
    pub fn parse(sources: &[&[u8]]) -> Ec2Result<Self> {
        let mut map = BTreeMap::new();
        for source in sources {
            for (k, v) in form_urlencoded::parse(source) {
                if k.len() > 256 {
                    return Err(Ec2Error::invalid_value("parameter name too long"));
                }
                map.entry(k.into_owned()).or_insert_with(|| v.into_owned());
            }
        }
        Ok(Params { map })
    }

    /// Every parameter as a `(name, value)` pair, sorted by name (to hand the request to
    /// another node, see `handoff`).
    pub fn pairs(&self) -> Vec<(String, String)> {
        self.map
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The parameters of [`pairs`](Self::pairs) again.
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        Params {
            map: pairs.into_iter().collect(),
        }
    }

    /// The parameters under `prefix` (e.g. `LaunchTemplateData.`), with it removed.
    pub fn with_prefix(&self, prefix: &str) -> Params {
        Params {
            map: self
                .map
                .range(prefix.to_string()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(k, v)| (k[prefix.len()..].to_string(), v.clone()))
                .collect(),
        }
    }

    /// All parameter names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(String::as_str)
    }

    /// A single value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.map.get(name).map(String::as_str)
    }

    /// A required value.
    pub fn required(&self, name: &str) -> Ec2Result<String> {
        match self.get(name) {
            Some(v) if !v.is_empty() => Ok(v.to_string()),
            _ => Err(Ec2Error::missing(name)),
        }
    }

    /// An optional string.
    pub fn string(&self, name: &str) -> Option<String> {
        self.get(name).map(str::to_string)
    }

    /// An optional integer.
    pub fn int(&self, name: &str) -> Ec2Result<Option<i64>> {
        self.get(name)
            .map(|v| {
                v.parse::<i64>().map_err(|_| {
                    Ec2Error::invalid_value(format!(
                        "Value ({v}) for parameter {name} is invalid. Expected an integer."
                    ))
                })
            })
            .transpose()
    }

    /// An optional boolean (`true`/`false`).
    pub fn bool(&self, name: &str) -> Ec2Result<Option<bool>> {
        match self.get(name) {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(v) => Err(Ec2Error::invalid_value(format!(
                "Value ({v}) for parameter {name} is invalid. Expected a boolean."
            ))),
        }
    }

    /// Indexes present under `prefix.N…`, ascending.
    pub fn indexes(&self, prefix: &str) -> Ec2Result<Vec<usize>> {
        let dotted = format!("{prefix}.");
        let mut found: Vec<usize> = self
            .map
            .range(dotted.clone()..)
            .take_while(|(k, _)| k.starts_with(&dotted))
            .filter_map(|(k, _)| k[dotted.len()..].split('.').next()?.parse().ok())
            .collect();
        found.sort_unstable();
        found.dedup();
        if found.len() > MAX_LIST {
            return Err(Ec2Error::invalid_value(format!("too many {prefix} values")));
        }
        Ok(found)
    }

    /// `prefix.1`, `prefix.2`, … as a list.
    pub fn list(&self, prefix: &str) -> Ec2Result<Vec<String>> {
        Ok(self
            .indexes(prefix)?
            .into_iter()
            .filter_map(|i| self.string(&format!("{prefix}.{i}")))
            .collect())
    }

    /// `Filter.N.Name` / `Filter.N.Value.M`.
    pub fn filters(&self) -> Ec2Result<Vec<Filter>> {
        self.filters_named("Filter")
    }

    /// `<prefix>.N.Name` / `<prefix>.N.Value.M` (a few actions name the list `Filters`).
    pub fn filters_named(&self, prefix: &str) -> Ec2Result<Vec<Filter>> {
        self.indexes(prefix)?
            .into_iter()
            .map(|i| {
                let name = self.string(&format!("{prefix}.{i}.Name")).ok_or_else(|| {
                    Ec2Error::invalid_value(format!("{prefix}.{i}.Name is missing"))
                })?;
                Ok(Filter {
                    name,
                    values: self.list(&format!("{prefix}.{i}.Value"))?,
                })
            })
            .collect()
    }

    /// `MaxResults` and `NextToken`.
    pub fn page(&self) -> Ec2Result<Page> {
        Ok(Page {
            max_results: self.int("MaxResults")?,
            next_token: self.string("NextToken"),
        })
    }

    /// `<prefix>.N.Key` / `<prefix>.N.Value` pairs.
    pub fn tags(&self, prefix: &str) -> Ec2Result<Vec<(String, String)>> {
        self.indexes(prefix)?
            .into_iter()
            .map(|i| {
                let key = self.string(&format!("{prefix}.{i}.Key")).ok_or_else(|| {
                    Ec2Error::invalid_value(format!("{prefix}.{i}.Key is missing"))
                })?;
                Ok((
                    key,
                    self.string(&format!("{prefix}.{i}.Value"))
                        .unwrap_or_default(),
                ))
            })
            .collect()
    }

    /// `<prefix>.N.Key` with an optional `<prefix>.N.Value` (DeleteTags).
    pub fn optional_value_tags(&self, prefix: &str) -> Ec2Result<Vec<(String, Option<String>)>> {
        self.indexes(prefix)?
            .into_iter()
            .map(|i| {
                let key = self.string(&format!("{prefix}.{i}.Key")).ok_or_else(|| {
                    Ec2Error::invalid_value(format!("{prefix}.{i}.Key is missing"))
                })?;
                Ok((key, self.string(&format!("{prefix}.{i}.Value"))))
            })
            .collect()
    }

    /// `TagSpecification.N.ResourceType` / `TagSpecification.N.Tag.M.Key|Value`.
    pub fn tag_specifications(&self) -> Ec2Result<Vec<TagSpecification>> {
        self.indexes("TagSpecification")?
            .into_iter()
            .map(|i| {
                let resource_type = self
                    .string(&format!("TagSpecification.{i}.ResourceType"))
                    .ok_or_else(|| {
                        Ec2Error::missing(&format!("TagSpecification.{i}.ResourceType"))
                    })?;
                Ok(TagSpecification {
                    resource_type,
                    tags: self.tags(&format!("TagSpecification.{i}.Tag"))?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattened_lists_filters_and_tags() {
        let p = Params::parse(&[b"Action=X&VolumeId.2=b&VolumeId.1=a&Filter.1.Name=status&Filter.1.Value.1=available&Filter.1.Value.2=in-use&TagSpecification.1.ResourceType=volume&TagSpecification.1.Tag.1.Key=Name&TagSpecification.1.Tag.1.Value=x%20y&VolumeId.10=c"]).unwrap();
        assert_eq!(p.list("VolumeId").unwrap(), ["a", "b", "c"]);
        let f = p.filters().unwrap();
        assert_eq!(f[0].name, "status");
        assert_eq!(f[0].values, ["available", "in-use"]);
        let t = p.tag_specifications().unwrap();
        assert_eq!(t[0].tags, [("Name".to_string(), "x y".to_string())]);
        assert!(p.int("VolumeId.1").is_err());
        assert_eq!(p.bool("Nope").unwrap(), None);
    }
}
