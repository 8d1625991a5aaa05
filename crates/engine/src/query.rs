//! Pieces every Describe call shares: filters with `*`/`?` wildcards, pagination,
//! tag specifications, and EC2 timestamps.

use crate::{Ec2Error, Ec2Result};

/// One `Filter.N` of a request: the values are ORed, filters are ANDed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Filter name, e.g. `status` or `tag:Name`.
    pub name: String,
    /// Accepted values; `*` and `?` are wildcards.
    pub values: Vec<String>,
}

/// Matches `text` against a pattern where `*` is any run and `?` any one character.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    // Bytewise matching is exact for UTF-8 unless a `?` (one character) meets a
    // multi-byte character; only then compare characters.
    if text.is_ascii() || !pattern.contains('?') {
        wild(pattern.as_bytes(), text.as_bytes(), b'*', b'?')
    } else {
        let p: Vec<char> = pattern.chars().collect();
        let t: Vec<char> = text.chars().collect();
        wild(&p, &t, '*', '?')
    }
}

/// A `*` / `?` pattern compiled once for matching many texts, with the semantics of
/// [`wildcard_match`]: its `*`-separated segments are matched anchored at both ends and
/// leftmost in between (no backtracking), over bytes; only a `?` meeting a non-ASCII text
/// falls back to matching characters.
#[derive(Clone, Debug)]
pub struct Glob {
    pattern: String,
    /// The parts between `*`s (one part: no `*`).
    segments: Vec<Vec<u8>>,
    /// The pattern has a `?`.
    one: bool,
}

impl Glob {
    /// Compiles a pattern.
    pub fn new(pattern: &str) -> Self {
        Glob {
            pattern: pattern.to_string(),
            segments: pattern.split('*').map(|s| s.as_bytes().to_vec()).collect(),
            one: pattern.contains('?'),
        }
    }

    /// True if `text` matches; the same answer as [`wildcard_match`].
    pub fn matches(&self, text: &str) -> bool {
        if self.one && !text.is_ascii() {
            return wildcard_match(&self.pattern, text);
        }
        let t = text.as_bytes();
        let [first, middle @ .., last] = self.segments.as_slice() else {
            // A single segment: no `*`.
            return self.segments.first().is_some_and(|s| segment_at(s, t));
        };
        if t.len() < first.len() + last.len()
            || !segment_at(first, &t[..first.len()])
            || !segment_at(last, &t[t.len() - last.len()..])
        {
            return false;
        }
        let mut rest = &t[first.len()..t.len() - last.len()];
        for segment in middle {
            match segment_in(segment, rest) {
                Some(end) => rest = &rest[end..],
                None => return false,
            }
        }
        true
    }
}

/// True if `text` is exactly as long as `segment` and matches it (`?` is any byte).
fn segment_at(segment: &[u8], text: &[u8]) -> bool {
    segment.len() == text.len() && segment.iter().zip(text).all(|(p, c)| p == c || *p == b'?')
}

/// The end of the leftmost match of `segment` in `text`.
fn segment_in(segment: &[u8], text: &[u8]) -> Option<usize> {
    if segment.is_empty() {
        return Some(0);
    }
    text.windows(segment.len())
        .position(|w| segment_at(segment, w))
        .map(|at| at + segment.len())
}

/// Glob matching with backtracking to the last `any`, in O(len(p) × len(t)) worst case.
fn wild<T: Copy + PartialEq>(p: &[T], t: &[T], any: T, one: T) -> bool {
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == one || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == any {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == any)
}

/// What a resource exposes to filters.
pub trait Filterable {
    /// Values of the named filter for this resource; `None` if the name is not a filter
    /// of this resource type.
    fn filter_values(&self, name: &str) -> Option<Vec<String>>;
    /// The resource's tags.
    fn tags(&self) -> &[(String, String)];
}

