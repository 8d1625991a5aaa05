//! The JSON 1.1 operations: `X-Amz-Target: AmazonSSM.<Operation>` with a JSON body,
//! answered with JSON, errors as `{"__type": code, "message": …}` (HTTP 400). Shapes follow
//! botocore's ssm/2014-11-06 model.

use catalog::Catalog;
use serde_json::{Value, json};

use crate::filter::Filter;
use crate::names;
use crate::request::{Req, null_member, paginate, parse_body, wrong_type};
use crate::store::{self, Doc, Param};
use crate::{SsmError, check_value};

/// An HTTP answer: status and JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: String,
    /// The operation, for logs (`""` if none was recognised).
    pub operation: String,
}

/// Runs the SSM operation named by `target` (`AmazonSSM.GetParameter`) for `account_id`
/// in `region`, whose signature the caller has verified.
pub fn handle(
    catalog: &Catalog,
    account_id: &str,
    region: &str,
    target: Option<&str>,
    body: &[u8],
) -> Reply {
    let operation = target
        .and_then(|t| t.strip_prefix("AmazonSSM."))
        .unwrap_or("")
        .to_string();
    let ctx = Ctx {
        catalog,
        account: account_id,
        region,
    };
    let outcome = parse_body(body).and_then(|req| ctx.dispatch(target, &operation, &Req(&req)));
    match outcome {
        Ok(value) => Reply {
            status: 200,
            body: value.to_string(),
            operation,
        },
        Err(e) => Reply {
            status: e.status,
            body: json!({"__type": e.code, "message": e.message}).to_string(),
            operation,
        },
    }
}

fn seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

struct Ctx<'a> {
    catalog: &'a Catalog,
    account: &'a str,
    region: &'a str,
}

const TYPES: [&str; 3] = ["String", "StringList", "SecureString"];
const DEFAULT_KEY: &str = "alias/aws/ssm";

