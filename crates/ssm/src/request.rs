//! Reading a JSON 1.1 request body: typed member access with the protocol's errors
//! (`SerializationException` for wrong types, `ValidationException` for missing members),
//! and NextToken pagination.

use serde_json::{Map, Value};

use crate::SsmError;

pub(crate) fn parse_body(body: &[u8]) -> Result<Map<String, Value>, SsmError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(SsmError::new(
            "SerializationException",
            "The request body must be a JSON object.",
        )),
        Err(e) => Err(SsmError::new(
            "SerializationException",
            format!("The request body is not valid JSON: {e}"),
        )),
    }
}

/// A request body, with typed member access.
pub(crate) struct Req<'a>(pub(crate) &'a Map<String, Value>);

pub(crate) fn wrong_type(member: &str, expected: &str) -> SsmError {
    SsmError::new(
        "SerializationException",
        format!("Member {member} must be {expected}."),
    )
}

pub(crate) fn null_member(member: &str) -> SsmError {
    let mut wire = member.to_string();
    if let Some(first) = wire.get_mut(..1) {
        first.make_ascii_lowercase();
    }
    SsmError::validation(format!(
        "1 validation error detected: Value null at '{wire}' failed to satisfy constraint: Member must not be null"
    ))
}

impl<'a> Req<'a> {
    pub(crate) fn get(&self, member: &str) -> Option<&'a Value> {
        self.0.get(member).filter(|v| !v.is_null())
    }

    pub(crate) fn str(&self, member: &str) -> Result<Option<&'a str>, SsmError> {
        self.get(member)
            .map(|v| v.as_str().ok_or_else(|| wrong_type(member, "a string")))
            .transpose()
    }

    pub(crate) fn required(&self, member: &str) -> Result<&'a str, SsmError> {
        self.str(member)?.ok_or_else(|| null_member(member))
    }

    pub(crate) fn bool(&self, member: &str) -> Result<bool, SsmError> {
        Ok(self
            .get(member)
            .map(|v| v.as_bool().ok_or_else(|| wrong_type(member, "a boolean")))
            .transpose()?
            .unwrap_or(false))
    }

    pub(crate) fn list(&self, member: &str) -> Result<Vec<&'a Value>, SsmError> {
        match self.get(member) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => Ok(items.iter().collect()),
            Some(_) => Err(wrong_type(member, "a list")),
        }
    }

    pub(crate) fn strings(&self, member: &str) -> Result<Vec<&'a str>, SsmError> {
        self.list(member)?
            .into_iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| wrong_type(member, "a list of strings"))
            })
            .collect()
    }

    /// `MaxResults` within `1..=max`, default `max`.
    pub(crate) fn max_results(&self, max: i64) -> Result<usize, SsmError> {
        let Some(v) = self.get("MaxResults") else {
            return Ok(max as usize);
        };
        let n = v
            .as_i64()
            .ok_or_else(|| wrong_type("MaxResults", "an integer"))?;
        if !(1..=max).contains(&n) {
            return Err(SsmError::validation(format!(
                "1 validation error detected: Value '{n}' at 'maxResults' failed to satisfy constraint: Member must have value between 1 and {max}"
            )));
        }
        Ok(n as usize)
    }

    pub(crate) fn tags(&self, member: &str) -> Result<Vec<(String, String)>, SsmError> {
        let items = self.list(member)?;
        if items.len() > 50 {
            return Err(SsmError::validation("A resource can have at most 50 tags."));
        }
        items
            .into_iter()
            .map(|item| {
                let tag = Req(item
                    .as_object()
                    .ok_or_else(|| wrong_type(member, "a list of tags"))?);
                let key = tag.required("Key")?;
                let value = tag.str("Value")?.unwrap_or("");
                if key.is_empty() || key.len() > 128 || value.len() > 256 {
                    return Err(SsmError::validation(format!(
                        "Tag {key:?}: keys have 1 to 128 characters, values at most 256."
                    )));
                }
                Ok((key.to_string(), value.to_string()))
            })
            .collect()
    }
}

/// Paginates `items` (sorted by `key`) after the position named by `token`.
pub(crate) fn paginate<T>(
    items: Vec<T>,
    key: impl Fn(&T) -> String,
    token: Option<&str>,
    max: usize,
) -> Result<(Vec<T>, Option<String>), SsmError> {
    let after = token
        .map(|t| {
            hex::decode(t)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| SsmError::new("InvalidNextToken", "The specified token is invalid."))
        })
        .transpose()?;
    let mut page: Vec<T> = items
        .into_iter()
        .filter(|item| after.as_ref().is_none_or(|a| key(item) > *a))
        .take(max + 1)
        .collect();
    let next = if page.len() > max {
        page.truncate(max);
        page.last().map(|last| hex::encode(key(last)))
    } else {
        None
    };
    Ok((page, next))
}