/// Values of the tag filters every taggable resource supports.
pub fn tag_filter_values(tags: &[(String, String)], name: &str) -> Option<Vec<String>> {
    if let Some(key) = name.strip_prefix("tag:") {
        return Some(
            tags.iter()
                .filter(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .collect(),
        );
    }
    match name {
        "tag-key" => Some(tags.iter().map(|(k, _)| k.clone()).collect()),
        "tag-value" => Some(tags.iter().map(|(_, v)| v.clone()).collect()),
        _ => None,
    }
}

/// True if `item` passes every filter. Unknown filter names are an error.
pub fn matches<T: Filterable>(item: &T, filters: &[Filter]) -> Ec2Result<bool> {
    for filter in filters {
        let values = match tag_filter_values(item.tags(), &filter.name) {
            Some(values) => values,
            None => item.filter_values(&filter.name).ok_or_else(|| {
                Ec2Error::invalid_value(format!("The filter '{}' is invalid", filter.name))
            })?,
        };
        let hit = filter
            .values
            .iter()
            .any(|pattern| values.iter().any(|v| wildcard_match(pattern, v)));
        if !hit {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Checks that no filter is malformed (no values).
pub fn check_filters(filters: &[Filter]) -> Ec2Result<()> {
    for f in filters {
        if f.name.is_empty() {
            return Err(Ec2Error::invalid_value("A filter must have a name"));
        }
    }
    Ok(())
}

/// Pagination of a result sorted by id: `NextToken` is the last id of the previous page.
#[derive(Clone, Debug, Default)]
pub struct Page {
    /// `MaxResults`, if given.
    pub max_results: Option<i64>,
    /// `NextToken`, if given.
    pub next_token: Option<String>,
}

impl Page {
    /// Validates MaxResults against the call's range and its combination with ids, and
    /// clamps it to `max`.
    pub fn check(&mut self, min: i64, max: i64, has_ids: bool) -> Ec2Result<()> {
        if let Some(n) = self.max_results {
            if has_ids {
                return Err(Ec2Error::client(
                    "InvalidParameterCombination",
                    "The parameter MaxResults cannot be used with the parameter of resource ids",
                ));
            }
            // Below the minimum is an error; above the maximum, AWS returns the maximum.
            if n < min {
                return Err(Ec2Error::invalid_value(format!(
                    "Value ( {n} ) for parameter maxResults is invalid. Expecting a value between {min} and {max}."
                )));
            }
        }
        self.max_results = self.max_results.map(|n| n.min(max));
        if let Some(token) = &self.next_token
            && (token.is_empty() || token.len() > 128)
        {
            return Err(Ec2Error::client("InvalidNextToken", "The token is invalid"));
        }
        Ok(())
    }

    /// Cuts `items` (sorted by `id`) to one page and returns the next token.
    pub fn apply<T>(&self, items: Vec<T>, id: impl Fn(&T) -> &str) -> (Vec<T>, Option<String>) {
        let start: Vec<T> = match &self.next_token {
            Some(token) => items
                .into_iter()
                .filter(|i| id(i) > token.as_str())
                .collect(),
            None => items,
        };
        match self.max_results {
            Some(n) if (start.len() as i64) > n => {
                let page: Vec<T> = start.into_iter().take(n as usize).collect();
                let token = page.last().map(|i| id(i).to_string());
                (page, token)
            }
            _ => (start, None),
        }
    }
}

/// One `TagSpecification.N`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TagSpecification {
    /// e.g. `volume`, `snapshot`, `image`.
    pub resource_type: String,
    /// Tags to apply.
    pub tags: Vec<(String, String)>,
}

/// Checks one tag against EC2's limits.
pub fn check_tag(key: &str, value: &str) -> Ec2Result<()> {
    if key.is_empty() || key.chars().count() > 128 {
        return Err(Ec2Error::invalid_value(
            "Tag keys must be between 1 and 128 characters",
        ));
    }
    if key.starts_with("aws:") {
        return Err(Ec2Error::invalid_value(
            "Tag keys starting with 'aws:' are reserved for internal use",
        ));
    }
    if value.chars().count() > 256 {
        return Err(Ec2Error::invalid_value(
            "Tag values may be at most 256 characters",
        ));
    }
    Ok(())
}

/// The tags of the specifications for `resource_type`; others are an error.
pub fn tags_for(
    specs: &[TagSpecification],
    resource_type: &str,
) -> Ec2Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = Vec::new();
    for spec in specs {
        if spec.resource_type != resource_type {
            return Err(Ec2Error::invalid_value(format!(
                "'{}' is not a valid taggable resource type for this operation.",
                spec.resource_type
            )));
        }
        for (k, v) in &spec.tags {
            check_tag(k, v)?;
            out.retain(|(key, _)| key != k);
            out.push((k.clone(), v.clone()));
        }
    }
    if out.len() > 50 {
        return Err(Ec2Error::client(
            "TagLimitExceeded",
            "The maximum number of tags is 50",
        ));
    }
    Ok(out)
}

/// Looks up an `Attribute` parameter in a table of (wire name, value), with EC2's error
/// for an unknown name.
pub fn parse_attribute<T: Copy>(table: &[(&str, T)], name: &str) -> Ec2Result<T> {
    table
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, a)| *a)
        .ok_or_else(|| {
            Ec2Error::invalid_value(format!(
                "Value ({name}) for parameter attribute is invalid. Unknown attribute."
            ))
        })
}