impl Ctx<'_> {
    fn dispatch(&self, target: Option<&str>, op: &str, req: &Req<'_>) -> Result<Value, SsmError> {
        match op {
            "PutParameter" => self.put_parameter(req),
            "GetParameter" => self.get_parameter(req),
            "GetParameters" => self.get_parameters(req),
            "GetParametersByPath" => self.get_parameters_by_path(req),
            "DeleteParameter" => self.delete_parameter(req),
            "DeleteParameters" => self.delete_parameters(req),
            "DescribeParameters" => self.describe_parameters(req),
            "GetParameterHistory" => self.get_parameter_history(req),
            "AddTagsToResource" => self.add_tags(req),
            "RemoveTagsFromResource" => self.remove_tags(req),
            "ListTagsForResource" => self.list_tags(req),
            _ => Err(SsmError::new(
                "InvalidAction",
                match target {
                    Some(t) => format!(
                        "The operation {t} is not valid for this web service (openami implements the Parameter Store operations of AmazonSSM)."
                    ),
                    None => {
                        "Missing X-Amz-Target header naming the operation (AmazonSSM.<Operation>)."
                            .to_string()
                    }
                },
            )),
        }
    }

    fn parameter_json(&self, p: &Param, selector: Option<&str>) -> Value {
        let mut v = json!({
            "Name": p.name,
            "Type": p.doc.kind,
            "Value": p.doc.value,
            "Version": p.version,
            "LastModifiedDate": seconds(p.modified_ms),
            "ARN": names::arn(self.region, &p.owner, &p.name),
            "DataType": p.doc.data_type,
        });
        if let Some(sel) = selector {
            v["Selector"] = json!(sel);
        }
        v
    }

    fn metadata_json(&self, p: &Param, with_value: bool) -> Value {
        let mut v = json!({
            "Name": p.name,
            "Type": p.doc.kind,
            "LastModifiedDate": seconds(p.modified_ms),
            "LastModifiedUser": p.doc.modified_by,
            "Version": p.version,
            "Tier": p.doc.tier,
            "Policies": [],
            "DataType": p.doc.data_type,
        });
        if with_value {
            v["Value"] = json!(p.doc.value);
            v["Labels"] = json!([]);
        } else {
            v["ARN"] = json!(names::arn(self.region, &p.owner, &p.name));
        }
        if let Some(d) = &p.doc.description {
            v["Description"] = json!(d);
        }
        if let Some(k) = &p.doc.key_id {
            v["KeyId"] = json!(k);
        }
        v
    }

    fn put_parameter(&self, req: &Req<'_>) -> Result<Value, SsmError> {
        let name = req.required("Name")?;
        let value = req.required("Value")?;
        names::validate(name)?;
        names::check_writable(name)?;
        let kind = req.str("Type")?;
        if let Some(k) = kind
            && !TYPES.contains(&k)
        {
            return Err(SsmError::validation(format!(
                "1 validation error detected: Value '{k}' at 'type' failed to satisfy constraint: Member must satisfy enum value set: [SecureString, StringList, String]"
            )));
        }
        let key_id = req.str("KeyId")?;
        if let Some(k) = key_id
            && k != DEFAULT_KEY
            && k != "aws/ssm"
        {
            return Err(SsmError::new(
                "InvalidKeyId",
                format!(
                    "The KMS key {k} is not available: openami has no KMS and keeps SecureString values unencrypted; omit KeyId or use {DEFAULT_KEY}."
                ),
            ));
        }
        let overwrite = req.bool("Overwrite")?;
        let tags = req.tags("Tags")?;
        if overwrite && !tags.is_empty() {
            return Err(SsmError::validation(
                "Invalid request: tags and overwrite can't be used together. To create a parameter with tags, please remove overwrite flag. To update tags for an existing parameter, please use AddTagsToResource or RemoveTagsFromResource.",
            ));
        }
        let description = req.str("Description")?;
        if description.is_some_and(|d| d.len() > 1024) {
            return Err(SsmError::validation(
                "Descriptions have at most 1024 characters.",
            ));
        }
        if !req.list("Policies")?.is_empty() || req.str("Policies")?.is_some_and(|p| !p.is_empty())
        {
            return Err(SsmError::new(
                "UnsupportedOperation",
                "Parameter policies are not supported by openami.",
            ));
        }
        if req.str("AllowedPattern")?.is_some() {
            return Err(SsmError::new(
                "UnsupportedOperation",
                "AllowedPattern is not supported by openami.",
            ));
        }
        let tier = req.str("Tier")?;
        if let Some(t) = tier
            && !["Standard", "Advanced", "Intelligent-Tiering"].contains(&t)
        {
            return Err(SsmError::validation(format!(
                "1 validation error detected: Value '{t}' at 'tier' failed to satisfy constraint: Member must satisfy enum value set: [Standard, Advanced, Intelligent-Tiering]"
            )));
        }
        let data_type = req.str("DataType")?;
        let modified_by = format!("arn:aws:iam::{}:root", self.account);
        let mut tier_used = String::new();
        let (version, _) = store::put(self.catalog, self.region, self.account, name, |current| {
            if current.is_some() && !overwrite {
                return Err(SsmError::new(
                    "ParameterAlreadyExists",
                    "The parameter already exists. To overwrite this value, set the overwrite option in the request to true.",
                ));
            }
            let kind = match (kind, current) {
                (Some(k), _) => k.to_string(),
                (None, Some(c)) => c.doc.kind.clone(),
                (None, None) => {
                    return Err(SsmError::validation(
                        "A parameter type is required when you create a parameter.",
                    ));
                }
            };
            if key_id.is_some() && kind != "SecureString" {
                return Err(SsmError::validation(format!(
                    "KeyId applies only to SecureString parameters, not {kind}."
                )));
            }
            let data_type = data_type
                .map(str::to_string)
                .or_else(|| current.map(|c| c.doc.data_type.clone()))
                .unwrap_or_else(|| "text".into());
            let advanced = tier == Some("Advanced")
                || current.is_some_and(|c| c.doc.tier == "Advanced")
                || (tier == Some("Intelligent-Tiering") && value.len() > 4096);
            tier_used = if advanced { "Advanced" } else { "Standard" }.to_string();
            check_value(&kind, &data_type, value, &tier_used)?;
            Ok(Some(Doc {
                key_id: (kind == "SecureString").then(|| DEFAULT_KEY.to_string()),
                kind,
                data_type,
                value: value.to_string(),
                description: description
                    .map(str::to_string)
                    .or_else(|| current.and_then(|c| c.doc.description.clone())),
                tier: tier_used.clone(),
                modified_by: modified_by.clone(),
            }))
        })?;
        if !tags.is_empty() {
            self.catalog
                .set_tags(&store::tag_id(self.region, self.account, name), &tags)?;
        }
        Ok(json!({"Version": version, "Tier": tier_used}))
    }

    fn get_parameter(&self, req: &Req<'_>) -> Result<Value, SsmError> {
        let reference = req.required("Name")?;
        req.bool("WithDecryption")?;
        let p = store::get(self.catalog, self.account, self.region, reference)?;
        let selector = names::split_selector(reference);
        let selector =
            (selector.1 != names::Selector::Latest).then(|| &reference[selector.0.len()..]);
        Ok(json!({"Parameter": self.parameter_json(&p, selector)}))
    }

    fn get_parameters(&self, req: &Req<'_>) -> Result<Value, SsmError> {
        let references = req.strings("Names")?;
        req.bool("WithDecryption")?;
        if references.is_empty() || references.len() > 10 {
            return Err(SsmError::validation(
                "1 validation error detected: Value at 'names' failed to satisfy constraint: Member must have length between 1 and 10",
            ));
        }
        let mut found = Vec::new();
        let mut invalid = Vec::new();
        for reference in references {
            match store::get(self.catalog, self.account, self.region, reference) {
                Ok(p) => {
                    let (name, sel) = names::split_selector(reference);
                    let sel = (sel != names::Selector::Latest).then(|| &reference[name.len()..]);
                    found.push(self.parameter_json(&p, sel));
                }
                Err(e) if e.status == 400 => invalid.push(reference),
                Err(e) => return Err(e),
            }
        }
        Ok(json!({"Parameters": found, "InvalidParameters": invalid}))
    }

    fn get_parameters_by_path(&self, req: &Req<'_>) -> Result<Value, SsmError> {
        let raw = req.required("Path")?;
        let recursive = req.bool("Recursive")?;
        req.bool("WithDecryption")?;
        let max = req.max_results(10)?;
        let filters = Filter::parse_all(req, false)?;
        if !raw.starts_with('/') {
            return Err(SsmError::validation(format!(
                "The parameter path {raw} is not valid: a path begins with /."
            )));
        }
        let path = if raw == "/" {
            ""
        } else {
            raw.trim_end_matches('/')
        };
        if !path.is_empty() {
            names::validate(path)?;
        }
        let owner = names::owner_for(&format!("{path}/"), self.account);
        let candidates = store::list(self.catalog, self.region, owner, &format!("{path}/"))?;
        let mut candidates = if path.is_empty() {
            // The root also holds flat names (`name` is `/name` for paths).
            let mut all = store::list(self.catalog, self.region, owner, "")?;
            all.retain(|p| recursive || names::parent(&p.name).is_empty());
            all
        } else {
            candidates
                .into_iter()
                .filter(|p| recursive || names::parent(&p.name) == path)
                .collect()
        };
        self.apply_filters(&mut candidates, owner, &filters)?;
        let (page, next) = paginate(candidates, |p| p.name.clone(), req.str("NextToken")?, max)?;
        let params: Vec<Value> = page.iter().map(|p| self.parameter_json(p, None)).collect();
        let mut out = json!({"Parameters": params});
        if let Some(t) = next {
            out["NextToken"] = json!(t);
        }
        Ok(out)
    }

    fn apply_filters(
        &self,
        params: &mut Vec<Param>,
        owner: &str,
        filters: &[Filter],
    ) -> Result<(), SsmError> {
        if filters.is_empty() {
            return Ok(());
        }
        let mut kept = Vec::with_capacity(params.len());
        for p in params.drain(..) {
            let needs_tags = filters.iter().any(|f| f.key.starts_with("tag:"));
            let tags = if needs_tags {
                self.catalog
                    .tags(&store::tag_id(self.region, owner, &p.name))?
            } else {
                Vec::new()
            };
            if filters.iter().all(|f| f.matches(&p, &tags)) {
                kept.push(p);
            }
        }
        *params = kept;
        Ok(())
    }

    fn delete_parameter(&self, req: &Req<'_>) -> Result<Value, SsmError> {
        let name = req.required("Name")?;
        names::validate(name)?;
        names::check_writable(name).or_else(|e| {
            if names::is_public(name) {
                Err(e)
            } else {
                Ok(())
            }
        })?;
        if !store::delete(self.catalog, self.region, self.account, name)? {
            return Err(SsmError::new(
                "ParameterNotFound",
                format!("Parameter {name} not found."),
            ));
        }
        Ok(json!({}))
    }

    fn delete_parameters(&self, req: &Req<'_>) -> Result<Value, SsmError> {
        let list = req.strings("Names")?;
        if list.is_empty() || list.len() > 10 {
            return Err(SsmError::validation(
                "1 validation error detected: Value at 'names' failed to satisfy constraint: Member must have length between 1 and 10",
            ));
        }
        if let Some(public) = list.iter().find(|n| names::is_public(n)) {
            return names::check_writable(public).map(|()| json!({}));
        }
        let mut deleted = Vec::new();
        let mut invalid = Vec::new();
        for name in list {
            if names::validate(name).is_ok()
                && store::delete(self.catalog, self.region, self.account, name)?
            {
                deleted.push(name);
            } else {
                invalid.push(name);
            }
        }
        Ok(json!({"DeletedParameters": deleted, "InvalidParameters": invalid}))
    }

    fn describe_parameters(&self, req: &Req<'_>) -> Result<Value, SsmError> {
        let max = req.max_results(50)?;
        let mut filters = Filter::parse_all(req, true)?;
        for item in req.list("Filters")? {
            let f = Req(item
                .as_object()
                .ok_or_else(|| wrong_type("Filters", "a list of filters"))?);
            let key = f.required("Key")?;
            let option = match key {
                "Name" => "BeginsWith",
                "Type" | "KeyId" => "Equals",
                other => {
                    return Err(SsmError::new(
                        "InvalidFilterKey",
                        format!("The filter key {other} is not valid; use Name, Type or KeyId."),
                    ));
                }
            };
            filters.push(Filter {
                key: key.to_string(),
                option: option.to_string(),
                values: f
                    .strings("Values")?
                    .into_iter()
                    .map(str::to_string)
                    .collect(),
            });
        }
        let mut params = store::list(self.catalog, self.region, self.account, "")?;
        self.apply_filters(&mut params, self.account, &filters)?;
        let (page, next) = paginate(params, |p| p.name.clone(), req.str("NextToken")?, max)?;
        let items: Vec<Value> = page.iter().map(|p| self.metadata_json(p, false)).collect();
        let mut out = json!({"Parameters": items});
        if let Some(t) = next {
            out["NextToken"] = json!(t);
        }
        Ok(out)
    }

    fn get_parameter_history(&self, req: &Req<'_>) -> Result<Value, SsmError> {
        let name = req.required("Name")?;
        req.bool("WithDecryption")?;
        let max = req.max_results(50)?;
        let versions = store::history(self.catalog, self.account, self.region, name)?;
        let (page, next) = paginate(
            versions,
            |p| format!("{:020}", p.version),
            req.str("NextToken")?,
            max,
        )?;
        let items: Vec<Value> = page.iter().map(|p| self.metadata_json(p, true)).collect();
        let mut out = json!({"Parameters": items});
        if let Some(t) = next {
            out["NextToken"] = json!(t);
        }
        Ok(out)
    }

    /// The tag key of the parameter a tagging request names (which must exist).
    fn tagged(&self, req: &Req<'_>, write: bool) -> Result<String, SsmError> {
        let kind = req.required("ResourceType")?;
        if kind != "Parameter" {
            return Err(SsmError::new(
                "InvalidResourceType",
                format!("openami tags only resources of type Parameter, not {kind}."),
            ));
        }
        let name = req.required("ResourceId")?;
        if write && names::is_public(name) {
            names::check_writable(name)?;
        }
        let owner = names::owner_for(name, self.account);
        if names::validate(name).is_err()
            || self.catalog.ssm_latest(self.region, owner, name)?.is_none()
        {
            return Err(SsmError::new(
                "InvalidResourceId",
                format!("The parameter {name} does not exist."),
            ));
        }
        Ok(store::tag_id(self.region, owner, name))
    }

    fn add_tags(&self, req: &Req<'_>) -> Result<Value, SsmError> {
        let id = self.tagged(req, true)?;
        let tags = req.tags("Tags")?;
        if tags.is_empty() {
            return Err(null_member("Tags"));
        }
        let existing = self.catalog.tags(&id)?;
        let total = existing
            .iter()
            .filter(|(k, _)| !tags.iter().any(|(t, _)| t == k))
            .count()
            + tags.len();
        if total > 50 {
            return Err(SsmError::new(
                "TooManyTagsError",
                "A parameter can have at most 50 tags.",
            ));
        }
        self.catalog.set_tags(&id, &tags)?;
        Ok(json!({}))
    }

    fn remove_tags(&self, req: &Req<'_>) -> Result<Value, SsmError> {
        let id = self.tagged(req, true)?;
        let keys: Vec<(String, Option<String>)> = req
            .strings("TagKeys")?
            .into_iter()
            .map(|k| (k.to_string(), None))
            .collect();
        self.catalog.delete_tags(&id, &keys)?;
        Ok(json!({}))
    }

    fn list_tags(&self, req: &Req<'_>) -> Result<Value, SsmError> {
        let id = self.tagged(req, false)?;
        let tags: Vec<Value> = self
            .catalog
            .tags(&id)?
            .into_iter()
            .map(|(k, v)| json!({"Key": k, "Value": v}))
            .collect();
        Ok(json!({"TagList": tags}))
    }
}

#[cfg(test)]
mod tests;
