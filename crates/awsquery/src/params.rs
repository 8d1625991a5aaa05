//! Request parameters of the query protocol: `Name=value` pairs from the form body (and
//! the query string), with `Name.member.N` lists, `Name.entry.N.key|value` maps and
//! nested structures `Name.Field`.

use std::collections::BTreeMap;

use crate::{QueryError, QueryResult};

/// Most elements accepted in one list parameter.
const MAX_LIST: usize = 1000;
/// Longest parameter name accepted.
const MAX_NAME: usize = 512;

/// The request's parameters (or the part of them under one prefix).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Params {
    map: BTreeMap<String, String>,
}

impl Params {
    /// Parses `application/x-www-form-urlencoded` text; earlier sources win.
    pub fn parse(sources: &[&[u8]]) -> QueryResult<Self> {
        let mut map = BTreeMap::new();
        for source in sources {
            for (k, v) in form_urlencoded::parse(source) {
                if k.len() > MAX_NAME {
                    return Err(QueryError::validation("A parameter name is too long."));
                }
                map.entry(k.into_owned()).or_insert_with(|| v.into_owned());
            }
        }
        Ok(Params { map })
    }

    /// Parameters from `(name, value)` pairs (tests, internal callers).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Params {
            map: pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// `Action`.
    pub fn action(&self) -> Option<&str> {
        self.get("Action")
    }

    /// `Version`.
    pub fn version(&self) -> Option<&str> {
        self.get("Version")
    }