/// The wire name of `value` in a table of (wire name, value).
pub fn attribute_name<T: Copy + PartialEq>(table: &[(&'static str, T)], value: T) -> &'static str {
    table
        .iter()
        .find(|(_, a)| *a == value)
        .map_or("", |(n, _)| n)
}

/// ISO 8601 UTC with milliseconds, as EC2 prints timestamps: `2026-11-28T09:40:00.000Z`.
pub fn iso8601(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("ubuntu-*-amd64", "ubuntu-22.04-amd64"));
        assert!(wildcard_match("a?c", "abc"));
        assert!(!wildcard_match("a?c", "ac"));
        assert!(wildcard_match("*x*y", "aaxbby"));
        assert!(!wildcard_match("abc", "abcd"));
        assert!(wildcard_match("", ""));
        assert!(
            wildcard_match("caf?", "café"),
            "? is one character, not one byte"
        );
        assert!(!wildcard_match("caf??", "café"));
    }

    #[test]
    fn compiled_globs_agree_with_wildcard_match() {
        // Every pattern of up to 4 symbols over {a, b, é, *, ?} against every text of up
        // to 4 symbols over {a, b, é}.
        fn words(alphabet: &[&str], max: usize) -> Vec<String> {
            let mut out = vec![String::new()];
            let mut last = vec![String::new()];
            for _ in 0..max {
                last = last
                    .iter()
                    .flat_map(|w| alphabet.iter().map(move |c| format!("{w}{c}")))
                    .collect();
                out.extend(last.iter().cloned());
            }
            out
        }
        let texts = words(&["a", "b", "é"], 4);
        let mut matched = 0;
        for p in words(&["a", "b", "é", "*", "?"], 4) {
            let glob = Glob::new(&p);
            for t in &texts {
                let want = wildcard_match(&p, t);
                assert_eq!(glob.matches(t), want, "{p:?} {t:?}");
                matched += usize::from(want);
            }
        }
        assert!(matched > 10_000, "{matched}");
        for (p, t) in [
            ("*-image-0000?", "bench-image-00004"),
            ("debian-12-*-amd64", "debian-12-20240101-amd64"),
            ("a*a*a", "aa"),
        ] {
            assert_eq!(Glob::new(p).matches(t), wildcard_match(p, t), "{p} {t}");
        }
    }

    #[test]
    fn timestamps() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(1_764_322_800_123), "2025-11-28T09:40:00.123Z");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn pagination() {
        let items: Vec<String> = (0..7).map(|i| format!("id-{i}")).collect();
        let page = Page {
            max_results: Some(3),
            next_token: None,
        };
        let (first, token) = page.apply(items.clone(), |s| s);
        assert_eq!(first.len(), 3);
        let page = Page {
            max_results: Some(3),
            next_token: token,
        };
        let (second, token) = page.apply(items.clone(), |s| s);
        assert_eq!(second[0], "id-3");
        let page = Page {
            max_results: Some(3),
            next_token: token,
        };
        let (third, token) = page.apply(items, |s| s);
        assert_eq!(third, ["id-6"]);
        assert!(token.is_none());
    }
}