    /// A value, if present (possibly empty).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.map.get(name).map(String::as_str)
    }

    /// A value as an owned string.
    pub fn string(&self, name: &str) -> Option<String> {
        self.get(name).map(str::to_string)
    }

    /// A required, non-empty value (`ValidationError` naming it otherwise).
    pub fn required(&self, name: &str) -> QueryResult<String> {
        match self.get(name) {
            Some(v) if !v.is_empty() => Ok(v.to_string()),
            _ => Err(QueryError::missing(name)),
        }
    }

    /// Whether `name` or anything under `name.` was sent.
    pub fn has(&self, name: &str) -> bool {
        if self.map.contains_key(name) {
            return true;
        }
        let dotted = format!("{name}.");
        self.map
            .range(dotted.clone()..)
            .next()
            .is_some_and(|(k, _)| k.starts_with(&dotted))
    }

    /// The structure under `name.` (`LaunchTemplate` → `LaunchTemplateName`, `Version`, …).
    pub fn nested(&self, name: &str) -> Params {
        let dotted = format!("{name}.");
        Params {
            map: self
                .map
                .range(dotted.clone()..)
                .take_while(|(k, _)| k.starts_with(&dotted))
                .map(|(k, v)| (k[dotted.len()..].to_string(), v.clone()))
                .collect(),
        }
    }

    /// The element indexes of `name.member.N…`, ascending.
    fn indexes(&self, name: &str, infix: &str) -> QueryResult<Vec<usize>> {
        let dotted = format!("{name}.{infix}.");
        let mut found = Vec::new();
        for (k, _) in self
            .map
            .range(dotted.clone()..)
            .take_while(|(k, _)| k.starts_with(&dotted))
        {
            let index = k[dotted.len()..].split('.').next().unwrap_or("");
            match index.parse::<usize>() {
                Ok(i) if i >= 1 => found.push(i),
                _ => {
                    return Err(QueryError::validation(format!(
                        "Invalid list index in parameter {k}"
                    )));
                }
            }
        }
        found.sort_unstable();
        found.dedup();
        if found.len() > MAX_LIST {
            return Err(QueryError::validation(format!(
                "Too many elements in {name} (at most {MAX_LIST})."
            )));
        }
        Ok(found)
    }

    /// `name.member.N` as a list of strings (`name=` alone is the empty list).
    pub fn strings(&self, name: &str) -> QueryResult<Vec<String>> {
        Ok(self
            .indexes(name, "member")?
            .into_iter()
            .filter_map(|i| self.string(&format!("{name}.member.{i}")))
            .collect())
    }

    /// `name.member.N` as a list, `None` when the parameter was not sent at all (so an
    /// update can tell "unchanged" from "now empty").
    pub fn strings_if_sent(&self, name: &str) -> QueryResult<Option<Vec<String>>> {
        if self.has(name) {
            self.strings(name).map(Some)
        } else {
            Ok(None)
        }
    }

    /// `name.member.N.…` as a list of structures.
    pub fn structs(&self, name: &str) -> QueryResult<Vec<Params>> {
        Ok(self
            .indexes(name, "member")?
            .into_iter()
            .map(|i| self.nested(&format!("{name}.member.{i}")))
            .collect())
    }

    /// `name.entry.N.key` / `.value` as pairs.
    pub fn map(&self, name: &str) -> QueryResult<Vec<(String, String)>> {
        self.indexes(name, "entry")?
            .into_iter()
            .map(|i| {
                let key = self.required(&format!("{name}.entry.{i}.key"))?;
                Ok((
                    key,
                    self.string(&format!("{name}.entry.{i}.value"))
                        .unwrap_or_default(),
                ))
            })
            .collect()
    }

    /// An optional integer.
    pub fn int(&self, name: &str) -> QueryResult<Option<i64>> {
        match self.get(name) {
            None | Some("") => Ok(None),
            Some(v) => v.parse::<i64>().map(Some).map_err(|_| {
                QueryError::validation(format!(
                    "Value '{v}' at '{name}' failed to satisfy constraint: Member must be an integer"
                ))
            }),
        }
    }

    /// An optional integer within `[min, max]`.
    pub fn int_in(&self, name: &str, min: i64, max: i64) -> QueryResult<Option<i64>> {
        let v = self.int(name)?;
        if let Some(n) = v
            && (n < min || n > max)
        {
            return Err(QueryError::validation(format!(
                "1 validation error detected: Value '{n}' at '{}' failed to satisfy constraint: Member must have value between {min} and {max}",
                crate::lower_first(name)
            )));
        }
        Ok(v)
    }

    /// An optional number.
    pub fn float(&self, name: &str) -> QueryResult<Option<f64>> {
        match self.get(name) {
            None | Some("") => Ok(None),
            Some(v) => v
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .map(Some)
                .ok_or_else(|| {
                    QueryError::validation(format!(
                        "Value '{v}' at '{name}' failed to satisfy constraint: Member must be a number"
                    ))
                }),
        }
    }

    /// An optional boolean (`true`/`false`, any case).
    pub fn bool(&self, name: &str) -> QueryResult<Option<bool>> {
        match self.get(name) {
            None | Some("") => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(v) => Err(QueryError::validation(format!(
                "Value '{v}' at '{name}' failed to satisfy constraint: Member must be a boolean"
            ))),
        }
    }

    /// `name.member.N.Key` / `.Value` pairs (ELBv2 `Tags`).
    pub fn tags(&self, name: &str) -> QueryResult<Vec<(String, String)>> {
        self.structs(name)?
            .into_iter()
            .map(|t| Ok((t.required("Key")?, t.string("Value").unwrap_or_default())))
            .collect()
    }

    /// Every parameter name, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(String::as_str)
    }

    /// Whether nothing was sent.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_lists_structs_and_maps() {
        let p = Params::parse(&[b"Action=CreateRule&Version=2015-12-01&Conditions.member.1.Field=path-pattern&Conditions.member.1.PathPatternConfig.Values.member.1=%2Fapi%2F%2A&Conditions.member.1.PathPatternConfig.Values.member.2=%2Fx&Names.member.2=b&Names.member.1=a&Names.member.10=c&Empty=&Attr.entry.1.key=k&Attr.entry.1.value=v&Tags.member.1.Key=Name&Tags.member.1.Value=web"]).unwrap();
        assert_eq!(p.action(), Some("CreateRule"));
        assert_eq!(p.strings("Names").unwrap(), ["a", "b", "c"]);
        assert_eq!(p.strings("Empty").unwrap(), Vec::<String>::new());
        assert_eq!(p.strings_if_sent("Empty").unwrap(), Some(vec![]));
        assert_eq!(p.strings_if_sent("Absent").unwrap(), None);
        let c = p.structs("Conditions").unwrap();
        assert_eq!(c[0].get("Field"), Some("path-pattern"));
        assert_eq!(
            c[0].nested("PathPatternConfig").strings("Values").unwrap(),
            ["/api/*", "/x"]
        );
        assert_eq!(p.map("Attr").unwrap(), [("k".into(), "v".into())]);
        assert_eq!(p.tags("Tags").unwrap(), [("Name".into(), "web".into())]);
        assert!(p.has("Conditions") && !p.has("Condition"));
    }

    #[test]
    fn typed_values_and_bad_input() {
        let p = Params::from_pairs([
            ("MinSize", "2"),
            ("Bad", "x"),
            ("On", "TRUE"),
            ("F", "1.5"),
            ("L.member.x", "a"),
        ]);
        assert_eq!(p.int("MinSize").unwrap(), Some(2));
        assert!(p.int("Bad").is_err());
        assert_eq!(p.bool("On").unwrap(), Some(true));
        assert!(p.bool("Bad").is_err());
        assert_eq!(p.float("F").unwrap(), Some(1.5));
        assert!(p.int_in("MinSize", 3, 5).is_err());
        assert!(p.strings("L").is_err());
        assert_eq!(p.required("Nope").unwrap_err().code, "ValidationError");
    }
}
